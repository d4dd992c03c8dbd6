// The HTTP server's limits for a server that faces the internet: how long a client may take to
// send its headers and its request, how long an idle keep-alive connection stays open, and how
// many connections may be open at once (below the open-file limit, so that a flood of slow
// connections cannot take the descriptors memcached, logs and new clients need).

import { readFileSync } from 'node:fs'
import type { ServerOptions } from 'node:http'
import type { Config } from './config.js'

/** The connection cap when MAX_CONNECTIONS is unset and the open-file limit allows it. */
export const DEFAULT_MAX_CONNECTIONS = 10_000

/** The share of the open-file limit client connections may take; the rest stays free. */
const CONNECTION_SHARE = 0.9

/**
 * The process's soft limit on open files (Node raises it to the hard limit at start), read from
 * `/proc/self/limits`; undefined where that cannot be read (not Linux) or says "unlimited".
 */
export function openFileLimit(
  readLimits: () => string = () => readFileSync('/proc/self/limits', 'utf8'),
): number | undefined {
  try {
    const match = /^Max open files\s+(\d+)/m.exec(readLimits())
    return match?.[1] === undefined ? undefined : Number(match[1])
  } catch {
    return undefined
  }
}

/** The most connections that leave a tenth of the open-file limit free. */
export function connectionCeiling(fileLimit: number | undefined): number | undefined {
  return fileLimit === undefined ? undefined : Math.max(1, Math.floor(fileLimit * CONNECTION_SHARE))
}

/**
 * MAX_CONNECTIONS when given, else 10,000 or 90% of the open-file limit, whichever is lower.
 */
export function maxConnections(
  config: Pick<Config, 'maxConnections'>,
  fileLimit: number | undefined,
): number {
  if (config.maxConnections !== undefined) {
    return config.maxConnections
  }
  return Math.min(DEFAULT_MAX_CONNECTIONS, connectionCeiling(fileLimit) ?? DEFAULT_MAX_CONNECTIONS)
}

/**
 * Options for `http.createServer`. Node checks the headers and request timeouts on a timer
 * (every 30 s by default, so a slow client lived up to 30 s past its timeout); here it checks
 * a quarter of the headers timeout apart, at most once a second.
 */
export function httpServerOptions(
  config: Pick<Config, 'headersTimeoutMs' | 'requestTimeoutMs' | 'keepAliveTimeoutMs'>,
): ServerOptions {
  return {
    headersTimeout: config.headersTimeoutMs,
    requestTimeout: config.requestTimeoutMs,
    keepAliveTimeout: config.keepAliveTimeoutMs,
    connectionsCheckingInterval: Math.min(
      1000,
      Math.max(25, Math.floor(config.headersTimeoutMs / 4)),
    ),
  }
}
