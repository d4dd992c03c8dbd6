// The versions of the packages a bench run measures, recorded with its results.

import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

/**
 * The installed version of `pkg` (as the package `from` resolves it, when given): the package.json above its entry point (most packages do not
 * export their package.json, so it cannot be resolved directly).
 */
function versionOf(pkg: string, from?: string): string {
  try {
    const entry =
      from === undefined
        ? fileURLToPath(import.meta.resolve(pkg))
        : createRequire(fileURLToPath(import.meta.resolve(from))).resolve(pkg)
    let dir = dirname(entry)
    for (;;) {
      try {
        const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
          name?: string
          version?: string
        }
        if (manifest.name === pkg && manifest.version !== undefined) {
          return manifest.version
        }
      } catch {
        // no package.json here
      }
      const up = dirname(dir)
      if (up === dir) {
        return 'unknown'
      }
      dir = up
    }
  } catch {
    return 'unknown'
  }
}

/** The versions of the peers and clients measured, by package name. */
export function packageVersions(): Record<string, string> {
  return {
    hono: versionOf('hono'),
    '@hono/node-server': versionOf('@hono/node-server'),
    'hono-rate-limiter': versionOf('hono-rate-limiter'),
    'rate-limiter-flexible': versionOf('rate-limiter-flexible'),
    // memjs is the memcache store's dependency, not the bench's: resolved as the store does.
    memjs: versionOf('memjs', '@slidelimit/store-memcache'),
    memcached: versionOf('memcached'),
    autocannon: versionOf('autocannon'),
  }
}
