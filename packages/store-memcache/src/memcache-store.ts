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

import { monitorEventLoopDelay } from 'node:perf_hooks'
import { StoreError } from '@slidelimit/core'
import type { SlotIncrement, Store, StoreCell } from '@slidelimit/core'
import { Connection } from './connection.js'
import { CounterBatch } from './counter-batch.js'
import type { BatchContext } from './counter-batch.js'
import { type Placement, Placements } from './placements.js'
import { Opcode, Status, encodeBatch, encodeRequest, expiryField } from './protocol.js'
import { Removal } from './removal.js'
import type { RemovalContext } from './removal.js'
import { ServerRing } from './ring.js'
import {
  type MemcacheEvent,
  type MemcacheStoreOptions,
  resolveStoreOptions,
} from './store-options.js'

export type { MemcacheEvent, MemcacheStoreOptions } from './store-options.js'

/** Milliseconds between event-loop delay samples (for deadline messages). */
const LOOP_DELAY_RESOLUTION_MS = 10

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
  readonly #placements: Placements
  readonly #removal: Removal
  readonly #onEvent: (event: MemcacheEvent) => void
  readonly #now: () => number
  readonly #connectTimeoutMs: number
  readonly #loopDelay = monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS })
  /** What a batch and a remove need of the store. */
  readonly #context: BatchContext & RemovalContext
  #lastId: number
  #closed = false
  #closing: Promise<void> | undefined

  constructor(options: MemcacheStoreOptions = {}) {
    const settings = resolveStoreOptions(options)
    const { addresses, names, deadlineMs, connectTimeoutMs } = settings
    this.deadlineMs = deadlineMs
    this.#connectTimeoutMs = connectTimeoutMs
    this.prefix = settings.prefix
    this.#onEvent = settings.onEvent
    this.#now = settings.now
    this.#lastId = (settings.firstRequestId - 1) >>> 0
    this.#context = {
      name: this.name,
      nextId: () => this.#nextId(),
      emit: (event) => {
        this.#emit(event)
      },
      closed: () => this.#closed,
    }
    this.servers = names
    this.shards = names
    this.#loopDelay.enable()
    this.#connections = addresses.map(
      ({ host, port }, i) =>
        new Connection(host, port, this.servers[i] as string, {
          deadlineMs,
          connectTimeoutMs,
          keepAlive: settings.keepAlive,
          username: settings.username,
          password: settings.password,
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
    const ring = new ServerRing(
      addresses.map((address, i) => ({ address, name: names[i] as string })),
    )
    this.#placements = new Placements(this.prefix, ring, this.#byServer, this)
    this.#removal = new Removal(this.#context)
  }

  /** The memcached key prefix for a requester: prefix, then a hash of the key. */
  keyBase(key: string): string {
    return this.#placements.of(key).base
  }

  /** The server (`host:port`) that holds every counter of a requester. */
  shardOf(key: string): string {
    return this.#placements.of(key).connection.server
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
    if (placement?.owner !== this) {
      placement = this.#placements.of(key)
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
   * Removes the counters `slots` of `key` from the key's server, in chunks of quiet deletes, one
   * remove at a time per server, so that the decisions on its socket only ever wait behind one
   * chunk (see removal.ts). A chunk that fails fails the remove with a StoreError; the chunks
   * after it are not sent, and the counters of those before it are gone.
   */
  remove(key: string, slots: readonly number[]): Promise<void> {
    if (this.#closed) {
      return Promise.reject(new StoreError(this.name, 'the store is closed'))
    }
    if (slots.length === 0) {
      return Promise.resolve()
    }
    const { base, connection } = this.#placements.of(key)
    return this.#removal.remove(connection, base, slots)
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
