// memcached counters implementing the slidelimit Store contract.
//
// - Keys are a prefix, a hash of the requester key and the slot, so any requester id becomes a
//   legal memcached key and raw client strings never reach memcached.
// - A pool of servers is a ketama ring (ring.ts): placement depends on the set of servers, and
//   all counters of one requester live on one server, so the increments and reads of one
//   update, pipelined on one socket, are applied in order. Each server is a shard of the Store
//   contract, so a FailoverStore keeps one breaker per server.
// - An update is one batch of requests (counter-batch.ts: create races, corrupt counters).
// - Every request has this store's own deadline and its own 32-bit id (connection.ts).
// - A remove is a queue of chunks of deletes per server, so no request waits behind a big one.

import { hash } from 'node:crypto'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { ConfigError, StoreError } from '@slidelimit/core'
import type { SlotIncrement, Store, StoreCell } from '@slidelimit/core'
import { Connection } from './connection.js'
import { CounterBatch } from './counter-batch.js'
import type { BatchContext } from './counter-batch.js'
import { formatServer, parseConnectionString } from './connection-string.js'
import { ServerRing } from './ring.js'
import {
  Opcode,
  Status,
  encodeBatch,
  encodeRequest,
  expiryField,
  parseCounterText,
} from './protocol.js'

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

/** Requesters whose placement (key base and server) is remembered. */
const KEY_BASE_CACHE = 50_000
/**
 * Quiet deletes per request of a remove: memcached answers each delete of a missing counter, so
 * a chunk of them takes about 2 ms on loopback, well within a deadline, and is all a decision
 * on the same socket waits behind (a 3600 s window of 1 s buckets is 15 chunks).
 */
const REMOVE_CHUNK = 256
/** Milliseconds between event-loop delay samples (for deadline messages). */
const LOOP_DELAY_RESOLUTION_MS = 10

/** Where a requester's counters live: their memcached key base, and its server. */
interface Placement {
  base: string
  /** `base` as ASCII bytes, for encoding. */
  bytes: Uint8Array
  connection: Connection
  /** The store that made it: a cell's placement is used by that store only. */
  store: MemcacheStore
}

/** Parses a counter as memcached stores it: 0 when missing; undefined when not a number. */
export function parseCounter(value: Buffer | null): number | undefined {
  return value === null ? 0 : parseCounterText(value)
}

/**
 * Counters in memcached, shared by every process that uses the same servers and prefix.
 *
 * @example
 * ```ts
 * import { createLimiter } from '@slidelimit/core'
 * import { MemcacheStore } from '@slidelimit/store-memcache'
 *
 * const store = new MemcacheStore({ servers: 'cache-a:11211,cache-b:11211', deadlineMs: 50 })
 * const limiter = createLimiter({ store, limit: 100, windowSeconds: 3600 })
 * ```
 */
export class MemcacheStore implements Store {
  readonly name = 'memcache'
  readonly deadlineMs: number
  readonly prefix: string
  readonly servers: readonly string[]
  /** The servers as shards of the Store contract: one breaker each in a FailoverStore. */
  readonly shards: readonly string[]
  readonly #connections: Connection[]
  readonly #byServer = new Map<string, Connection>()
  readonly #ring: ServerRing
  readonly #placements = new Map<string, Placement>()
  /** The last remove queued on each server: the next one starts when it has settled. */
  readonly #removing = new Map<Connection, Promise<void>>()
  readonly #onEvent: (event: MemcacheEvent) => void
  readonly #now: () => number
  readonly #connectTimeoutMs: number
  readonly #loopDelay = monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS })
  /** What a batch needs of the store. */
  readonly #context: BatchContext
  #lastId: number
  #closed = false
  #closing: Promise<void> | undefined

  constructor({
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
  }: MemcacheStoreOptions = {}) {
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
    this.deadlineMs = deadlineMs
    this.#connectTimeoutMs = connectMs
    this.prefix = prefix
    this.#onEvent = onEvent
    this.#now = now
    this.#lastId = (firstRequestId - 1) >>> 0
    this.#context = {
      name: this.name,
      nextId: () => this.#nextId(),
      emit: (event) => {
        this.#emit(event)
      },
    }
    this.servers = names
    this.shards = names
    this.#ring = new ServerRing(
      addresses.map((address, i) => ({ address, name: names[i] as string })),
    )
    this.#loopDelay.enable()
    this.#connections = addresses.map(
      ({ host, port }, i) =>
        new Connection(host, port, this.servers[i] as string, {
          deadlineMs,
          connectTimeoutMs: connectMs,
          keepAlive,
          username,
          password,
          store: this.name,
          loopDelayMs: () => this.#takeLoopDelay(),
          onState: ({ server, state, error, restored }) => {
            this.#emit(
              state === 'up'
                ? { type: 'up', server, restored: restored === true }
                : { type: 'down', server, error: error ?? 'connection lost' },
            )
          },
        }),
    )
    for (const connection of this.#connections) {
      this.#byServer.set(connection.server, connection)
    }
  }

  /** The memcached key prefix for a requester: prefix, then a hash of the key. */
  keyBase(key: string): string {
    return this.#placementOf(key).base
  }

  /** The server (`host:port`) that holds every counter of a requester. */
  shardOf(key: string): string {
    return this.#placementOf(key).connection.server
  }

  /** Each server's state: `up` once it answered, `down` after it was lost, else `unknown`. */
  serverStates(): Record<string, 'unknown' | 'up' | 'down'> {
    const states: Record<string, 'unknown' | 'up' | 'down'> = {}
    for (const connection of this.#connections) {
      states[connection.server] = connection.state
    }
    return states
  }

  update(
    key: string,
    increments: readonly SlotIncrement[],
    reads: readonly number[],
    ttlSeconds: number,
    cell?: StoreCell,
  ): Promise<number[]> {
    if (this.#closed) {
      return Promise.reject(new StoreError(this.name, 'the store is closed'))
    }
    const total = increments.length + reads.length
    const values = new Array<number>(total).fill(0)
    if (total === 0) {
      return Promise.resolve(values)
    }
    // The cell's placement (a key's placement never changes) saves the lookup and the hash.
    let placement = cell?.held as Placement | undefined
    if (placement?.store !== this) {
      placement = this.#placementOf(key)
      if (cell !== undefined) {
        cell.held = placement
      }
    }
    const { base, bytes, connection } = placement
    const expiry = expiryField(ttlSeconds, this.#now())
    return new Promise<number[]>((resolve, reject) => {
      const batch = new CounterBatch(
        this.#context,
        connection,
        key,
        base,
        bytes,
        increments,
        reads,
        expiry,
        {
          values,
          resolve,
          reject,
        },
      )
      batch.send(null)
    })
  }

  /**
   * Removes the counters `slots` of `key` from the key's server, in requests of at most
   * {@link REMOVE_CHUNK} quiet deletes (memcached answers a quiet delete only when it fails; a
   * counter that is missing is gone already), each closed by a no-op and with its own deadline,
   * the next sent once the previous one is answered. One remove at a time per server (the
   * others wait their turn), so the decisions on its socket only ever wait behind one chunk.
   * A chunk that fails fails the remove with a StoreError; the chunks after it are not sent,
   * and the counters of those before it are gone.
   */
  remove(key: string, slots: readonly number[]): Promise<void> {
    if (this.#closed) {
      return Promise.reject(new StoreError(this.name, 'the store is closed'))
    }
    if (slots.length === 0) {
      return Promise.resolve()
    }
    const { base, connection } = this.#placementOf(key)
    const previous = this.#removing.get(connection)
    // The first remove on a server starts at once (its first chunk leaves with this turn's
    // requests, as an update's batch does); the others when the one before them has settled.
    const run =
      previous === undefined
        ? this.#removeInChunks(connection, base, slots)
        : previous.then(() => this.#removeInChunks(connection, base, slots))
    const settled = run.then(
      () => undefined,
      () => undefined,
    )
    this.#removing.set(connection, settled)
    void settled.then(() => {
      if (this.#removing.get(connection) === settled) {
        this.#removing.delete(connection)
      }
    })
    return run
  }

  /** The chunks of a remove, one after the other; stops at the first that fails. */
  async #removeInChunks(
    connection: Connection,
    base: string,
    slots: readonly number[],
  ): Promise<void> {
    for (let from = 0; from < slots.length; from += REMOVE_CHUNK) {
      if (this.#closed) {
        throw new StoreError(this.name, 'the store is closed')
      }
      await this.#removeChunk(connection, base, slots.slice(from, from + REMOVE_CHUNK))
    }
  }

  /** One request of quiet deletes and a closing no-op; resolves when the no-op is answered. */
  #removeChunk(connection: Connection, base: string, slots: readonly number[]): Promise<void> {
    const id = this.#nextId()
    const batch = encodeBatch(
      id,
      slots.map((slot) => ({ opcode: Opcode.deleteq, key: base + String(slot) })),
    )
    return new Promise<void>((resolve, reject) => {
      let failure: StoreError | undefined
      connection.send(id, batch, {
        onReply: ({ header: { opcode, status } }) => {
          if (opcode === Opcode.noop) {
            if (failure === undefined) {
              resolve()
            } else {
              reject(failure)
            }
            return true
          }
          if (opcode !== Opcode.deleteq || status !== Status.keyNotFound) {
            failure ??= new StoreError(
              this.name,
              `${connection.server} failed to remove a counter of ${base} (opcode ${opcode}, status ${status})`,
            )
          }
          return false
        },
        onFail: reject,
      })
    })
  }

  /** Resolves when every server (only `server`, when given) answers a no-op within the deadline. */
  async ping(server?: string): Promise<void> {
    if (this.#closed) {
      throw new StoreError(this.name, 'the store is closed')
    }
    await Promise.all(
      this.#pick(server).map(
        (connection) =>
          new Promise<void>((resolve, reject) => {
            const id = this.#nextId()
            connection.send(id, encodeBatch(id, []), {
              onReply: () => {
                resolve()
                return true
              },
              onFail: reject,
            })
          }),
      ),
    )
  }

  /** memcached's own `stats` of every server (only `server`, when given), by `host:port`. */
  async stats(server?: string): Promise<Record<string, Record<string, string>>> {
    if (this.#closed) {
      throw new StoreError(this.name, 'the store is closed')
    }
    const connections = this.#pick(server)
    const all = await Promise.all(
      connections.map(
        (connection) =>
          new Promise<Record<string, string>>((resolve, reject) => {
            const stats: Record<string, string> = {}
            const id = this.#nextId()
            connection.send(id, encodeRequest(Opcode.stat, '', id), {
              onReply: (reply) => {
                if (reply.header.status !== Status.ok) {
                  reject(new StoreError(this.name, `stats failed (status ${reply.header.status})`))
                  return true
                }
                if (reply.key.length === 0) {
                  resolve(stats)
                  return true
                }
                stats[reply.key.toString('latin1')] = reply.val.toString('latin1')
                return false
              },
              onFail: reject,
            })
          }),
      ),
    )
    return Object.fromEntries(connections.map(({ server: name }, i) => [name, all[i] ?? {}]))
  }

  /**
   * Sends what is queued, then closes the connections; resolves once they have closed (after
   * memcached answered what it received), or after `connectTimeoutMs` at most. A remove still
   * under way, or waiting its turn, fails: its chunks not sent yet are not sent.
   */
  close(): Promise<void> {
    this.#closing ??= this.#close()
    return this.#closing
  }

  async #close(): Promise<void> {
    this.#closed = true
    this.#loopDelay.disable()
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => {
        resolve(true)
      }, this.#connectTimeoutMs)
      timer.unref()
    })
    const closed = Promise.all(this.#connections.map((c) => c.close())).then(() => false)
    if (await Promise.race([closed, late])) {
      // A server that does not close its side (a silent path): do not leave the sockets open.
      for (const connection of this.#connections) {
        connection.destroy()
      }
    }
    clearTimeout(timer)
  }

  /** The next request id: unsigned 32 bits, wrapping, never 0 (memjs's SASL requests use 0). */
  #nextId(): number {
    let id = (this.#lastId + 1) >>> 0
    if (id === 0) {
      id = 1
    }
    this.#lastId = id
    return id
  }

  /** Reports an event; a throwing listener is not the store's problem. */
  #emit(event: MemcacheEvent): void {
    try {
      this.#onEvent(event)
    } catch {
      // ignored: the listener's failure must not fail a decision
    }
  }

  /** A requester's key base and server, remembered for the most recent requesters. */
  #placementOf(key: string): Placement {
    let placement = this.#placements.get(key)
    if (placement === undefined) {
      const base = `${this.prefix}${hash('sha1', key, 'base64url')}:`
      placement = {
        base,
        bytes: Buffer.from(base, 'latin1'),
        connection: this.#byServer.get(this.#ring.serverOf(base)) as Connection,
        store: this,
      }
      if (this.#placements.size >= KEY_BASE_CACHE) {
        for (const oldest of this.#placements.keys()) {
          this.#placements.delete(oldest)
          break
        }
      }
      this.#placements.set(key, placement)
    }
    return placement
  }

  /** Every connection, or the one of `server`; a StoreError for a server not in the pool. */
  #pick(server: string | undefined): Connection[] {
    if (server === undefined) {
      return this.#connections
    }
    const connection = this.#byServer.get(server)
    if (connection === undefined) {
      throw new StoreError(this.name, `has no server ${JSON.stringify(server)}`)
    }
    return [connection]
  }

  /** The longest event-loop delay since the last call, in milliseconds. */
  #takeLoopDelay(): number {
    const delay = this.#loopDelay.max / 1e6 - LOOP_DELAY_RESOLUTION_MS
    this.#loopDelay.reset()
    return Math.max(0, delay)
  }
}
