// In-process counters implementing the slidelimit Store contract.
//
// Each key holds one record: its live counters as a flat typed array of [slot, count, expiry]
// triples sorted by slot, so a requester costs memory in proportion to the counters it used,
// not to the number of buckets in a window. A counter takes two numbers (16 bytes): its slot,
// and its count and expiry packed into one (expiry in whole seconds after the record's
// creation, as memcached keeps expiries in whole seconds); a record whose values do not fit
// the packing moves to three numbers a counter. Arrays grow by an eighth, so memory stays close
// to what the counters need. Expired counters read as 0 at once, and are dropped when their
// record is next touched after its compaction is due (an eighth of its counters' number of
// seconds late, so that a long-lived record is not rewritten every second); whole expired
// records go in a sweep that walks the map a chunk at a time on one unreferenced timer; there
// is no timer per key.

import { ConfigError, StoreError } from '@slidelimit/core'
import type { SlotIncrement, Store, StoreCell } from '@slidelimit/core'

/** Options of {@link MemoryStore}. */
export interface MemoryStoreOptions {
  /** The clock, in milliseconds since the epoch. Defaults to `Date.now`. */
  now?: () => number
  /**
   * Milliseconds between two steps of the sweep that drops expired records; `0` turns the timer
   * off (call {@link MemoryStore.sweep} yourself). Defaults to `1000`.
   */
  sweepIntervalMs?: number
  /** Records examined per sweep step. Defaults to `20000`. */
  sweepChunk?: number
}

/** Counts below this pack with an expiry into one number. */
const COUNT_SPAN = 2 ** 27
/** Expiries (seconds after the record's creation) below this pack with a count. */
const EXPIRY_SPAN = 2 ** 26
/** `compactAt` of a record with no counter: a small integer on every platform. */
const NEVER = 2 ** 30 - 1
/** The stride of a record no longer in the store. */
const GONE = 0
/** The counters of a record no longer in the store. */
const NO_DATA: number[] = []
/** Counters a new record has room for. */
const INITIAL_COUNTERS = 2

interface CounterRecord {
  /**
   * Sorted by slot. Packed (stride 2): [slot, expiry * COUNT_SPAN + count]; wide (stride 3):
   * [slot, count, expiry]. Expiries are whole seconds after `timeBase`. Entries past `size`
   * counters are spare room.
   */
  data: number[]
  /** 2 while packed, 3 once wide; GONE once removed from the store (a cell may still hold it). */
  stride: number
  /** Counters in use. */
  size: number
  /** The record's creation, in whole seconds. */
  timeBase: number
  /** The latest expiry of any counter, in seconds since the epoch: the record is dead after. */
  expiresAt: number
  /**
   * The earliest expiry of any counter, in seconds after `timeBase` (NEVER when there is none):
   * compaction is due after. Relative, so that it stays a small integer held in the record
   * itself (Infinity or a large number would take a boxed number per record).
   */
  compactAt: number
}

/** A new array with room for `counters` counters of `stride`, holding `from`'s first values. */
function roomFor(from: number[], used: number, counters: number, stride: number): number[] {
  const data = new Array<number>(counters * stride).fill(0)
  for (let i = 0; i < used; i++) {
    data[i] = from[i] as number
  }
  return data
}

/**
 * Counters held in this process: fast, exact, not shared between processes.
 *
 * @example
 * ```ts
 * import { createLimiter } from '@slidelimit/core'
 * import { MemoryStore } from '@slidelimit/store-memory'
 *
 * const limiter = createLimiter({ store: new MemoryStore(), limit: 100, windowSeconds: 3600 })
 * ```
 */
export class MemoryStore implements Store {
  readonly name = 'memory'
  readonly #records = new Map<string, CounterRecord>()
  readonly #now: () => number
  readonly #sweepChunk: number
  #sweepCursor: Iterator<[string, CounterRecord]> | undefined
  #timer: ReturnType<typeof setInterval> | undefined
  #closed = false

  constructor({
    now = Date.now,
    sweepIntervalMs = 1000,
    sweepChunk = 20_000,
  }: MemoryStoreOptions = {}) {
    if (typeof now !== 'function') {
      throw new ConfigError('now', now, 'a function returning milliseconds')
    }
    if (!Number.isSafeInteger(sweepIntervalMs) || sweepIntervalMs < 0) {
      throw new ConfigError('sweepIntervalMs', sweepIntervalMs, 'a whole number of at least 0')
    }
    if (!Number.isSafeInteger(sweepChunk) || sweepChunk < 1) {
      throw new ConfigError('sweepChunk', sweepChunk, 'a whole number of at least 1')
    }
    this.#now = now
    this.#sweepChunk = sweepChunk
    if (sweepIntervalMs > 0) {
      this.#timer = setInterval(() => {
        this.sweep()
      }, sweepIntervalMs)
      this.#timer.unref()
    }
  }

  /** The number of keys holding live or not yet swept counters. */
  get size(): number {
    return this.#records.size
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
    return Promise.resolve(this.updateSync(key, increments, reads, ttlSeconds, cell))
  }

  /**
   * {@link update} without the promise: the memory store answers at once. Throws a StoreError
   * once the store is closed.
   */
  updateSync(
    key: string,
    increments: readonly SlotIncrement[],
    reads: readonly number[],
    ttlSeconds: number,
    cell?: StoreCell,
  ): number[] {
    if (this.#closed) {
      throw new StoreError(this.name, 'the store is closed')
    }
    const nowSeconds = this.#now() / 1000
    const out = new Array<number>(increments.length + reads.length)
    // The cell's record saves the lookup while it is still the key's (see `gone`).
    let record = cell?.held as CounterRecord | undefined
    if (record === undefined || record.stride === GONE) {
      record = this.#records.get(key)
    }
    if (record !== undefined && record.compactAt + record.timeBase <= nowSeconds) {
      if (!compact(record, nowSeconds)) {
        this.#drop(key, record)
        record = undefined
      }
    }
    for (let i = 0; i < increments.length; i++) {
      const { slot, amount } = increments[i] as SlotIncrement
      if (record === undefined) {
        record = {
          data: roomFor([], 0, INITIAL_COUNTERS, 2),
          stride: 2,
          size: 0,
          timeBase: Math.floor(nowSeconds),
          expiresAt: 0,
          compactAt: NEVER,
        }
        this.#records.set(key, record)
      }
      out[i] = add(
        record,
        slot,
        amount,
        Math.ceil(nowSeconds + ttlSeconds),
        nowSeconds - record.timeBase,
      )
    }
    for (let i = 0; i < reads.length; i++) {
      out[increments.length + i] =
        record === undefined ? 0 : read(record, reads[i] as number, nowSeconds - record.timeBase)
    }
    if (cell !== undefined) {
      cell.held = record
    }
    return out
  }

  /**
   * Removes the record of `key`, marked gone for the cells that hold it, its counters let go
   * (a limiter's cell may hold the record long after: an hour of counters is 60 KB).
   */
  #drop(key: string, record: CounterRecord): void {
    record.stride = GONE
    record.data = NO_DATA
    record.size = 0
    this.#records.delete(key)
  }

  /** Removes every counter of `key` (whichever `slots` are asked for): its record goes. */
  remove(key: string, _slots: readonly number[]): Promise<void> {
    if (this.#closed) {
      return Promise.reject(new StoreError(this.name, 'the store is closed'))
    }
    const record = this.#records.get(key)
    if (record !== undefined) {
      this.#drop(key, record)
    }
    return Promise.resolve()
  }

  /**
   * One step of the sweep: examines up to `sweepChunk` records and drops the expired ones.
   * Returns the number of records dropped.
   */
  sweep(): number {
    const nowSeconds = this.#now() / 1000
    let dropped = 0
    this.#sweepCursor ??= this.#records.entries()
    for (let i = 0; i < this.#sweepChunk; i++) {
      const next = this.#sweepCursor.next()
      if (next.done === true) {
        this.#sweepCursor = undefined
        break
      }
      const [key, record] = next.value
      if (record.expiresAt <= nowSeconds) {
        this.#drop(key, record)
        dropped++
      }
    }
    return dropped
  }

  ping(): Promise<void> {
    return this.#closed
      ? Promise.reject(new StoreError(this.name, 'the store is closed'))
      : Promise.resolve()
  }

  close(): Promise<void> {
    this.#closed = true
    if (this.#timer !== undefined) {
      clearInterval(this.#timer)
    }
    for (const [key, record] of this.#records) {
      this.#drop(key, record)
    }
    this.#sweepCursor = undefined
    return Promise.resolve()
  }
}

/** Moves a record to three numbers a counter, for values that do not pack. */
function widen(record: CounterRecord): void {
  if (record.stride === 3) {
    return
  }
  const { data, size } = record
  const wide = new Array<number>(Math.max(size + 2, INITIAL_COUNTERS) * 3).fill(0)
  for (let i = 0; i < size; i++) {
    const packed = data[i * 2 + 1] as number
    const expiry = Math.floor(packed / COUNT_SPAN)
    wide[i * 3] = data[i * 2] as number
    wide[i * 3 + 1] = packed - expiry * COUNT_SPAN
    wide[i * 3 + 2] = expiry
  }
  record.data = wide
  record.stride = 3
}

function countAt(record: CounterRecord, index: number): number {
  if (record.stride === 2) {
    const packed = record.data[index * 2 + 1] as number
    return packed - Math.floor(packed / COUNT_SPAN) * COUNT_SPAN
  }
  return record.data[index * 3 + 1] as number
}

/** Expiry of a counter in seconds after the record's creation. */
function expiryAt(record: CounterRecord, index: number): number {
  if (record.stride === 2) {
    return Math.floor((record.data[index * 2 + 1] as number) / COUNT_SPAN)
  }
  return record.data[index * 3 + 2] as number
}

function setCounter(record: CounterRecord, index: number, count: number, expiry: number): void {
  if (record.stride === 2 && (count >= COUNT_SPAN || expiry >= EXPIRY_SPAN)) {
    widen(record)
  }
  if (record.stride === 2) {
    record.data[index * 2 + 1] = expiry * COUNT_SPAN + count
  } else {
    record.data[index * 3 + 1] = count
    record.data[index * 3 + 2] = expiry
  }
}

/** Index of the counter holding `slot`, or -(insertion index) - 1 when there is none. */
function find(record: CounterRecord, slot: number): number {
  const { data, stride } = record
  let low = 0
  let high = record.size - 1
  // Most lookups are for the newest slots: the newest fine bucket at the end, and the newest
  // coarse group (the lowest slot, as coarse slots count down) at the start. Checking both ends
  // first spares a long-lived requester's binary search over an hour of counters.
  if (high >= 0) {
    const last = data[high * stride] as number
    if (last <= slot) {
      return last === slot ? high : -(high + 1) - 1
    }
    const first = data[0] as number
    if (first >= slot) {
      return first === slot ? 0 : -1
    }
  }
  while (low <= high) {
    const mid = (low + high) >>> 1
    const value = data[mid * stride] as number
    if (value < slot) {
      low = mid + 1
    } else if (value > slot) {
      high = mid - 1
    } else {
      return mid
    }
  }
  return -low - 1
}

// Counters past their expiry may still be in a record until its next compaction (see
// `compact`): `now` (seconds after the record's creation) tells reads and increments which.

function read(record: CounterRecord, slot: number, now: number): number {
  const index = find(record, slot)
  return index < 0 || expiryAt(record, index) <= now ? 0 : countAt(record, index)
}

function add(
  record: CounterRecord,
  slot: number,
  amount: number,
  expiresAt: number,
  now: number,
): number {
  const index = find(record, slot)
  if (index >= 0 && record.stride === 2) {
    // The common case: add to the packed number in place.
    const at = index * 2 + 1
    const packed = record.data[at] as number
    const expiry = Math.floor(packed / COUNT_SPAN)
    const count = packed - expiry * COUNT_SPAN
    const value = Math.max(0, count + amount)
    if (expiry > now && value < COUNT_SPAN) {
      record.data[at] = packed + (value - count)
      return value
    }
  }
  if (index >= 0) {
    if (expiryAt(record, index) <= now) {
      // Expired, not yet compacted away: a new counter in its place.
      const value = Math.max(0, amount)
      setCounter(record, index, value, expiresAt - record.timeBase)
      noteExpiry(record, expiresAt)
      return value
    }
    const value = Math.max(0, countAt(record, index) + amount)
    setCounter(record, index, value, expiryAt(record, index))
    return value
  }
  const value = Math.max(0, amount)
  const insertAt = -index - 1
  if ((record.size + 1) * record.stride > record.data.length) {
    record.data = roomFor(
      record.data,
      record.size * record.stride,
      record.size + Math.max(2, record.size >> 3),
      record.stride,
    )
  }
  const { data, stride } = record
  for (let i = record.size * stride - 1; i >= insertAt * stride; i--) {
    data[i + stride] = data[i] as number
  }
  data[insertAt * stride] = slot
  record.size++
  setCounter(record, insertAt, value, expiresAt - record.timeBase)
  noteExpiry(record, expiresAt)
  return value
}

/** A counter of the record now expires at `expiresAt` (seconds since the epoch). */
function noteExpiry(record: CounterRecord, expiresAt: number): void {
  if (expiresAt > record.expiresAt) {
    record.expiresAt = expiresAt
  }
  if (expiresAt - record.timeBase < record.compactAt) {
    record.compactAt = expiresAt - record.timeBase
  }
}

/**
 * Drops the expired counters of a record; returns false when none is left. The next compaction
 * is due an eighth of the kept counters' number of seconds after the earliest expiry: a
 * requester active for a whole window expires a counter a second, and compacting its record
 * (thousands of counters for an hour of one-second buckets) for each would cost more than all
 * its decisions. Expired counters wait, read as 0, at most an eighth more memory.
 */
function compact(record: CounterRecord, nowSeconds: number): boolean {
  const nowRelative = nowSeconds - record.timeBase
  const { data, stride } = record
  let kept = 0
  let compactAt = NEVER
  for (let i = 0; i < record.size; i++) {
    const expiry = expiryAt(record, i)
    if (expiry > nowRelative) {
      for (let k = 0; k < stride; k++) {
        data[kept * stride + k] = data[i * stride + k] as number
      }
      kept++
      compactAt = Math.min(compactAt, expiry)
    }
  }
  record.size = kept
  record.compactAt = compactAt === NEVER ? NEVER : compactAt + (kept >> 3)
  if (kept * stride * 2 < data.length && data.length > INITIAL_COUNTERS * stride * 2) {
    // Give back what a long-lived requester no longer uses.
    record.data = roomFor(data, kept * stride, Math.max(kept, INITIAL_COUNTERS), stride)
  }
  return kept > 0
}
