// memcached counters implementing the slidelimit Store contract.
//
// - Keys are a prefix, a hash of the requester key and the slot, so any requester id becomes a
//   legal memcached key and raw client strings never reach memcached.
// - All counters of one requester live on one server, so the increments and reads of one
//   update, pipelined on one socket, are applied in order.
// - An update is one batch: the increments (creating missing counters with their time to live),
//   a quiet get per read, and a no-op whose answer ends the batch.
// - An increment that loses the race to create its counter (NOT_STORED) counted nothing; it is
//   sent again, a bounded number of times. An increment that was answered is never repeated.
// - A counter holding something that is not a number is deleted, and the call fails with a
//   StoreKeyError: its requester's problem, not the server's.
// - Every request has this store's own deadline and its own 32-bit id (connection.ts).

import { hash } from 'node:crypto'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { ConfigError, StoreError, StoreKeyError } from '@slidelimit/core'
import type { SlotIncrement, Store } from '@slidelimit/core'
import { Connection } from './connection.js'
import type { Request } from './connection.js'
import { formatServer, parseConnectionString } from './connection-string.js'
import type { MemjsReply } from './memjs-adapter.js'
import {
  NO_CREATE,
  Opcode,
  Status,
  counterOutcome,
  expiryField,
  parseCounterText,
  requestBytes,
  writeRequest,
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
  /** The servers, `host:port[,host:port...]` (IPv6 hosts in brackets). Defaults to `127.0.0.1:11211`. */
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

/** Requester keys whose hashed memcached key base is remembered. */
const KEY_BASE_CACHE = 50_000
/** Attempts of an increment that keeps losing the race to create its counter. */
const CREATE_ATTEMPTS = 3
/** Milliseconds between event-loop delay samples (for deadline messages). */
const LOOP_DELAY_RESOLUTION_MS = 10

/** memcached's server choice for a requester: a 31-bit string hash of the key base. */
function serverIndex(base: string, count: number): number {
  let h = 0
  for (let i = 0; i < base.length; i++) {
    h = (31 * h + base.charCodeAt(i)) | 0
  }
  return Math.abs(h) % count
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
  readonly #connections: Connection[]
  readonly #keyBases = new Map<string, string>()
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
    this.servers = addresses.map(formatServer)
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
  }

  /** The memcached key prefix for a requester: prefix, then a hash of the key. */
  keyBase(key: string): string {
    let base = this.#keyBases.get(key)
    if (base === undefined) {
      base = `${this.prefix}${hash('sha1', key, 'base64url')}:`
      if (this.#keyBases.size >= KEY_BASE_CACHE) {
        for (const oldest of this.#keyBases.keys()) {
          this.#keyBases.delete(oldest)
          break
        }
      }
      this.#keyBases.set(key, base)
    }
    return base
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
  ): Promise<number[]> {
    if (this.#closed) {
      return Promise.reject(new StoreError(this.name, 'the store is closed'))
    }
    const total = increments.length + reads.length
    const values = new Array<number>(total).fill(0)
    if (total === 0) {
      return Promise.resolve(values)
    }
    const base = this.keyBase(key)
    const connection = this.#connectionFor(base)
    const expiry = expiryField(ttlSeconds, this.#now())
    return new Promise<number[]>((resolve, reject) => {
      const batch = new CounterBatch(
        this.#context,
        connection,
        key,
        base,
        increments,
        reads,
        expiry,
        {
          values,
          resolve,
          reject,
        },
      )
      batch.send(increments.map((_, i) => i))
    })
  }

  /** Resolves when every server answers a no-op within the deadline. */
  async ping(): Promise<void> {
    if (this.#closed) {
      throw new StoreError(this.name, 'the store is closed')
    }
    await Promise.all(
      this.#connections.map(
        (connection) =>
          new Promise<void>((resolve, reject) => {
            const id = this.#nextId()
            const bytes = Buffer.allocUnsafe(requestBytes(0, false))
            writeRequest(bytes, 0, Opcode.noop, '', id)
            connection.send(id, bytes, {
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

  /** memcached's own `stats` of every server, by `host:port`. */
  async stats(): Promise<Record<string, Record<string, string>>> {
    if (this.#closed) {
      throw new StoreError(this.name, 'the store is closed')
    }
    const all = await Promise.all(
      this.#connections.map(
        (connection) =>
          new Promise<Record<string, string>>((resolve, reject) => {
            const stats: Record<string, string> = {}
            const id = this.#nextId()
            const bytes = Buffer.allocUnsafe(requestBytes(0, false))
            writeRequest(bytes, 0, Opcode.stat, '', id)
            connection.send(id, bytes, {
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
    return Object.fromEntries(this.servers.map((server, i) => [server, all[i] ?? {}]))
  }

  /**
   * Sends what is queued, then closes the connections; resolves once they have closed (after
   * memcached answered what it received), or after `connectTimeoutMs` at most.
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

  #connectionFor(base: string): Connection {
    const connections = this.#connections
    return connections.length === 1
      ? (connections[0] as Connection)
      : (connections[serverIndex(base, connections.length)] as Connection)
  }

  /** The longest event-loop delay since the last call, in milliseconds. */
  #takeLoopDelay(): number {
    const delay = this.#loopDelay.max / 1e6 - LOOP_DELAY_RESOLUTION_MS
    this.#loopDelay.reset()
    return Math.max(0, delay)
  }
}

/** What a batch needs of its store. */
interface BatchContext {
  readonly name: string
  nextId: () => number
  emit: (event: MemcacheEvent) => void
}

/** Where a batch's answer goes. */
interface Outcome {
  values: number[]
  resolve: (values: number[]) => void
  reject: (error: StoreError) => void
}

/**
 * One update's requests and their replies: the increments, then a quiet get per read, then a
 * no-op. Increments that lose a create race are sent again in a batch of their own.
 */
class CounterBatch implements Request {
  readonly #store: BatchContext
  readonly #connection: Connection
  readonly #key: string
  readonly #base: string
  readonly #increments: readonly SlotIncrement[]
  readonly #reads: readonly number[]
  readonly #expiry: number
  readonly #outcome: Outcome
  #attempt = 0
  /** Indexes (in #increments) of the increments sent in the current attempt, in order. */
  #sent: number[] = []
  #answered = 0
  #again: number[] = []
  #corrupt: string[] = []
  /** Indexes of the increments memcached applied (to take back if the call fails). */
  #counted: number[] = []
  #failure: StoreError | undefined
  /** Read slots by memcached key, for the quiet gets' replies (which carry their key). */
  #readIndex: Map<string, number> | undefined
  /** Pairs of value indexes (from, to) of counters read more than once. */
  #copies: number[] | undefined

  constructor(
    store: BatchContext,
    connection: Connection,
    key: string,
    base: string,
    increments: readonly SlotIncrement[],
    reads: readonly number[],
    expiry: number,
    outcome: Outcome,
  ) {
    this.#store = store
    this.#connection = connection
    this.#key = key
    this.#base = base
    this.#increments = increments
    this.#reads = reads
    this.#expiry = expiry
    this.#outcome = outcome
  }

  /** Sends the increments at `indexes` (and, the first time, the reads) in one batch. */
  send(indexes: number[]): void {
    this.#attempt++
    this.#sent = indexes
    this.#answered = 0
    this.#again = []
    const base = this.#base
    const withReads = this.#attempt === 1 && this.#reads.length > 0
    const keys: string[] = []
    let bytes = requestBytes(0, false) // the closing no-op
    for (const i of indexes) {
      const counter = base + String((this.#increments[i] as SlotIncrement).slot)
      keys.push(counter)
      bytes += requestBytes(counter.length, true)
    }
    if (withReads) {
      const readIndex = new Map<string, number>()
      for (let i = 0; i < this.#reads.length; i++) {
        const counter = base + String(this.#reads[i])
        const at = this.#increments.length + i
        const first = readIndex.get(counter)
        if (first === undefined) {
          readIndex.set(counter, at)
          keys.push(counter)
          bytes += requestBytes(counter.length, false)
        } else {
          // The same counter read twice: one get, its value in both places.
          ;(this.#copies ??= []).push(first, at)
        }
      }
      this.#readIndex = readIndex
    }
    const id = this.#store.nextId()
    const batch = Buffer.allocUnsafe(bytes)
    let at = 0
    for (let n = 0; n < indexes.length; n++) {
      const amount = (this.#increments[indexes[n] as number] as SlotIncrement).amount
      // A decrement never creates its counter: a missing one has nothing to take back.
      at = writeRequest(
        batch,
        at,
        amount >= 0 ? Opcode.increment : Opcode.decrement,
        keys[n] as string,
        id,
        {
          amount: Math.abs(amount),
          initial: Math.max(amount, 0),
          expiry: amount >= 0 ? this.#expiry : NO_CREATE,
        },
      )
    }
    for (let n = indexes.length; n < keys.length; n++) {
      at = writeRequest(batch, at, Opcode.getkq, keys[n] as string, id)
    }
    writeRequest(batch, at, Opcode.noop, '', id)
    this.#connection.send(id, batch, this)
  }

  onReply(reply: MemjsReply): boolean {
    const { opcode, status } = reply.header
    if (opcode === Opcode.noop) {
      this.#finish()
      return true
    }
    if (opcode === Opcode.increment || opcode === Opcode.decrement) {
      const index = this.#sent[this.#answered++]
      if (index === undefined) {
        this.#failure ??= this.#error('memcached answered more counter operations than were sent')
        return false
      }
      const counter = this.#base + String((this.#increments[index] as SlotIncrement).slot)
      const outcome = counterOutcome(status, reply.val)
      switch (outcome.kind) {
        case 'value':
          this.#outcome.values[index] = outcome.value
          this.#counted.push(index)
          break
        case 'missing':
          this.#outcome.values[index] = 0
          break
        case 'lost-create-race':
          this.#again.push(index)
          break
        case 'not-a-number':
          this.#corrupt.push(counter)
          break
        case 'server-error':
          this.#failure ??= this.#error(
            `${this.#connection.server} failed on counter ${counter} (status ${outcome.status}: ${outcome.message})`,
          )
      }
      return false
    }
    if (opcode === Opcode.getkq && status === Status.ok) {
      const counter = reply.key.toString('latin1')
      const at = this.#readIndex?.get(counter)
      const value = parseCounterText(reply.val)
      if (at === undefined) {
        this.#failure ??= this.#error(`memcached answered a read of ${counter}, never asked`)
      } else if (value === undefined) {
        this.#corrupt.push(counter)
      } else {
        this.#outcome.values[at] = value
      }
      return false
    }
    this.#failure ??= this.#error(
      `${this.#connection.server} answered opcode ${opcode} with status ${status}`,
    )
    return false
  }

  onFail(error: StoreError): void {
    this.#outcome.reject(error)
  }

  /**
   * The batch is answered: resolve; or send the increments that lost a create race again; or
   * fail, taking back what this call counted (a failed call counts nothing, as far as memcached
   * still answers) and deleting the counters that held something not a number.
   */
  #finish(): void {
    if (this.#answered !== this.#sent.length && this.#failure === undefined) {
      this.#failure = this.#error('memcached answered fewer counter operations than were sent')
    }
    const server = this.#connection.server
    if (this.#failure !== undefined) {
      this.#takeBack()
      this.#outcome.reject(this.#failure)
    } else if (this.#corrupt.length > 0) {
      for (const counter of this.#corrupt) {
        this.#store.emit({ type: 'corrupt-counter', server, counter, key: this.#key })
      }
      this.#takeBack()
      this.#outcome.reject(
        new StoreKeyError(
          this.#store.name,
          this.#key,
          `counter ${this.#corrupt.join(', ')} on ${server} held something that is not a number; deleted`,
        ),
      )
    } else if (this.#again.length > 0) {
      const resent = this.#attempt < CREATE_ATTEMPTS
      for (const index of this.#again) {
        this.#store.emit({
          type: 'create-race',
          server,
          counter: this.#base + String((this.#increments[index] as SlotIncrement).slot),
          resent,
        })
      }
      if (resent) {
        this.send(this.#again)
        return
      }
      this.#takeBack()
      this.#outcome.reject(
        new StoreKeyError(
          this.#store.name,
          this.#key,
          `an increment of ${this.#base} lost the race to create its counter ${CREATE_ATTEMPTS} times`,
        ),
      )
    } else {
      const { values } = this.#outcome
      const copies = this.#copies
      if (copies !== undefined) {
        for (let i = 0; i < copies.length; i += 2) {
          values[copies[i + 1] as number] = values[copies[i] as number] as number
        }
      }
      this.#outcome.resolve(values)
    }
  }

  /**
   * Deletes the corrupt counters (the next increment recreates them) and takes back what the
   * increments memcached applied in this call counted; nothing waits for the answer.
   */
  #takeBack(): void {
    const corrupt = this.#corrupt
    const takeBack = this.#counted
      .map((index) => this.#increments[index] as SlotIncrement)
      .filter(({ amount }) => amount > 0)
      .map(({ slot, amount }) => ({ counter: this.#base + String(slot), amount }))
      .filter(({ counter }) => !corrupt.includes(counter))
    if (corrupt.length === 0 && takeBack.length === 0) {
      return
    }
    let bytes = requestBytes(0, false)
    for (const counter of corrupt) {
      bytes += requestBytes(counter.length, false)
    }
    for (const { counter } of takeBack) {
      bytes += requestBytes(counter.length, true)
    }
    const id = this.#store.nextId()
    const batch = Buffer.allocUnsafe(bytes)
    let at = 0
    for (const counter of corrupt) {
      at = writeRequest(batch, at, Opcode.deleteq, counter, id)
    }
    for (const { counter, amount } of takeBack) {
      at = writeRequest(batch, at, Opcode.decrement, counter, id, {
        amount,
        initial: 0,
        expiry: NO_CREATE,
      })
    }
    writeRequest(batch, at, Opcode.noop, '', id)
    this.#connection.send(id, batch, {
      onReply: (reply) => reply.header.opcode === Opcode.noop,
      onFail: () => undefined, // the connection reports its own failures
    })
  }

  #error(message: string): StoreError {
    return new StoreError(this.#store.name, message)
  }
}
