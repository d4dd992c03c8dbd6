// The bucketed sliding-window limiter: a request is admitted when the admitted requests counted
// in the window's buckets number fewer than the limit. A decision increments first, then sums,
// and rolls its own increment back when over the limit, so that limiters in many processes
// sharing one store never admit more than the limit together. Long windows are also counted in
// coarse groups, settled counters are cached per requester, and denials are remembered:
// docs/algorithm.md explains each, with a picture.
//
// The modules: window.ts holds the bucket arithmetic, requester-cache.ts what is kept per
// requester, plan.ts a decision's reads and the pure steps over a reply; this file decides.

import { hash } from 'node:crypto'
import { LIMITER_BRAND } from './brand.js'
import { ConfigError, asStoreError, unsupported } from './errors.js'
import type { Decision, DecideOptions, LimiterOptions } from './limiter-options.js'
import { wholeNumber } from './limiter-options.js'
import {
  type Counted,
  type Plan,
  type Request,
  cacheReads,
  countedOf,
  countedUnits,
  findLeave,
  holdsRequests,
  walkCounted,
} from './plan.js'
import {
  type Entry,
  DeniedQueue,
  NO_UNITS,
  RECHECK_MS,
  RequesterCache,
  rememberDenial,
  rememberedWait,
  forgetUnits,
  uncount,
  unitCount,
  unitFrom,
  unitTo,
} from './requester-cache.js'
import type { SlotIncrement, Store } from './store.js'
import { BucketWindow, emptyReads } from './window.js'

export type { Decision, DecideOptions, LimiterOptions } from './limiter-options.js'

/** Ids longer than this are replaced by their SHA-256 (then `Decision.id` is that hash). */
const LONGEST_ID = 128
const NO_READS: readonly number[] = []
/** Milliseconds after which a refund the store has not answered counts as landed. */
const REFUND_WAIT_MS = RECHECK_MS

/** The id a requester is held by: a long id (a token, a hostile header) by its hash. */
function heldId(id: string): string {
  return id.length > LONGEST_ID ? `sha256:${hash('sha256', id, 'base64url')}` : id
}

interface MutableIncrement {
  slot: number
  amount: number
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
  readonly graceMs: number
  readonly cacheSize: number
  readonly #now: () => number
  readonly #window: BucketWindow
  readonly #cache: RequesterCache
  readonly #denied = new DeniedQueue()
  /** Reused by synchronous decisions: the fine bucket's increment, then the coarse group's. */
  readonly #increments: SlotIncrement[]

  constructor({
    store,
    limit = 100,
    windowSeconds = 3600,
    bucketSeconds = 1,
    now = Date.now,
    prefix,
    graceMs = 2000,
    cacheSize = 100_000,
  }: LimiterOptions) {
    if (
      typeof store !== 'object' ||
      typeof (store as Partial<Store> | null)?.update !== 'function'
    ) {
      throw new ConfigError('store', store, 'a Store')
    }
    this.limit = wholeNumber('limit', limit, 1)
    this.windowSeconds = wholeNumber('windowSeconds', windowSeconds, 1)
    this.bucketSeconds = wholeNumber('bucketSeconds', bucketSeconds, 1)
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
    this.graceMs = wholeNumber('graceMs', graceMs, 0)
    this.cacheSize = wholeNumber('cacheSize', cacheSize, 0)
    this.store = store
    this.#now = now
    this.prefix = prefix ?? `w${windowSeconds}b${bucketSeconds}:`
    const window = new BucketWindow(windowSeconds, bucketSeconds, this.graceMs)
    this.#window = window
    this.buckets = window.buckets
    this.groupSize = window.groupSize
    this.ttlSeconds = window.ttlSeconds
    this.#increments = window.incrementsFor(0, 1)
    this.#cache = new RequesterCache(
      this.cacheSize,
      store,
      this.prefix,
      windowSeconds * 1000,
      this.graceMs,
    )
  }

  /** Requesters held in the cache. */
  get cached(): number {
    return this.#cache.size
  }

  /**
   * Decides on one request from `id` and counts it when admitted.
   * Rejects with the store's error when the store fails.
   */
  async consume(id: string, options?: DecideOptions): Promise<Decision> {
    return this.decide(id, options)
  }

  /**
   * What a request from `id` would be told now, counting nothing: `allowed` says whether one more
   * request would be admitted, `remaining` how many would be (the limit minus those counted),
   * `retryAfterSeconds` and `resetSeconds` as for a decision, and `bucket` is `-1`. Rejects with
   * the store's error when the store fails, and with a ConfigError for a bad `options.limit`.
   */
  async peek(id: string, options?: DecideOptions): Promise<Decision> {
    const limit = options?.limit === undefined ? this.limit : wholeNumber('limit', options.limit, 1)
    const plan = this.#plan(heldId(id), this.#now(), limit, true)
    if (!('reads' in plan)) {
      return plan
    }
    return this.#update(plan.key, [], plan.reads.slots, plan.entry, (values) =>
      this.#peeked(plan, values),
    )
  }

  /**
   * {@link consume} without a promise where none is needed: answers at once when the requester
   * is denied from memory or the store answers synchronously (the memory store), and with a
   * promise otherwise. Throws or rejects with the store's error when the store fails, and
   * throws a ConfigError naming `limit` for a bad `options.limit`.
   */
  decide(id: string, options?: DecideOptions): Decision | Promise<Decision> {
    const limit = options?.limit === undefined ? this.limit : wholeNumber('limit', options.limit, 1)
    return this.#run(this.#plan(heldId(id), this.#now(), limit))
  }

  /**
   * Takes back an admitted request (for instance one whose response failed): its counters are
   * decremented, and a denial remembered for its requester is forgotten. Does nothing for a
   * denied decision.
   */
  async refund(decision: Decision): Promise<void> {
    if (!decision.allowed || decision.bucket < 0) {
      return
    }
    // The requester's entry, made again if it was dropped since: a decision made while the
    // refund is on its way must know of it.
    const entry = this.cacheSize === 0 ? undefined : this.#entryNow(decision.id, this.#now())
    let timer: ReturnType<typeof setTimeout> | undefined
    let underWay = entry !== undefined
    const landed = (): void => {
      if (underWay) {
        underWay = false
        clearTimeout(timer)
        ;(entry as Entry).answered++
      }
    }
    if (entry !== undefined) {
      entry.denial = undefined
      // Until the store has it, a denial decided meanwhile read counts from before the refund:
      // it must not be remembered (see Entry.started). A store that never answers must not keep
      // the requester's denials from being remembered for good: past REFUND_WAIT_MS it counts
      // as landed.
      entry.started++
      timer = setTimeout(landed, REFUND_WAIT_MS)
      // unref where the runtime has it (Node, Bun; Deno's timers are numbers)
      ;(timer as { unref?: () => void }).unref?.()
      uncount(entry, decision.bucket)
    }
    const rollback = this.#window.incrementsFor(decision.bucket, -1)
    await this.#update(this.prefix + decision.id, rollback, NO_READS, entry, landed, () => {
      landed()
      if (entry !== undefined) {
        // The store may not have taken the request back: the cached counts must not show it gone.
        forgetUnits(entry, this.#now())
      }
    })
  }

  /**
   * Forgets everything counted for `id`: removes its counters from the store (every fine and
   * coarse counter that can be in the window of any process within the grace of this clock),
   * so that every limiter sharing the store and this prefix sees it as new; see
   * {@link LimiterOptions.cacheSize} for when other processes' decisions notice. Rejects with a
   * StoreError when the store fails, or has no `remove` (code
   * `ERR_SLIDELIMIT_STORE_UNSUPPORTED`).
   */
  async resetKey(id: string): Promise<void> {
    const store = this.store
    if (typeof store.remove !== 'function') {
      throw unsupported(store.name, 'remove')
    }
    const held = heldId(id)
    const slots = this.#window.slotsAround(this.#now())
    this.#cache.delete(held)
    try {
      await store.remove(this.prefix + held, slots)
    } catch (error) {
      throw asStoreError(store.name, error)
    } finally {
      // A decision made meanwhile may have cached counts read before the removal.
      this.#cache.delete(held)
    }
  }

  /** The cached entry of `id` at `nowMs` (made when there is none). */
  #entryNow(id: string, nowMs: number): Entry {
    const window = this.#window
    const bucket = window.bucketAt(nowMs)
    return this.#cache.at(
      id,
      nowMs,
      window.oldestWith(bucket),
      window.settledThrough(nowMs, bucket),
    )
  }

  /** Sends a decision's plan to the store and decides on the reply. */
  #run(plan: Plan | Decision, queue = true): Decision | Promise<Decision> {
    if (!('reads' in plan)) {
      return plan
    }
    const entry = plan.entry
    if (this.store.updateSync !== undefined) {
      // A synchronous decision overlaps no other decision, only a refund still on its way.
      plan.alone = entry === undefined || entry.answered === entry.started
      plan.seq = entry?.started ?? 0
      const values = this.#updateSync(plan.key, plan.increments, plan.reads.slots, entry)
      return this.#decideOnReply(plan, values)
    }
    if (entry === undefined) {
      return this.#update(plan.key, plan.increments, plan.reads.slots, undefined, (values) =>
        this.#decideOnReply(plan, values),
      )
    }
    if (entry.denial?.denying === true && queue) {
      const ahead = this.#denied.waitFor(entry, plan.limit)
      if (ahead !== undefined) {
        return ahead.then(() => this.#run(this.#plan(plan.id, this.#now(), plan.limit)))
      }
    }
    plan.alone = entry.answered === entry.started
    plan.seq = ++entry.started
    const sent = this.#update(
      plan.key,
      plan.increments,
      plan.reads.slots,
      entry,
      (values) => {
        entry.answered++
        return this.#decideOnReply(plan, values)
      },
      () => {
        entry.answered++
        if (entry.denial !== undefined) {
          entry.denial.denying = false
        }
      },
    )
    if (entry.denial?.denying === true && plan.alone) {
      this.#denied.add(entry, plan.limit, sent)
    }
    return sent
  }

  /**
   * The store's `updateSync`; anything it throws comes out as a StoreError, so that a store's
   * own bug or a client library's RangeError is a store failure, never a crash of the caller.
   */
  #updateSync(
    key: string,
    increments: readonly SlotIncrement[],
    reads: readonly number[],
    entry: Entry | undefined,
  ): number[] {
    try {
      return (this.store.updateSync as NonNullable<Store['updateSync']>)(
        key,
        increments,
        reads,
        this.ttlSeconds,
        entry,
      )
    } catch (error) {
      throw asStoreError(this.store.name, error)
    }
  }

  /**
   * The store's `update`, then `next` with its values; anything the store throws or rejects
   * with comes out as a rejected StoreError.
   */
  #update<T>(
    key: string,
    increments: readonly SlotIncrement[],
    reads: readonly number[],
    entry: Entry | undefined,
    next: (values: number[]) => T | Promise<T>,
    failed?: () => void,
  ): Promise<T> {
    const store = this.store
    try {
      return store
        .update(key, increments, reads, this.ttlSeconds, entry)
        .then(next, (error: unknown) => {
          failed?.()
          return Promise.reject(asStoreError(store.name, error))
        })
    } catch (error) {
      failed?.()
      return Promise.reject(asStoreError(store.name, error))
    }
  }

  /**
   * Answers from the requester's remembered denial, or lists what the store must do: the
   * increments (none for a peek) and the reads of what the cache does not hold.
   */
  #plan(id: string, nowMs: number, limit: number, peek = false): Plan | Decision {
    const window = this.#window
    const bucket = window.bucketAt(nowMs)
    const oldest = window.oldestWith(bucket)
    const settledThrough = window.settledThrough(nowMs, bucket)
    const entry =
      this.cacheSize === 0 ? undefined : this.#cache.at(id, nowMs, oldest, settledThrough)
    const wait = entry === undefined ? 0 : rememberedWait(entry, nowMs, limit, peek)
    if (wait > 0) {
      return this.#deniedDecision(id, wait, limit)
    }
    // The buckets before the current unit (its value comes back from its increment).
    const changingThrough = window.unitStart(bucket) - 1
    if (
      !peek &&
      entry !== undefined &&
      this.store.updateSync !== undefined &&
      Math.max(entry.settledThrough + 1, oldest) > settledThrough &&
      Math.max(settledThrough + 1, oldest) > changingThrough &&
      (entry.first >= entry.units.length || unitFrom(entry.units, entry.first) >= oldest)
    ) {
      // A synchronous store: the decision, denied or not, is made now.
      return this.#decideCached(id, nowMs, bucket, entry, limit) as Decision
    }

    const reads = emptyReads()
    let cachedSum = 0
    let edgeReads = 0
    let uncachedFrom = oldest
    if (entry !== undefined) {
      cachedSum = entry.sum
      const { units, first } = entry
      if (first < units.length && unitFrom(units, first) < oldest) {
        // A coarse group straddles the old edge: read the part still in the window in detail.
        cachedSum -= unitCount(units, first)
        for (let fine = oldest; fine <= unitTo(units, first); fine++) {
          reads.slots.push(fine)
          reads.from.push(fine)
          reads.to.push(fine)
        }
        edgeReads = reads.slots.length
      }
      uncachedFrom = Math.max(entry.settledThrough + 1, oldest)
    }
    // Settled counters not cached yet, then the ones that may still change.
    window.cover(reads, uncachedFrom, settledThrough)
    const newlySettled = reads.slots.length - edgeReads
    window.cover(reads, Math.max(settledThrough + 1, oldest), changingThrough)
    if (peek) {
      // No increment brings the current unit's value back: read it.
      reads.slots.push(window.unitSlot(bucket))
      reads.from.push(window.unitStart(bucket))
      reads.to.push(window.unitEnd(bucket))
    }
    return {
      id,
      limit,
      nowMs,
      bucket,
      oldest,
      key: entry?.key ?? this.prefix + id,
      entry,
      readAt: entry?.readAt ?? Math.floor(nowMs / 1000),
      cachedSum,
      seq: 0,
      alone: true,
      version: entry?.version ?? 0,
      units: entry?.units ?? NO_UNITS,
      first: entry?.first ?? 0,
      edgeReads,
      newlySettled,
      settledThrough,
      increments: peek ? [] : window.incrementsFor(bucket, 1),
      reads,
    }
  }

  /**
   * The common case with a synchronous store: everything outside the current group is cached,
   * so the decision is the two increments and a sum, with no lists built.
   */
  #decideCached(
    id: string,
    nowMs: number,
    bucket: number,
    entry: Entry,
    limit: number,
  ): Decision | Promise<Decision> {
    const increments = this.#increments
    ;(increments[0] as MutableIncrement).slot = bucket
    if (increments.length > 1) {
      ;(increments[1] as MutableIncrement).slot = this.#window.unitSlot(bucket)
    }
    const values = this.#updateSync(entry.key, increments, NO_READS, entry)
    const current = values[increments.length - 1] ?? 0
    const sum = entry.sum + current
    if (sum > limit) {
      const request: Request = {
        id,
        limit,
        nowMs,
        bucket,
        oldest: entry.oldest,
        key: entry.key,
        entry,
        readAt: entry.readAt,
        cachedSum: entry.sum,
        seq: entry.started,
        alone: entry.answered === entry.started,
      }
      return this.#deny(request, countedUnits(entry.units, entry.first), current - 1, sum)
    }
    // The oldest counted unit: the first cached one, else the current unit.
    const leave = entry.first < entry.units.length ? unitTo(entry.units, entry.first) : bucket
    return this.#admitted(id, nowMs, bucket, sum, leave, limit)
  }

  /** Sums the window from the store's reply, caches what settled, and decides. */
  #decideOnReply(plan: Plan, values: number[]): Decision | Promise<Decision> {
    const { entry, increments, bucket } = plan
    const current = values[increments.length - 1] ?? 0
    let sum = plan.cachedSum + current
    for (let i = increments.length; i < values.length; i++) {
      sum += values[i] ?? 0
    }
    this.#cacheSettled(plan, values)
    if (sum > plan.limit) {
      return this.#deny(plan, countedOf(plan, values), current - 1, sum)
    }
    if (entry?.denial !== undefined) {
      entry.denial.denying = false
    }
    // More quota frees up when the oldest counted unit leaves; with nothing older counted, the
    // current bucket (or group, which ends with it) leaves first.
    const oldest = walkCounted(plan, values, plan.reads.slots.length, holdsRequests)
    return this.#admitted(
      plan.id,
      plan.nowMs,
      bucket,
      sum,
      oldest < 0 ? bucket : oldest,
      plan.limit,
    )
  }

  /**
   * Caches the settled values a reply brought, when the plan read any and its entry is as it was
   * (same version, same store epoch).
   */
  #cacheSettled(plan: Plan, values: number[]): void {
    const entry = plan.entry
    if (
      entry !== undefined &&
      (plan.edgeReads > 0 || plan.newlySettled > 0) &&
      entry.version === plan.version &&
      entry.epoch === this.store.epochOf?.(entry.key)
    ) {
      cacheReads(entry, plan, values)
    }
  }

  /** An admitted decision: `sum` counted with this request, the oldest leaving after `leave`. */
  #admitted(
    id: string,
    nowMs: number,
    bucket: number,
    sum: number,
    leave: number,
    limit: number,
  ): Decision {
    const resetSeconds = this.#window.secondsUntilLeaves(leave, nowMs)
    const remaining = limit - sum
    return {
      allowed: true,
      limit,
      windowSeconds: this.windowSeconds,
      remaining,
      retryAfterSeconds: remaining > 0 ? 0 : resetSeconds,
      resetSeconds,
      id,
      bucket,
    }
  }

  #deniedDecision(id: string, wait: number, limit: number): Decision {
    return {
      allowed: false,
      limit,
      windowSeconds: this.windowSeconds,
      remaining: 0,
      retryAfterSeconds: wait,
      resetSeconds: wait,
      id,
      bucket: -1,
    }
  }

  /**
   * Denied, with `counted` (oldest first) and the current unit's count without this request:
   * rolls back this request's increments. One more request passes once `sum - limit` of the
   * other counted requests have left the window; the bucket where that happens is found
   * reading a coarse group's fine counters (in the rollback's round trip) when it ends inside
   * one. Cached counts too old to deny on are read again first.
   */
  #deny(
    request: Request,
    counted: Counted,
    currentCount: number,
    sum: number,
  ): Decision | Promise<Decision> {
    const { bucket, nowMs, entry } = request
    const window = this.#window
    const rollback = window.incrementsFor(bucket, -1)
    if (
      entry !== undefined &&
      request.cachedSum > 0 &&
      nowMs - request.readAt * 1000 >= RECHECK_MS &&
      this.#cache.get(request.id) === entry
    ) {
      // Cached counts this old may miss a reset or refund made elsewhere: take our increment
      // back and decide again on a fresh read of the window.
      if (entry.readAt === request.readAt) {
        forgetUnits(entry, nowMs)
      }
      const again = (): Decision | Promise<Decision> =>
        // The same decision going on: never queued behind itself.
        this.#run(this.#plan(request.id, nowMs, request.limit), false)
      if (this.store.updateSync !== undefined) {
        this.#updateSync(request.key, rollback, NO_READS, entry)
        return again()
      }
      return this.#update(request.key, rollback, NO_READS, entry, again)
    }
    counted.from.push(window.unitStart(bucket))
    counted.to.push(window.unitEnd(bucket))
    counted.count.push(currentCount)
    const leave = findLeave(counted, sum - request.limit, request.oldest, bucket)
    const finish = (after: number[]): Decision => {
      const leaving = leave.leaveAfter(after, rollback.length)
      if (entry !== undefined && this.#cache.get(request.id) === entry) {
        rememberDenial(
          entry,
          request.alone && entry.started === request.seq,
          window.secondLeaving(leaving),
          request.limit,
          // Cached counts were read at readAt; the rest now.
          request.cachedSum > 0 ? request.readAt : Math.floor(nowMs / 1000),
        )
      }
      return this.#deniedDecision(
        request.id,
        window.secondsUntilLeaves(leaving, nowMs),
        request.limit,
      )
    }
    if (this.store.updateSync !== undefined) {
      return finish(this.#updateSync(request.key, rollback, leave.reads, entry))
    }
    return this.#update(request.key, rollback, leave.reads, entry, finish)
  }

  /**
   * Answers a read-only plan: whether one more request would be admitted now, the requests left
   * (`limit` minus those counted), and when more quota frees up.
   */
  async #peeked(plan: Plan, values: number[]): Promise<Decision> {
    const { entry, bucket, nowMs, limit, id } = plan
    this.#cacheSettled(plan, values)
    const counted = countedOf(plan, values)
    let sum = 0
    let oldest = -1
    for (let u = 0; u < counted.count.length; u++) {
      const count = counted.count[u] as number
      sum += count
      if (oldest < 0 && count > 0) {
        oldest = counted.to[u] as number
      }
    }
    if (sum < limit) {
      return {
        allowed: true,
        limit,
        windowSeconds: this.windowSeconds,
        remaining: limit - sum,
        retryAfterSeconds: 0,
        resetSeconds: this.#window.secondsUntilLeaves(oldest < 0 ? bucket : oldest, nowMs),
        id,
        bucket: -1,
      }
    }
    const leave = findLeave(counted, sum - limit + 1, plan.oldest, bucket)
    const after =
      leave.reads.length === 0
        ? NO_READS
        : await this.#update(plan.key, [], leave.reads, entry, (detail) => detail)
    return this.#deniedDecision(
      id,
      this.#window.secondsUntilLeaves(leave.leaveAfter(after, 0), nowMs),
      limit,
    )
  }
}

// The brand that isLimiter checks, on the prototype: no cost per limiter, not enumerable.
Object.defineProperty(SlidingWindowLimiter.prototype, LIMITER_BRAND, { value: true })

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
