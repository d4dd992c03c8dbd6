// memcached counters implementing the slidelimit Store contract, over memjs.
//
// - Keys are a prefix, a hash of the requester key and the slot, so any requester id becomes a
//   legal memcached key and raw client strings never reach memcached.
// - All counters of one requester live on one server (the hash picks it), so the increments and
//   reads of one update, pipelined on one socket, are applied in order.
// - Increments create missing counters atomically with their TTL (`initial: amount`) and are
//   never retried: a retried increment could count twice.
// - Every call has this store's own deadline; memjs's timeout is not relied upon.

import { hash } from 'node:crypto'
import { ConfigError, StoreError } from '@slidelimit/core'
import type { SlotIncrement, Store } from '@slidelimit/core'
import memjs from 'memjs'
import { formatServer, parseConnectionString } from './connection-string.js'

/** Options of {@link MemcacheStore}. */
export interface MemcacheStoreOptions {
  /** The servers, `host:port[,host:port...]` (IPv6 hosts in brackets). Defaults to `127.0.0.1:11211`. */
  servers?: string
  /**
   * Milliseconds a call may take before it fails with a StoreError; the operations may still
   * land in memcached later. Defaults to `50`.
   */
  deadlineMs?: number
  /** Prepended to every memcached key; printable ASCII, no spaces. Defaults to `"sl:"`. */
  prefix?: string
  /** Receives memjs's own log lines (connection errors). Defaults to dropping them. */
  log?: (message: string) => void
}

// Binary protocol opcodes and statuses used here.
const OP_INCREMENT = 0x05
const OP_DECREMENT = 0x06
const OP_NOOP = 0x0a
const OP_GETKQ = 0x0d
const STATUS_NON_NUMERIC = 0x06

/** Size of a binary-protocol request header. */
const HEADER_BYTES = 24
/** Extras of an increment or decrement: amount, initial value, expiry. */
const COUNTER_EXTRAS_BYTES = 20
/** Requester keys whose hashed memcached key base is remembered. */
const KEY_BASE_CACHE = 50_000

/**
 * Writes one binary-protocol request at `offset` (no value; for counters, the amount, initial
 * value and expiry as extras); returns the offset after it.
 */
function writeRequest(
  buf: Buffer,
  offset: number,
  opcode: number,
  key: string,
  opaque: number,
  counter?: { amount: number; initial: number; expires: number },
): number {
  const extras = counter === undefined ? 0 : COUNTER_EXTRAS_BYTES
  const keyBytes = key.length // keys are ASCII
  buf[offset] = 0x80
  buf[offset + 1] = opcode
  buf.writeUInt16BE(keyBytes, offset + 2)
  buf[offset + 4] = extras
  buf[offset + 5] = 0
  buf.writeUInt16BE(0, offset + 6)
  buf.writeUInt32BE(extras + keyBytes, offset + 8)
  buf.writeUInt32BE(opaque, offset + 12)
  buf.writeUInt32BE(0, offset + 16)
  buf.writeUInt32BE(0, offset + 20)
  let at = offset + HEADER_BYTES
  if (counter !== undefined) {
    buf.writeUInt32BE(Math.floor(counter.amount / 2 ** 32), at)
    buf.writeUInt32BE(counter.amount % 2 ** 32, at + 4)
    buf.writeUInt32BE(Math.floor(counter.initial / 2 ** 32), at + 8)
    buf.writeUInt32BE(counter.initial % 2 ** 32, at + 12)
    buf.writeUInt32BE(counter.expires, at + 16)
    at += COUNTER_EXTRAS_BYTES
  }
  buf.write(key, at, 'latin1')
  return at + keyBytes
}

/** A parsed memcached answer, as memjs hands it to a response callback. */
interface MemjsResponse {
  header: { opcode: number; status: number; opaque: number }
  key: Buffer
  val: Buffer
}

/** The parts of memjs.Client used here that its type declarations leave out. */
interface MemjsInternals {
  seq: number
  incrSeq: () => void
}

/** The parts of memjs.Server used here that its type declarations leave out. */
interface MemjsServerInternals {
  /** memjs's deadlines, one per request awaiting its last answer. */
  requestTimeouts: number[]
  options: { timeout: number }
}

/** Parses a counter as memcached stores it: ASCII digits, space-padded after a decrement. */
export function parseCounter(value: Buffer | null): number | undefined {
  if (value === null) {
    return 0
  }
  const text = value.toString('latin1').trim()
  return /^\d{1,15}$/.test(text) ? Number(text) : undefined
}

/** memjs's server choice: the same 31-bit string hash, on the requester part of a key. */
function serverIndex(key: string, count: number): number {
  const end = key.lastIndexOf(':')
  let h = 0
  for (let i = 0; i < end; i++) {
    h = (31 * h + key.charCodeAt(i)) | 0
  }
  return Math.abs(h) % count
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
  readonly #client: memjs.Client
  readonly #keyBases = new Map<string, string>()
  /** Requests waiting for the end of this turn of the event loop, per server. */
  readonly #queued = new Map<memjs.Server, { parts: Buffer[]; requests: number }>()
  #flushScheduled = false
  #closed = false

  constructor({
    servers = '127.0.0.1:11211',
    deadlineMs = 50,
    prefix = 'sl:',
    log = () => undefined,
  }: MemcacheStoreOptions = {}) {
    const addresses = parseConnectionString(servers, 'servers')
    if (!Number.isFinite(deadlineMs) || deadlineMs <= 0 || deadlineMs > 60_000) {
      throw new ConfigError('deadlineMs', deadlineMs, 'milliseconds above 0, at most 60000')
    }
    if (typeof prefix !== 'string' || !/^[\x21-\x7e]{0,100}$/.test(prefix)) {
      throw new ConfigError('prefix', prefix, 'at most 100 printable ASCII characters, no spaces')
    }
    if (typeof log !== 'function') {
      throw new ConfigError('log', log, 'a function of a message')
    }
    this.deadlineMs = deadlineMs
    this.prefix = prefix
    this.servers = addresses.map(formatServer)
    // memjs's timeouts only clean up dead sockets; the deadline above is what callers see.
    const timeout = Math.max(1, (deadlineMs * 4) / 1000)
    const serverObjects = addresses.map(
      ({ host, port }) =>
        new memjs.Server(host, port, undefined, undefined, {
          timeout,
          conntimeout: timeout,
          keepAlive: true,
        }),
    )
    this.#client = new memjs.Client(serverObjects, {
      retries: 1, // memjs retries when retries > 1: an increment must never be sent twice
      failover: false,
      logger: {
        log: (...args: unknown[]) => {
          log(args.map(String).join(' '))
        },
      },
    })
    const count = serverObjects.length
    // memjs types getServer as returning a string; it returns the server's index.
    ;(this.#client as unknown as { getServer: (key: string) => number }).getServer = (key) =>
      serverIndex(key, count)
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

  /**
   * Queues a batch for `server`. Every batch queued in one turn of the event loop (all the
   * requests Node parsed in it) leaves in one socket write.
   */
  #send(server: memjs.Server, batch: Buffer): void {
    const queued = this.#queued.get(server)
    if (queued === undefined) {
      this.#queued.set(server, { parts: [batch], requests: 1 })
    } else {
      queued.parts.push(batch)
      queued.requests++
    }
    if (!this.#flushScheduled) {
      this.#flushScheduled = true
      setImmediate(() => {
        this.#flush()
      })
    }
  }

  #flush(): void {
    this.#flushScheduled = false
    for (const [server, { parts, requests }] of this.#queued) {
      server.write(parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts))
      // memjs counts one deadline per write, and drops one per batch answered.
      const internals = server as unknown as MemjsServerInternals
      const deadline = Date.now() + Math.round(internals.options.timeout * 1000)
      for (let i = 1; i < requests; i++) {
        internals.requestTimeouts.push(deadline)
      }
    }
    this.#queued.clear()
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
    const out = new Array<number>(total).fill(0)
    if (total === 0) {
      return Promise.resolve(out)
    }
    const base = this.keyBase(key)
    // memjs answers null, not undefined, when no server is up.
    const server = this.#client.server(base) as memjs.Server | null | undefined
    if (server === null || server === undefined) {
      return Promise.reject(new StoreError(this.name, 'no server available'))
    }
    // One write, one round trip: the increments, a quiet get per read (memcached answers only
    // the hits, with their keys), then a no-op whose answer ends the batch. memcached answers
    // requests on one connection in order, so the reads see the increments.
    const client = this.#client as unknown as MemjsInternals
    client.incrSeq()
    const seq = client.seq
    const expires = Math.max(1, Math.ceil(ttlSeconds))
    const keys: string[] = []
    let bytes = HEADER_BYTES // the closing no-op
    for (const { slot } of increments) {
      const counterKey = base + String(slot)
      keys.push(counterKey)
      bytes += HEADER_BYTES + COUNTER_EXTRAS_BYTES + counterKey.length
    }
    const readIndex = new Map<string, number>()
    for (let i = 0; i < reads.length; i++) {
      const readKey = base + String(reads[i])
      readIndex.set(readKey, increments.length + i)
      keys.push(readKey)
      bytes += HEADER_BYTES + readKey.length
    }
    const batch = Buffer.allocUnsafe(bytes)
    let at = 0
    for (let i = 0; i < increments.length; i++) {
      const amount = (increments[i] as SlotIncrement).amount
      at = writeRequest(
        batch,
        at,
        amount >= 0 ? OP_INCREMENT : OP_DECREMENT,
        keys[i] as string,
        seq,
        {
          amount: Math.abs(amount),
          initial: Math.max(amount, 0),
          expires,
        },
      )
    }
    for (let i = increments.length; i < keys.length; i++) {
      at = writeRequest(batch, at, OP_GETKQ, keys[i] as string, seq)
    }
    writeRequest(batch, at, OP_NOOP, '', seq)

    return new Promise<number[]>((resolve, reject) => {
      let settled = false
      let answered = 0
      const fail = (error: StoreError): void => {
        if (!settled) {
          settled = true
          clearTimeout(timer)
          reject(error)
        }
      }
      const timer = setTimeout(() => {
        fail(new StoreError(this.name, `no answer within the ${this.deadlineMs} ms deadline`))
      }, this.deadlineMs)

      const onResponse = (response: MemjsResponse): void => {
        if (settled) {
          return
        }
        const { opcode, status } = response.header
        if (opcode === OP_NOOP) {
          if (answered < increments.length) {
            fail(new StoreError(this.name, 'memcached answered fewer increments than were sent'))
            return
          }
          settled = true
          clearTimeout(timer)
          resolve(out)
        } else if (opcode === OP_INCREMENT || opcode === OP_DECREMENT) {
          if (status !== 0 || response.val.length !== 8) {
            const reason =
              status === STATUS_NON_NUMERIC
                ? 'holds a non-numeric value'
                : `failed (status ${status})`
            fail(
              new StoreError(
                this.name,
                `counter ${base}${String(increments[answered]?.slot)} ${reason}`,
              ),
            )
            return
          }
          out[answered++] = response.val.readUInt32BE(0) * 2 ** 32 + response.val.readUInt32BE(4)
        } else if (opcode === OP_GETKQ && status === 0) {
          const readKey = response.key.toString('latin1')
          const at = readIndex.get(readKey)
          const count = parseCounter(response.val)
          if (at === undefined || count === undefined) {
            fail(new StoreError(this.name, `counter ${readKey} is not a number`))
            return
          }
          out[at] = count
        } else {
          fail(new StoreError(this.name, `unexpected answer (opcode ${opcode}, status ${status})`))
        }
      }
      onResponse.quiet = true
      server.onResponse(seq, onResponse)
      server.onError(seq, (error: Error | string) => {
        const message = typeof error === 'string' ? error : error.message
        fail(new StoreError(this.name, message, { cause: error }))
      })
      this.#send(server, batch)
    })
  }

  /** memcached's own `stats` of every server, by `host:port`. */
  stats(): Promise<Record<string, Record<string, string>>> {
    return new Promise((resolve, reject) => {
      const result: Record<string, Record<string, string>> = {}
      let waiting = this.servers.length
      const timer = setTimeout(() => {
        reject(new StoreError(this.name, `stats: no answer within ${this.deadlineMs * 4} ms`))
      }, this.deadlineMs * 4)
      this.#client.stats((err, server, stats) => {
        if (err !== null) {
          clearTimeout(timer)
          reject(new StoreError(this.name, `stats failed: ${err.message}`, { cause: err }))
          return
        }
        result[server] = stats ?? {}
        if (--waiting === 0) {
          clearTimeout(timer)
          resolve(result)
        }
      })
    })
  }

  /** Resolves when every server answers within four deadlines. */
  async ping(): Promise<void> {
    if (this.#closed) {
      throw new StoreError(this.name, 'the store is closed')
    }
    await this.stats()
  }

  close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true
      this.#flush() // what was queued still leaves, before the sockets close
      this.#client.close()
    }
    return Promise.resolve()
  }
}
