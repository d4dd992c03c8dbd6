// The bucketed sliding-window limiter.
//
// Time is cut into buckets of `bucketSeconds`; a request at time t (bucket b) is admitted when
// the admitted requests counted in buckets b-n+1 .. b (n = windowSeconds / bucketSeconds)
// number fewer than `limit`. A decision increments first, then sums, and rolls its own
// increment back when the sum is over the limit, so that limiters in many processes sharing
// one store never admit more than `limit` in any window.
//
// Long windows would need n counters read per decision. Each admitted request is therefore
// also counted in a coarse counter for its group of G buckets (G about sqrt(n)); a decision
// reads fine counters only for the partial group at the window's old edge and coarse counters
// for the whole groups after it: about 2 * sqrt(n) reads, 119 at most for 3,600 buckets.
// Fine counters of a whole group are read only when a denial needs them for an exact retry time.

import { ConfigError } from './errors.js'
import type { SlotIncrement, Store } from './store.js'

/** Options of {@link createLimiter}. */
export interface LimiterOptions {
  /** The counters, shared by every process that should share the limit. */
  store: Store
  /** Requests admitted per window. Defaults to `100`. */
  limit?: number
  /** The length of the rolling window in seconds. Defaults to `3600`. */
  windowSeconds?: number
  /**
   * The length of one bucket in seconds; must divide `windowSeconds`. Requests in one bucket
   * leave the window together. Defaults to `1`.
   */
  bucketSeconds?: number
  /** The clock, in milliseconds since the epoch. Defaults to `Date.now`. */
  now?: () => number
  /**
   * Prepended to every requester key in the store, so that limiters with other windows never
   * share counters. Defaults to `w<windowSeconds>b<bucketSeconds>:`.
   */
  prefix?: string
}

/** The outcome of one request. */
export interface Decision {
  /** Whether the request is admitted (and counted). */
  readonly allowed: boolean
  /** The limit per window. */
  readonly limit: number
  /** The window in seconds. */
  readonly windowSeconds: number
  /** Requests that would still be admitted right now, after this one. */
  readonly remaining: number
  /**
   * Whole seconds until one more request would be admitted: 0 while `remaining` is above 0,
   * at least 1 otherwise. Exact for denied requests.
   */
  readonly retryAfterSeconds: number
  /**
   * Whole seconds until the oldest counted requests leave the window and free more quota
   * (at least 1). Exact for denied requests; for admitted ones it may be rounded up to the end
   * of a coarse group of buckets when the oldest counted request is that old.
   */
  readonly resetSeconds: number
}

/** Buckets in a window above which coarse group counters are kept. */
const COARSE_ABOVE_BUCKETS = 64
/** Seconds a counter outlives the window, covering clock differences between processes. */
const TTL_MARGIN_SECONDS = 5

function positiveInteger(option: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) {
    throw new ConfigError(option, value, 'a whole number of at least 1')
  }
  return value
}

/** Slot of the coarse counter for group `group`; fine buckets use slots >= 0. */
export function coarseSlot(group: number): number {
  return -1 - group
}

/** An exact bucketed sliding-window rate limiter over a {@link Store}. */
export class SlidingWindowLimiter {
  readonly limit: number
  readonly windowSeconds: number
  readonly bucketSeconds: number
  readonly store: Store
  readonly prefix: string
  /** Buckets per window. */
  readonly buckets: number
  /** Buckets per coarse group, or 0 when no coarse counters are kept. */
  readonly groupSize: number
  /** Time to live of every counter, in seconds. */
  readonly ttlSeconds: number
  readonly #now: () => number
  readonly #bucketMs: number

  constructor({
    store,
    limit = 100,
    windowSeconds = 3600,
    bucketSeconds = 1,
    now = Date.now,
    prefix,
  }: LimiterOptions) {
    if (
      typeof store !== 'object' ||
      typeof (store as Partial<Store> | null)?.update !== 'function'
    ) {
      throw new ConfigError('store', store, 'a Store')
    }
    this.limit = positiveInteger('limit', limit)
    this.windowSeconds = positiveInteger('windowSeconds', windowSeconds)
    this.bucketSeconds = positiveInteger('bucketSeconds', bucketSeconds)
    if (windowSeconds % bucketSeconds !== 0) {
      throw new ConfigError(
        'bucketSeconds',
        bucketSeconds,
        `a divisor of windowSeconds (${windowSeconds})`,
      )
    }
    if (typeof now !== 'function') {
      throw new ConfigError('now', now, 'a function returning milliseconds')
    }
    if (prefix !== undefined && typeof prefix !== 'string') {
      throw new ConfigError('prefix', prefix, 'a string')
    }
    this.store = store
    this.#now = now
    this.#bucketMs = bucketSeconds * 1000
    this.buckets = windowSeconds / bucketSeconds
    this.groupSize = this.buckets > COARSE_ABOVE_BUCKETS ? Math.ceil(Math.sqrt(this.buckets)) : 0
    this.prefix = prefix ?? `w${windowSeconds}b${bucketSeconds}:`
    this.ttlSeconds =
      windowSeconds + Math.max(this.groupSize, 1) * bucketSeconds + TTL_MARGIN_SECONDS
  }

  /**
   * Decides on one request from `id` and counts it when admitted.
   * Rejects with the store's error when the store fails.
   */
  async consume(id: string): Promise<Decision> {
    const t = this.#now()
    const n = this.buckets
    const g = this.groupSize
    const b = Math.floor(t / this.#bucketMs)
    // Buckets before the epoch hold nothing; clamping keeps fine slots >= 0.
    const lo = Math.max(b - n + 1, 0)
    const key = this.prefix + id

    // Fine counters read one by one: lo .. fineEnd. Coarse groups read: firstGroup .. lastGroup.
    let fineEnd: number
    let firstGroup = 0
    let lastGroup = -1
    const increments: SlotIncrement[] = [{ slot: b, amount: 1 }]
    if (g === 0) {
      fineEnd = b - 1
    } else {
      const current = Math.floor(b / g)
      increments.push({ slot: coarseSlot(current), amount: 1 })
      firstGroup = Math.min(Math.ceil(lo / g), current)
      fineEnd = Math.min(firstGroup * g - 1, b - 1)
      lastGroup = current - 1
    }
    const reads: number[] = []
    for (let j = lo; j <= fineEnd; j++) {
      reads.push(j)
    }
    for (let c = firstGroup; c <= lastGroup; c++) {
      reads.push(coarseSlot(c))
    }

    const values = await this.store.update(key, increments, reads, this.ttlSeconds)
    const ownIndex = increments.length - 1
    let sum = values[ownIndex] ?? 0
    for (let i = increments.length; i < values.length; i++) {
      sum += values[i] ?? 0
    }

    // Units of counted requests, oldest first: fine buckets, then coarse groups (the current
    // group last, from its increment). Each unit leaves the window when its last bucket does.
    const fineCount = fineEnd - lo + 1
    const fineValue = (j: number): number => values[increments.length + j - lo] ?? 0
    const groupValue = (c: number): number =>
      c > lastGroup
        ? (values[ownIndex] ?? 0)
        : (values[increments.length + fineCount + c - firstGroup] ?? 0)
    const groupEnd = (c: number): number => Math.min((c + 1) * g - 1, b)

    if (sum <= this.limit) {
      // Admitted. More quota frees up when the oldest counted unit leaves.
      let leave = b
      let found = false
      for (let j = lo; j <= fineEnd && !found; j++) {
        if (fineValue(j) > 0) {
          leave = j
          found = true
        }
      }
      for (let c = firstGroup; c <= lastGroup && !found; c++) {
        if (groupValue(c) > 0) {
          leave = groupEnd(c)
          found = true
        }
      }
      const resetSeconds = this.#secondsUntil(leave, t)
      const remaining = this.limit - sum
      return {
        allowed: true,
        limit: this.limit,
        windowSeconds: this.windowSeconds,
        remaining,
        retryAfterSeconds: remaining > 0 ? 0 : resetSeconds,
        resetSeconds,
      }
    }

    // Denied: roll back our own increment. One more request passes once `deficit` of the
    // other counted requests have left the window; find the bucket where that happens.
    const deficit = sum - this.limit
    const rollback = increments.map(({ slot }) => ({ slot, amount: -1 }))
    let cumulative = 0
    let leave = b
    let detailGroup = -1
    let found = false
    for (let j = lo; j <= fineEnd && !found; j++) {
      cumulative += fineValue(j)
      if (cumulative >= deficit) {
        leave = j
        found = true
      }
    }
    const current = g === 0 ? 0 : Math.floor(b / g)
    for (let c = firstGroup; g !== 0 && c <= current && !found; c++) {
      const value = c === current ? groupValue(c) - 1 : groupValue(c)
      if (cumulative + value >= deficit) {
        detailGroup = c
        found = true
      } else {
        cumulative += value
      }
    }

    if (detailGroup < 0) {
      await this.store.update(key, rollback, [], this.ttlSeconds)
    } else {
      // The wait ends inside a coarse group: read its fine counters with the rollback.
      const from = detailGroup * g
      const to = groupEnd(detailGroup)
      const detail: number[] = []
      for (let j = from; j <= to; j++) {
        detail.push(j)
      }
      const after = await this.store.update(key, rollback, detail, this.ttlSeconds)
      leave = to
      for (let j = from; j <= to; j++) {
        cumulative += after[rollback.length + j - from] ?? 0
        if (cumulative >= deficit) {
          leave = j
          break
        }
      }
    }
    const retryAfterSeconds = this.#secondsUntil(leave, t)
    return {
      allowed: false,
      limit: this.limit,
      windowSeconds: this.windowSeconds,
      remaining: 0,
      retryAfterSeconds,
      resetSeconds: retryAfterSeconds,
    }
  }

  /** Whole seconds (at least 1) from `t` until bucket `bucket` has left the window. */
  #secondsUntil(bucket: number, t: number): number {
    const ms = (bucket + this.buckets) * this.#bucketMs - t
    return Math.max(1, Math.ceil(ms / 1000))
  }
}

/**
 * Creates an exact bucketed sliding-window limiter.
 *
 * @example
 * ```ts
 * import { createLimiter } from '@slidelimit/core'
 * import { MemoryStore } from '@slidelimit/store-memory'
 *
 * const limiter = createLimiter({ store: new MemoryStore(), limit: 100, windowSeconds: 3600 })
 * const decision = await limiter.consume('203.0.113.7')
 * if (!decision.allowed) console.log(`retry in ${decision.retryAfterSeconds} s`)
 * ```
 */
export function createLimiter(options: LimiterOptions): SlidingWindowLimiter {
  return new SlidingWindowLimiter(options)
}
