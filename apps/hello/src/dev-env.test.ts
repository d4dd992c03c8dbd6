// turbo runs `pnpm dev` in strict environment mode: a variable not named in turbo.json never
// reaches the app. Every variable the app reads or the README documents must be passed through.

import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'

const root = new URL('../../../', import.meta.url)
const readme = readFileSync(new URL('README.md', root), 'utf8')
const turbo = JSON.parse(readFileSync(new URL('turbo.json', root), 'utf8')) as {
  tasks: { dev: { passThroughEnv?: string[] } }
}
const configSource = readFileSync(new URL('./config.ts', import.meta.url), 'utf8')

/** The variables in the first column of README's Configuration table. */
function documented(): string[] {
  const section = readme.split(/^## Configuration$/m)[1]?.split(/^## /m)[0] ?? ''
  return [...section.matchAll(/^\| `([A-Z][A-Z0-9_]*)`/gm)].map((match) => match[1] as string)
}

function passedThrough(name: string): boolean {
  return (turbo.tasks.dev.passThroughEnv ?? []).some((pattern) =>
    pattern.endsWith('*') ? name.startsWith(pattern.slice(0, -1)) : name === pattern,
  )
}

describe('pnpm dev under turbo', () => {
  it('passes every variable of the Configuration table to the app', () => {
    const names = documented()
    expect(names).toContain('PORT')
    expect(names).toContain('MAX_CONNECTIONS')
    expect(names.filter((name) => !passedThrough(name))).toEqual([])
  })

  it('passes the memcached credentials memjs reads (MEMCACHE_* and MEMCACHIER_*)', () => {
    for (const name of [
      'MEMCACHE_USERNAME',
      'MEMCACHE_PASSWORD',
      'MEMCACHIER_USERNAME',
      'MEMCACHIER_PASSWORD',
    ]) {
      expect(readme).toContain(name.startsWith('MEMCACHIER') ? 'MEMCACHIER_*' : name)
      expect(passedThrough(name), name).toBe(true)
    }
  })

  it('documents every variable config.ts reads', () => {
    const read = [...configSource.matchAll(/\(env, '([A-Z][A-Z0-9_]*)'/g)].map(
      (match) => match[1] as string,
    )
    expect(read.length).toBeGreaterThan(15)
    expect(read.filter((name) => !documented().includes(name))).toEqual([])
  })
})
