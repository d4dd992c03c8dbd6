// Configuration from environment variables. Every variable has a default that runs; a bad value
// is reported as one line naming the variable, the value given and what is allowed.

import { isIP } from 'node:net'
import { clientAddress } from '@slidelimit/hono-middleware'
import { formatServer, isHostName, parseConnectionString } from '@slidelimit/store-memcache'

export type StoreBackend = 'memory' | 'memcache'
export type FailureMode = 'open' | 'closed'
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'silent'

export interface Config {
  port: number
  host: string
  storeBackend: StoreBackend
  /** host:port pairs from MEMCACHE_CONNECTION_STRING. */
  memcacheServers: string[]
  /** Deadline of every memcached call, from MEMCACHE_TIMEOUT_MS. */
  memcacheTimeoutMs: number
  rateLimit: number
  windowSeconds: number
  bucketSeconds: number
  failureMode: FailureMode
  /**
   * Which proxies in front of the app to trust: 0 (none: only the connection counts), a number
   * of hops, or a list of proxy addresses and CIDR ranges.
   */
  trustProxy: number | string[]
  /** The forwarding header trusted proxies set. */
  proxyHeader: 'x-forwarded-for' | 'forwarded'
  /** The prefix length IPv6 clients are grouped by. */
  ipv6Subnet: number
  /** A second policy (`RATE_LIMIT_BURST=limit/seconds`), e.g. 10 per second. */
  burst: { limit: number; windowSeconds: number } | undefined
  logLevel: LogLevel
  /** Milliseconds a client has to send a request's headers, from HEADERS_TIMEOUT_MS. */
  headersTimeoutMs: number
  /** Milliseconds a client has to send a whole request, from REQUEST_TIMEOUT_MS. */
  requestTimeoutMs: number
  /** Milliseconds an idle keep-alive connection stays open, from KEEP_ALIVE_TIMEOUT_MS. */
  keepAliveTimeoutMs: number
  /** The cap on open client connections, from MAX_CONNECTIONS; undefined: derived at start. */
  maxConnections: number | undefined
}

/** A bad environment variable; the message is the one line printed at start. */
export class EnvError extends Error {
  constructor(
    readonly variable: string,
    readonly value: string,
    readonly expected: string,
  ) {
    super(`Invalid ${variable}=${shown(value)}: expected ${expected}`)
    this.name = 'EnvError'
  }
}

/** Characters of a bad value shown in full; a longer one is shortened. */
const SHOWN_CHARACTERS = 60

/**
 * A value as the error line shows it: quoted, and when long, its first characters and its
 * length, so that the line stays one short line and always ends with what is allowed.
 */
function shown(value: string): string {
  if (value.length <= SHOWN_CHARACTERS) {
    return JSON.stringify(value)
  }
  return `${JSON.stringify(value.slice(0, SHOWN_CHARACTERS))}... (${value.length} characters)`
}

type Env = Record<string, string | undefined>

function read(env: Env, name: string): string | undefined {
  const value = env[name]
  return value === undefined || value.trim() === '' ? undefined : value.trim()
}

function integer(env: Env, name: string, fallback: number, min: number, max: number): number {
  const raw = read(env, name)
  if (raw === undefined) {
    return fallback
  }
  const value = /^\d+$/.test(raw) ? Number(raw) : NaN
  if (!Number.isSafeInteger(value) || value < min || value > max) {
    throw new EnvError(name, raw, `a whole number from ${min} to ${max}`)
  }
  return value
}

function oneOf<T extends string>(env: Env, name: string, fallback: T, allowed: readonly T[]): T {
  const raw = read(env, name)
  if (raw === undefined) {
    return fallback
  }
  const value = raw.toLowerCase() as T
  if (!allowed.includes(value)) {
    throw new EnvError(name, raw, `one of ${allowed.join(', ')}`)
  }
  return value
}

/** Parses `host:port[,host:port...]` (IPv6 hosts in brackets), or undefined when malformed. */
export function parseServers(raw: string): string[] | undefined {
  try {
    return parseConnectionString(raw).map(formatServer)
  } catch {
    return undefined
  }
}

/**
 * A warning when the bucket is a large part of the window (more than a tenth): requests in one
 * bucket leave the window together, so a request leaves it between `window - bucket` and
 * `window` seconds after it was made; a bucket as long as the window is a fixed window.
 */
export function bucketWarning({ windowSeconds, bucketSeconds }: Config): string | undefined {
  if (bucketSeconds * 10 <= windowSeconds) {
    return undefined
  }
  return bucketSeconds === windowSeconds
    ? `RATE_BUCKET_SECONDS equals RATE_WINDOW_SECONDS (${windowSeconds}): this is a fixed window, up to twice the limit can pass across its boundary`
    : `RATE_BUCKET_SECONDS=${bucketSeconds} is more than a tenth of RATE_WINDOW_SECONDS=${windowSeconds}: a request leaves the window between ${windowSeconds - bucketSeconds} and ${windowSeconds} s after it was made`
}

/** Reads the configuration; throws an EnvError for the first bad variable. */
export function loadConfig(env: Env = process.env): Config {
  const port = integer(env, 'PORT', 5000, 0, 65535)
  const host = read(env, 'HOST') ?? '0.0.0.0'
  if (isIP(host) === 0 && !isHostName(host)) {
    throw new EnvError('HOST', host, 'an IP address or a host name to listen on')
  }
  const storeBackend = oneOf<StoreBackend>(env, 'STORE_BACKEND', 'memory', ['memory', 'memcache'])
  const rawServers = read(env, 'MEMCACHE_CONNECTION_STRING') ?? '127.0.0.1:11211'
  const memcacheServers = parseServers(rawServers)
  if (memcacheServers === undefined) {
    throw new EnvError(
      'MEMCACHE_CONNECTION_STRING',
      rawServers,
      'host:port[,host:port...] with ports 1-65535, IPv6 hosts in brackets',
    )
  }
  const twice = memcacheServers.find((server, i) => memcacheServers.indexOf(server) !== i)
  if (twice !== undefined) {
    throw new EnvError(
      'MEMCACHE_CONNECTION_STRING',
      rawServers,
      `each server once (${twice} is listed twice)`,
    )
  }
  const memcacheTimeoutMs = integer(env, 'MEMCACHE_TIMEOUT_MS', 50, 1, 60_000)
  const rateLimit = integer(env, 'RATE_LIMIT', 100, 1, 1_000_000_000)
  const windowSeconds = integer(env, 'RATE_WINDOW_SECONDS', 3600, 1, 31_536_000)
  const bucketSeconds = integer(env, 'RATE_BUCKET_SECONDS', 1, 1, windowSeconds)
  if (windowSeconds % bucketSeconds !== 0) {
    throw new EnvError(
      'RATE_BUCKET_SECONDS',
      String(bucketSeconds),
      `a divisor of RATE_WINDOW_SECONDS (${windowSeconds})`,
    )
  }
  const failureMode = oneOf<FailureMode>(env, 'STORE_FAILURE_MODE', 'open', ['open', 'closed'])
  const trustProxy = readTrustProxy(env)
  const proxyHeader = oneOf(env, 'TRUST_PROXY_HEADER', 'x-forwarded-for', [
    'x-forwarded-for',
    'forwarded',
  ] as const)
  const ipv6Subnet = integer(env, 'IPV6_SUBNET', 56, 1, 128)
  const rawBurst = read(env, 'RATE_LIMIT_BURST')
  let burst: Config['burst']
  if (rawBurst !== undefined) {
    const match = /^(\d{1,10})\/(\d{1,8})$/.exec(rawBurst)
    const limit = Number(match?.[1])
    const seconds = Number(match?.[2])
    if (
      match === null ||
      limit < 1 ||
      limit > 1_000_000_000 ||
      seconds < 1 ||
      seconds >= windowSeconds
    ) {
      throw new EnvError(
        'RATE_LIMIT_BURST',
        rawBurst,
        `LIMIT/SECONDS, e.g. 10/1 (a limit of at least 1 per a window shorter than RATE_WINDOW_SECONDS, ${windowSeconds})`,
      )
    }
    burst = { limit, windowSeconds: seconds }
  }
  const logLevel = oneOf<LogLevel>(env, 'LOG_LEVEL', 'info', [
    'debug',
    'info',
    'warn',
    'error',
    'silent',
  ])
  const headersTimeoutMs = integer(env, 'HEADERS_TIMEOUT_MS', 15_000, 100, 600_000)
  const requestTimeoutMs = integer(
    env,
    'REQUEST_TIMEOUT_MS',
    Math.max(30_000, headersTimeoutMs),
    100,
    3_600_000,
  )
  if (requestTimeoutMs < headersTimeoutMs) {
    // Node refuses a headers timeout longer than the request timeout.
    throw new EnvError(
      'REQUEST_TIMEOUT_MS',
      String(requestTimeoutMs),
      `a whole number from HEADERS_TIMEOUT_MS (${headersTimeoutMs}) to 3600000`,
    )
  }
  const keepAliveTimeoutMs = integer(env, 'KEEP_ALIVE_TIMEOUT_MS', 65_000, 100, 3_600_000)
  const maxConnections =
    read(env, 'MAX_CONNECTIONS') !== undefined
      ? integer(env, 'MAX_CONNECTIONS', 0, 1, 1_000_000)
      : undefined
  return {
    port,
    host,
    storeBackend,
    memcacheServers,
    memcacheTimeoutMs,
    rateLimit,
    windowSeconds,
    bucketSeconds,
    failureMode,
    trustProxy,
    proxyHeader,
    ipv6Subnet,
    burst,
    logLevel,
    headersTimeoutMs,
    requestTimeoutMs,
    keepAliveTimeoutMs,
    maxConnections,
  }
}

const TRUST_EXPECTED =
  'unset or false, the number of proxies in front of the app (1 to 32), or proxy addresses and CIDR ranges separated by commas (10.0.0.0/8,192.168.1.5)'

function readTrustProxy(env: Env): number | string[] {
  const raw = read(env, 'TRUST_PROXY')
  if (raw === undefined || ['false', 'off', 'no', '0'].includes(raw.toLowerCase())) {
    return 0
  }
  if (/^\d+$/.test(raw)) {
    const hops = Number(raw)
    if (hops < 1 || hops > 32) {
      throw new EnvError('TRUST_PROXY', raw, TRUST_EXPECTED)
    }
    return hops
  }
  const list = raw.split(',').map((item) => item.trim())
  try {
    // The middleware's own parser: what it accepts here, it accepts at start.
    clientAddress({ trustProxy: list })
  } catch {
    throw new EnvError('TRUST_PROXY', raw, TRUST_EXPECTED)
  }
  return list
}
