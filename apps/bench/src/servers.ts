// The servers the benchmark compares; server.ts builds each.

export const SERVERS = [
  'bare',
  'noop',
  'noop-api',
  'slidelimit-memory',
  'slidelimit-memory-noheaders',
  'slidelimit-memory-middleware',
  'slidelimit-memory-use-api',
  'slidelimit-memcache',
  'hono-rate-limiter',
  'rlf-memory',
  'rlf-memcache',
] as const

export type ServerKind = (typeof SERVERS)[number]

/** The path a server's limited route answers on (the load goes there). */
export const pathOf = (kind: string): string => (kind.endsWith('-api') ? '/api/hello' : '/')

/**
 * The baseline a server is paired with, round by round: the `app.use` forms with the app whose
 * middleware only calls `next()` on the same routes; every other server with bare Hono.
 */
export const baselineOf = (kind: string): string =>
  kind === 'slidelimit-memory-middleware'
    ? 'noop'
    : kind === 'slidelimit-memory-use-api'
      ? 'noop-api'
      : 'bare'
