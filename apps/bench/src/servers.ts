// The servers the benchmark compares; server.ts builds each.

export const SERVERS = [
  'bare',
  'slidelimit-memory',
  'slidelimit-memory-noheaders',
  'slidelimit-memory-middleware',
  'slidelimit-memcache',
  'hono-rate-limiter',
  'rlf-memory',
  'rlf-memcache',
] as const

export type ServerKind = (typeof SERVERS)[number]
