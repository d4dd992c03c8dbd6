// The options of a MemcacheStore, the events it reports, and the checks that turn the options
// into the settings it runs on.

import { ConfigError } from '@slidelimit/core'
import { type ServerAddress, formatServer, parseConnectionString } from './connection-string.js'

/** Something an operator may want to know about; the store never logs by itself. */
export type MemcacheEvent =
  /** The server answers: for the first time, or again (`restored`) after it was down. */
  | { type: 'up'; server: string; restored: boolean }
  /** The connection to the server was lost, or it missed a deadline. */
  | { type: 'down'; server: string; error: string }
  /** A counter held something that is not a number; it was deleted. */
  | { type: 'corrupt-counter'; server: string; counter: string; key: string }
  /**
   * An increment lost the race to create its counter (normal under load) and was sent again;
   * or, `resent: false`, it lost it too often and its call failed.
   */
  | { type: 'create-race'; server: string; counter: string; resent: boolean }

/** Options of {@link MemcacheStore}. */
export interface MemcacheStoreOptions {
  /**
   * The servers, `host:port[,host:port...]` (IPv6 hosts in brackets), each once. Several servers
   * form a pool: each requester is placed on one of them by a ketama ring, the same in every
   * process that lists the same servers under the same names, in any order. Defaults to
   * `127.0.0.1:11211`.
   */
  servers?: string
  /**
   * Milliseconds memcached has to answer a request before it fails with a StoreError (and the
   * socket is dropped); the operations may still land in memcached. Defaults to `50`.
   */
  deadlineMs?: number
  /** Prepended to every memcached key; printable ASCII, no spaces. Defaults to `"sl:"`. */
  prefix?: string
  /** Receives connection changes, corrupt counters and create races. Defaults to ignoring them. */
  onEvent?: (event: MemcacheEvent) => void
  /** TCP keep-alive on the sockets. Defaults to `true`. */
  keepAlive?: boolean
  /**
   * Milliseconds a new connection has to connect, and authenticate with SASL, before it is
   * dropped. Requests waiting for it fail at their own deadline meanwhile. Defaults to
   * `max(1000, 4 * deadlineMs)`.
   */
  connectTimeoutMs?: number
  /**
   * SASL credentials (PLAIN), for servers that ask for them. Default to the variables memjs
   * reads: MEMCACHIER_USERNAME / MEMCACHE_USERNAME and MEMCACHIER_PASSWORD / MEMCACHE_PASSWORD.
   */
  username?: string
  password?: string
  /**
   * The clock, in milliseconds since the epoch: counters living longer than 30 days are sent
   * with an absolute expiry. Defaults to `Date.now`.
   */
  now?: () => number
  /**
   * The id of the first request; ids count up from it and wrap at 2^32. For tests of long
   * uptimes. Defaults to `1`.
   */
  firstRequestId?: number
}

/** The options, checked, with their defaults. */
export interface StoreSettings {
  readonly addresses: readonly ServerAddress[]
  /** Each server as `host:port`, in the order given. */
  readonly names: readonly string[]
  readonly deadlineMs: number
  readonly connectTimeoutMs: number
  readonly prefix: string
  readonly onEvent: (event: MemcacheEvent) => void
  readonly keepAlive: boolean
  readonly username: string | undefined
  readonly password: string | undefined
  readonly now: () => number
  readonly firstRequestId: number
}

/** Checks every option (a ConfigError names the first bad one) and applies the defaults. */
export function resolveStoreOptions({
  servers = '127.0.0.1:11211',
  deadlineMs = 50,
  prefix = 'sl:',
  onEvent = () => undefined,
  keepAlive = true,
  connectTimeoutMs,
  username,
  password,
  now = Date.now,
  firstRequestId = 1,
}: MemcacheStoreOptions): StoreSettings {
  const addresses = parseConnectionString(servers, 'servers')
  const names = addresses.map(formatServer)
  const twice = names.find((name, i) => names.indexOf(name) !== i)
  if (twice !== undefined) {
    throw new ConfigError('servers', servers, `each server once (${twice} is listed twice)`)
  }
  if (!Number.isFinite(deadlineMs) || deadlineMs <= 0 || deadlineMs > 60_000) {
    throw new ConfigError('deadlineMs', deadlineMs, 'milliseconds above 0, at most 60000')
  }
  if (typeof prefix !== 'string' || !/^[\x21-\x7e]{0,100}$/.test(prefix)) {
    throw new ConfigError('prefix', prefix, 'at most 100 printable ASCII characters, no spaces')
  }
  if (typeof onEvent !== 'function') {
    throw new ConfigError('onEvent', onEvent, 'a function of an event')
  }
  const connectMs = connectTimeoutMs ?? Math.max(1000, 4 * deadlineMs)
  if (!Number.isFinite(connectMs) || connectMs <= 0 || connectMs > 600_000) {
    throw new ConfigError(
      'connectTimeoutMs',
      connectTimeoutMs,
      'milliseconds above 0, at most 600000',
    )
  }
  for (const [option, value] of [
    ['username', username],
    ['password', password],
  ] as const) {
    if (value !== undefined && typeof value !== 'string') {
      throw new ConfigError(option, value, 'a string')
    }
  }
  if (typeof now !== 'function') {
    throw new ConfigError('now', now, 'a function returning milliseconds')
  }
  if (!Number.isInteger(firstRequestId) || firstRequestId < 0 || firstRequestId >= 2 ** 32) {
    throw new ConfigError('firstRequestId', firstRequestId, 'a whole number from 0 to 2^32 - 1')
  }
  return {
    addresses,
    names,
    deadlineMs,
    connectTimeoutMs: connectMs,
    prefix,
    onEvent,
    keepAlive,
    username,
    password,
    now,
    firstRequestId,
  }
}
