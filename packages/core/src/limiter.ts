// The bucketed sliding-window limiter.
//
// Time is cut into buckets of `bucketSeconds`; a request at time t (bucket b) is admitted when
// the admitted requests counted in buckets b-n+1 .. b (n = windowSeconds / bucketSeconds)
// number fewer than `limit`. A decision increments first, then sums, and rolls its own
// increment back when the sum is over the limit, so that limiters in many processes sharing
// one store never admit more than `limit` in any window.
//
// Long windows would need n counters read per decision. Each admitted request is therefore
// also counted in a coarse counter for its group of G buckets (G about sqrt(n)): the window is
// the fine buckets of the partial group at its old edge, then whole groups, then the current
// group, whose coarse value comes back from the increment itself.
//
// Counters stop changing once their bucket is older than a grace period (longer than the clock
// skew between processes): every process has moved on to later buckets. Each limiter keeps, per
// requester, the values of those settled counters that are still in the window (a short sorted
// list of non-zero units), so that a decision in steady state sends only its two increments and
// reads at most one still-changing coarse group and one newly settled one. A requester seen for
// the first time costs one read of its whole window (about 2 * sqrt(n) counters, 119 for an hour
// of one-second buckets); a coarse group reaching the window's old edge is read in detail once.
// A denial is remembered until its exact retry time, and repeated requests until then are denied
// from memory with no store traffic: counts only fall while nothing is admitted.

import { hash } from 'node:crypto'
import { LIMITER_BRAND } from './brand.js'
import { ConfigError, asStoreError, unsupported } from './errors.js'
import type { SlotIncrement, Store, StoreCell } from './store.js'

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
  /**
   * Milliseconds after the end of a bucket during which another process may still count in it:
   * more than the clock skew between the processes sharing the store. Older counters are
   * cached and not read again. Defaults to `2000`.
   */
  graceMs?: number
  /**
   * Requesters whose settled counters and denials this limiter keeps in memory; the least
   * recently seen are dropped first, and requesters idle for a whole window are dropped as
   * others arrive. `0` turns the cache off: every decision reads its whole window.
   *
   * Other processes sharing the store may reset a requester or refund its settled requests.
   * Cached counts can then only be too high, so only denials can be wrong, and they are bounded:
   * a denial is decided on cached counts read at most 5 s before (older ones are read again
   * first) and remembered until its retry time but at most 5 s after those counts were read,
   * so a reset or refund elsewhere reaches this limiter's decisions within 5 s. Cached counts
   * are also read again every 10 minutes, which bounds how long `remaining` on admitted
   * decisions lags. The cost: an active requester's whole window is read every 10 minutes
   * (119 counters for an hour of one-second buckets); a requester that keeps asking while
   * blocked costs one such read every 5 s instead of no store traffic until its retry time.
   * Defaults to `100000`.
   */
  cacheSize?: number
}

/** Options of one decision ({@link SlidingWindowLimiter.decide}). */
export interface DecideOptions {
  /**
   * The limit for this request (for instance by the requester's plan): a whole number of at
   * least 1. The counters do not depend on it, so requests under different limits share one
   * exact window. A denial remembered under one limit is reused only under the same limit.
   * When processes sharing the store admit one requester under a higher limit than another
   * process denied it under, that process's remembered wait may be too short (never an
   * admission too many) until it checks the store again, within 5 s. Defaults to the
   * limiter's `limit`.
   */
  limit?: number
}

/** The outcome of one request. */
export interface Decision {
  /** Whether the request is admitted (and counted). */
  readonly allowed: boolean
  /** The limit per window that applied (the request's own, or the limiter's). */
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
  /**
   * The requester the decision is for: the id given, or `sha256:` and its hash for ids longer
   * than 128 characters (the limiter never keeps a long id whole).
   */
  readonly id: string
  /** The bucket the request was counted in, or `-1` when it was not counted (denied). */
  readonly bucket: number
}

/** Buckets in a window above which coarse group counters are kept. */
const COARSE_ABOVE_BUCKETS = 64
/** Seconds a counter outlives the window, covering clock differences between processes. */
const TTL_MARGIN_SECONDS = 5
/** Idle entries examined for removal per new requester. */
const SWEEP_PER_INSERT = 2
/** An entry moves to the young end of the cache at most this often. */
const TOUCH_EVERY_SECONDS = 1
const NO_UNITS: readonly number[] = []
/**
 * Other processes' resets and refunds reach decisions within this: a denial is decided only on
 * cached counts read at most this long before (older ones are read again first), and is
 * remembered at most this long after those counts were read.
 */
const RECHECK_MS = 5000

/**
 * Milliseconds a denied requester's request waits for the decision ahead of it (see `#ahead`)
 * before going to the store itself: a store that never answers holds nobody for long.
 */
const AHEAD_WAIT_MS = 1000
/**
 * Cached settled counts are read again from the store after this, so that `remaining` on
 * admitted decisions shows a reset or refund made elsewhere (decisions never wait for it: only
 * denials can be wrong, and those are bounded by RECHECK_MS). Long, because a read of the whole
 * window costs up to 119 counters a requester.
 */
const REREAD_MS = 600_000
/** Ids longer than this are replaced by their SHA-256 (then `Decision.id` is that hash). */
const LONGEST_ID = 128

function hashId(id: string): string {
  return `sha256:${hash('sha256', id, 'base64url')}`
}
const NO_READS: readonly number[] = []

interface MutableIncrement {
  slot: number
  amount: number
}

function wholeNumber(option: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new ConfigError(option, value, `a whole number of at least ${min}`)
  }
  return value
}

/** Slot of the coarse counter for group `group`; fine buckets use slots >= 0. */
export function coarseSlot(group: number): number {
  return -1 - group
}

/** What this limiter knows about one requester (and the store's cell for its key). */
interface Entry extends StoreCell {
  /** The requester's key in the store (prefix + id), built once. */
  readonly key: string
  /** The store's epoch for this key when the cached values were read. */
  epoch: number | undefined
  /**
   * Settled units in the window, as [from, to, count] triples sorted by bucket; count > 0.
   * Replaced, never changed in place, so that a decision in flight keeps what it counted.
   */
  units: readonly number[]
  /** Index of the first live triple in `units`. */
  head: number
  /** Sum of the counts of the live units. */
  sum: number
  /** Every settled bucket up to this one that is in the window is in `units`. */
  settledTo: number
  /** Units ending before this bucket have been dropped. */
  lo: number
  /** Bumped by every change of the cached units; a reply to an older version is not cached. */
  version: number
  // Times are whole seconds since the epoch, not milliseconds: small whole numbers are held in
  // the object itself, where a millisecond time takes a boxed number of its own (16 bytes each).
  // Each is rounded the safe way.
  /** The requester's denials: absent until it is first denied (most never are). */
  denial: Denial | undefined
  /**
   * Decisions sent to the store for this requester (and refunds), and those answered (or
   * failed): a denial is remembered only when nothing overlapped it, because the counts it read
   * may hold another denied request's increment before its rollback, or a refunded request
   * (its wait would be too long).
   */
  started: number
  answered: number
  /** When the cached units were last read from nothing (rounded down: never younger). */
  readAt: number
  /** When the requester was last seen (rounded down). */
  seen: number
}

/** What a limiter remembers of a requester's denials (times in whole seconds, as in Entry). */
interface Denial {
  /** Until when requests are denied from memory (0: none); a bucket's end, so exact. */
  until: number
  /** The limit the remembered denial was decided under; only that limit reuses it. */
  limit: number
  /** After when a remembered denial is checked against the store again (rounded down). */
  recheckAt: number
  /**
   * Whether the last decision answered for this requester was a denial (and nothing was
   * refunded since): while it is, one decision at a time goes to the store, and those that
   * come meanwhile wait for it (see `#ahead`).
   */
  denying: boolean
}

/** A denied requester's decision at the store, which its next requests wait for. */
interface Ahead {
  /** The limit it is decided under: only requests under the same limit wait for it. */
  readonly limit: number
  /** Settles when it is answered (either way), or after AHEAD_WAIT_MS. */
  readonly done: Promise<void>
}

/** Counted units oldest first: the buckets each covers and its count. */
interface Units {
  readonly from: number[]
  readonly to: number[]
  readonly count: number[]
}

/** One decision's reads and where their values go. */
interface Plan {
  readonly id: string
  readonly limit: number
  /** The entry's `readAt` (seconds) when the plan was made. */
  readonly readAt: number
  readonly t: number
  readonly b: number
  readonly lo: number
  readonly key: string
  readonly entry: Entry | undefined
  readonly version: number
  /** The entry's `started` count for this decision (0: sent without one). */
  seq: number
  /** Whether no other decision for the entry was waiting for the store when this one left. */
  alone: boolean
  /** The cached units as this plan counted them (arrays are replaced, never changed). */
  readonly units: readonly number[]
  readonly head: number
  /** Sum of the cached units counted in the window. */
  readonly cachedSum: number
  /** Reads that replace the first cached unit (a coarse group at the old edge) in detail. */
  readonly expand: number
  /** Reads of settled counters to cache once the reply comes (after the `expand` reads). */
  readonly settle: number
  /** The bucket `settledTo` becomes when the settled reads are cached. */
  readonly settledTo: number
  readonly increments: SlotIncrement[]
  readonly reads: number[]
  /** The first and last bucket each read covers. */
  readonly readFrom: number[]
  readonly readTo: number[]
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
  readonly #bucketMs: number
  readonly #cache = new Map<string, Entry>()
  /**
   * For a requester being denied, the decision it has at the store (settled either way). A
   * client hammering while blocked sends many requests at once; sent together, each would
   * count the others' increments before their rollback, so no denial would be remembered and
   * every request would cost a full decision. Queued behind one another, the next one is
   * alone, its denial is remembered, and the rest are denied from memory.
   */
  readonly #ahead = new Map<Entry, Ahead>()
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
    this.#increments =
      windowSeconds / bucketSeconds > COARSE_ABOVE_BUCKETS
        ? [
            { slot: 0, amount: 1 },
            { slot: 0, amount: 1 },
          ]
        : [{ slot: 0, amount: 1 }]
    this.#bucketMs = bucketSeconds * 1000
    this.buckets = windowSeconds / bucketSeconds
    this.groupSize = this.buckets > COARSE_ABOVE_BUCKETS ? Math.ceil(Math.sqrt(this.buckets)) : 0
    this.prefix = prefix ?? `w${windowSeconds}b${bucketSeconds}:`
    this.ttlSeconds =
      windowSeconds +
      Math.max(this.groupSize, 1) * bucketSeconds +
      TTL_MARGIN_SECONDS +
      Math.ceil(this.graceMs / 1000)
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
    const plan = this.#plan(id.length > LONGEST_ID ? hashId(id) : id, this.#now(), limit, true)
    if (!('reads' in plan)) {
      return plan
    }
    return this.#update(plan.key, [], plan.reads, plan.entry, (values) =>
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
    const t = this.#now()
    // A long id (a token, a hostile header) is held by its hash, never kept whole in memory.
    const plan = this.#plan(id.length > LONGEST_ID ? hashId(id) : id, t, limit)
    return this.#run(plan)
  }

  /** Sends a decision's plan to the store and decides on the reply. */
  #run(plan: Plan | Decision, queue = true): Decision | Promise<Decision> {
    if (!('reads' in plan)) {
      return plan
    }
    const entry = plan.entry
    if (this.store.updateSync !== undefined) {
      // Nothing overlaps a synchronous decision: it is alone, and counts as the latest one.
      plan.seq = entry?.started ?? 0
      return this.#settle(plan, this.#updateSync(plan.key, plan.increments, plan.reads, entry))
    }
    if (entry === undefined) {
      return this.#update(plan.key, plan.increments, plan.reads, undefined, (values) =>
        this.#settle(plan, values),
      )
    }
    if (entry.denial?.denying === true && queue) {
      const ahead = this.#ahead.get(entry)
      // Only behind a decision whose denial can answer this one from memory: sent alone (so
      // it is remembered when denied) and under the same limit.
      if (ahead !== undefined && ahead.limit === plan.limit) {
        return ahead.done.then(() => this.#run(this.#plan(plan.id, this.#now(), plan.limit)))
      }
    }
    plan.alone = entry.answered === entry.started
    plan.seq = ++entry.started
    const sent = this.#update(
      plan.key,
      plan.increments,
      plan.reads,
      entry,
      (values) => {
        entry.answered++
        return this.#settle(plan, values)
      },
      () => {
        entry.answered++
        if (entry.denial !== undefined) {
          entry.denial.denying = false
        }
      },
    )
    if (entry.denial?.denying === true && plan.alone) {
      let timer: ReturnType<typeof setTimeout> | undefined
      const ahead: Ahead = {
        limit: plan.limit,
        done: new Promise<void>((release) => {
          const letGo = (): void => {
            clearTimeout(timer)
            if (this.#ahead.get(entry) === ahead) {
              this.#ahead.delete(entry)
            }
            release()
          }
          sent.then(letGo, letGo)
          // A store that never answers must not hold the requester's other requests: past
          // AHEAD_WAIT_MS they go to the store themselves.
          timer = setTimeout(letGo, AHEAD_WAIT_MS)
          // unref where the runtime has it (Node, Bun; Deno's timers are numbers)
          ;(timer as { unref?: () => void }).unref?.()
        }),
      }
      this.#ahead.set(entry, ahead)
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
   * Takes back an admitted request (for instance one whose response failed): its counters are
   * decremented, and a denial remembered for its requester is forgotten. Does nothing for a
   * denied decision.
   */
  async refund(decision: Decision): Promise<void> {
    if (!decision.allowed || decision.bucket < 0) {
      return
    }
    const b = decision.bucket
    const entry = this.#cache.get(decision.id)
    if (entry !== undefined) {
      entry.denial = undefined
      // A denial in flight read counts from before the refund: it must not be remembered.
      entry.started++
      entry.answered++
      this.#uncount(entry, b)
    }
    const rollback: SlotIncrement[] = [{ slot: b, amount: -1 }]
    if (this.groupSize > 0) {
      rollback.push({ slot: coarseSlot(Math.floor(b / this.groupSize)), amount: -1 })
    }
    await this.#update(this.prefix + decision.id, rollback, NO_READS, entry, () => undefined)
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
    const held = id.length > LONGEST_ID ? hashId(id) : id
    const t = this.#now()
    const skew = Math.ceil(this.graceMs / this.#bucketMs)
    const b = Math.floor(t / this.#bucketMs)
    const from = Math.max(b - this.buckets + 1 - skew, 0)
    const to = b + skew
    const slots: number[] = []
    for (let j = from; j <= to; j++) {
      slots.push(j)
    }
    const g = this.groupSize
    if (g !== 0) {
      for (let group = Math.floor(from / g); group <= Math.floor(to / g); group++) {
        slots.push(coarseSlot(group))
      }
    }
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

  /**
   * A refunded request leaves the cached units too, when its bucket has settled (in a fine unit
   * or a coarse group's). The version changes either way, so that a reply read before the
   * store's decrement is not cached.
   */
  #uncount(entry: Entry, bucket: number): void {
    entry.version++
    const units = entry.units
    for (let h = entry.head; h < units.length; h += 3) {
      if ((units[h] as number) <= bucket && bucket <= (units[h + 1] as number)) {
        const kept = units.slice(entry.head)
        const at = h - entry.head
        const count = units[h + 2] as number
        if (count > 1) {
          kept[at + 2] = count - 1
        } else {
          kept.splice(at, 3)
        }
        entry.units = kept.length === 0 ? NO_UNITS : kept
        entry.head = 0
        entry.sum--
        return
      }
    }
  }

  /** Finds the cached entry (or makes one) and lists what the store must do. */
  #plan(id: string, t: number, limit: number, peek = false): Plan | Decision {
    const n = this.buckets
    const g = this.groupSize
    const bucketMs = this.#bucketMs
    const b = Math.floor(t / bucketMs)
    // Buckets before the epoch hold nothing; clamping keeps fine slots >= 0.
    const lo = Math.max(b - n + 1, 0)
    const current = g === 0 ? b : Math.floor(b / g)
    // The last bucket whose counters no process changes any more, rounded down to a whole group.
    let settledTo = Math.min(Math.floor((t - this.graceMs) / bucketMs) - 1, b - 1)
    if (g !== 0) {
      settledTo = Math.floor((settledTo + 1) / g) * g - 1
    }
    const entry = this.cacheSize === 0 ? undefined : this.#entry(id, t, lo, settledTo)
    // A denial is remembered under its limit: a raised limit must not be denied from memory,
    // and a lowered one has a later retry time than the one remembered.
    // Forgotten when not reused: what this decision admits makes it wrong for the old limit too.
    // Checked again after RECHECK_MS, on a fresh read: a reset elsewhere may have ended it.
    const denial = entry?.denial
    if (denial !== undefined && denial.until * 1000 > t) {
      if (denial.limit === limit && t < denial.recheckAt * 1000) {
        const wait = Math.max(1, Math.ceil((denial.until * 1000 - t) / 1000))
        return this.#denied(id, wait, limit)
      }
      if (!peek) {
        if (t >= denial.recheckAt * 1000) {
          this.#forgetUnits(entry as Entry, t)
        }
        denial.until = 0
      }
    }
    const changingEnd = g === 0 ? b - 1 : current * g - 1
    if (
      !peek &&
      entry !== undefined &&
      this.store.updateSync !== undefined &&
      Math.max(entry.settledTo + 1, lo) > settledTo &&
      Math.max(settledTo + 1, lo) > changingEnd &&
      (entry.head >= entry.units.length || (entry.units[entry.head] as number) >= lo)
    ) {
      return this.#decideCached(id, t, b, current, entry, limit)
    }

    const increments: SlotIncrement[] = peek
      ? []
      : g === 0
        ? [{ slot: b, amount: 1 }]
        : [
            { slot: b, amount: 1 },
            { slot: coarseSlot(current), amount: 1 },
          ]
    const reads: number[] = []
    const readFrom: number[] = []
    const readTo: number[] = []
    let cachedSum = 0
    let expand = 0
    let from = lo
    if (entry !== undefined) {
      cachedSum = entry.sum
      const units = entry.units
      const h = entry.head
      if (h < units.length && (units[h] as number) < lo) {
        // A coarse group straddles the old edge: read the part still in the window in detail.
        const to = units[h + 1] as number
        cachedSum -= units[h + 2] as number
        for (let j = lo; j <= to; j++) {
          reads.push(j)
          readFrom.push(j)
          readTo.push(j)
        }
        expand = reads.length
      }
      from = Math.max(entry.settledTo + 1, lo)
    }
    // Settled counters not cached yet, then the ones that may still change (not in the current
    // group, whose value comes from its increment).
    this.#pushRange(reads, readFrom, readTo, from, settledTo, lo)
    const settle = reads.length - expand
    this.#pushRange(reads, readFrom, readTo, Math.max(settledTo + 1, lo), changingEnd, lo)
    if (peek) {
      // No increment brings the current group's (or bucket's) value back: read it.
      reads.push(g === 0 ? b : coarseSlot(current))
      readFrom.push(g === 0 ? b : current * g)
      readTo.push(g === 0 ? b : current * g + g - 1)
    }
    return {
      id,
      limit,
      readAt: entry?.readAt ?? Math.floor(t / 1000),
      t,
      b,
      lo,
      key: entry?.key ?? this.prefix + id,
      entry,
      version: entry?.version ?? 0,
      seq: 0,
      alone: true,
      units: entry?.units ?? NO_UNITS,
      head: entry?.head ?? 0,
      cachedSum,
      expand,
      settle,
      settledTo,
      increments,
      reads,
      readFrom,
      readTo,
    }
  }

  /**
   * The common case with a synchronous store: everything outside the current group is cached,
   * so the decision is the two increments and a sum, with no lists built.
   */
  #decideCached(
    id: string,
    t: number,
    b: number,
    current: number,
    entry: Entry,
    limit: number,
  ): Decision {
    const increments = this.#increments
    ;(increments[0] as MutableIncrement).slot = b
    if (this.groupSize !== 0) {
      ;(increments[1] as MutableIncrement).slot = coarseSlot(current)
    }
    const values = this.#updateSync(entry.key, increments, NO_READS, entry)
    const sum = entry.sum + (values[increments.length - 1] ?? 0)
    if (sum > limit) {
      const plan: Plan = {
        id,
        limit,
        readAt: entry.readAt,
        t,
        b,
        lo: entry.lo,
        key: entry.key,
        entry,
        version: entry.version,
        seq: entry.started,
        alone: true,
        units: entry.units,
        head: entry.head,
        cachedSum: entry.sum,
        expand: 0,
        settle: 0,
        settledTo: entry.settledTo,
        increments: increments.map(({ slot }) => ({ slot, amount: 1 })),
        reads: [],
        readFrom: [],
        readTo: [],
      }
      return this.#deny(plan, values, sum) as Decision
    }
    // The oldest counted unit: the first cached one, else the current bucket (or group).
    const leave = entry.head < entry.units.length ? (entry.units[entry.head + 1] as number) : b
    return this.#admitted(id, t, b, sum, leave, limit)
  }

  /** An admitted decision: `sum` counted with this request, the oldest leaving after `leave`. */
  #admitted(id: string, t: number, b: number, sum: number, leave: number, limit: number): Decision {
    const resetSeconds = this.#secondsUntil(leave, t)
    const remaining = limit - sum
    return {
      allowed: true,
      limit,
      windowSeconds: this.windowSeconds,
      remaining,
      retryAfterSeconds: remaining > 0 ? 0 : resetSeconds,
      resetSeconds,
      id,
      bucket: b,
    }
  }

  /** Lists reads covering buckets from .. to: whole coarse groups where possible, else fine. */
  #pushRange(
    reads: number[],
    readFrom: number[],
    readTo: number[],
    from: number,
    to: number,
    lo: number,
  ): void {
    const g = this.groupSize
    let j = Math.max(from, lo)
    while (j <= to) {
      if (g !== 0 && j % g === 0 && j + g - 1 <= to) {
        reads.push(coarseSlot(j / g))
        readFrom.push(j)
        readTo.push(j + g - 1)
        j += g
      } else {
        reads.push(j)
        readFrom.push(j)
        readTo.push(j)
        j++
      }
    }
  }

  /** The cached entry of `id`, brought up to time t, or a new one. */
  #entry(id: string, t: number, lo: number, settledTo: number): Entry {
    const cache = this.#cache
    const second = Math.floor(t / 1000)
    let entry = cache.get(id)
    const epoch = this.store.epochOf?.(entry?.key ?? this.prefix + id)
    if (entry !== undefined) {
      if (
        entry.epoch !== epoch ||
        lo < entry.lo ||
        settledTo < entry.settledTo ||
        (entry.denial?.until ?? 0) * 1000 - t > this.windowSeconds * 1000
      ) {
        // The store changed under us, or the clock went back: start again.
        cache.delete(id)
        entry = undefined
      } else if (second - entry.seen >= TOUCH_EVERY_SECONDS) {
        // Move to the young end, so that eviction drops the least recently seen first.
        cache.delete(id)
        cache.set(id, entry)
      }
    }
    if (entry === undefined) {
      entry = {
        key: this.prefix + id,
        epoch,
        units: NO_UNITS,
        head: 0,
        sum: 0,
        settledTo: lo - 1,
        lo,
        version: 0,
        denial: undefined,
        held: undefined,
        started: 0,
        answered: 0,
        readAt: second,
        seen: second,
      }
      this.#sweep(t)
      cache.set(id, entry)
    }
    entry.seen = second
    if (t - entry.readAt * 1000 >= REREAD_MS) {
      // Settled counts may have fallen since (a reset or refund in another process).
      this.#forgetUnits(entry, t)
    }
    if (lo > entry.lo) {
      // Drop the units that have left the window.
      const units = entry.units
      let h = entry.head
      while (h < units.length && (units[h + 1] as number) < lo) {
        entry.sum -= units[h + 2] as number
        h += 3
      }
      if (h !== entry.head) {
        entry.version++
        if (h === units.length) {
          entry.units = NO_UNITS
          h = 0
        } else if (h >= 48 && h * 2 >= units.length) {
          entry.units = units.slice(h)
          h = 0
        }
        entry.head = h
      }
      entry.lo = lo
    }
    return entry
  }

  /** Drops the cached units of an entry: the next decision reads its whole window again. */
  #forgetUnits(entry: Entry, t: number): void {
    entry.units = NO_UNITS
    entry.head = 0
    entry.sum = 0
    entry.settledTo = entry.lo - 1
    entry.readAt = Math.floor(t / 1000)
    entry.version++
  }

  /** Drops requesters idle for a whole window, and the oldest when the cache is full. */
  #sweep(t: number): void {
    const cache = this.#cache
    // Seen before this second: idle for longer than the window and its grace.
    const idle = Math.floor((t - this.windowSeconds * 1000 - this.graceMs) / 1000)
    let examined = 0
    for (const [id, entry] of cache) {
      if (cache.size >= this.cacheSize || (examined < SWEEP_PER_INSERT && entry.seen < idle)) {
        cache.delete(id)
        examined++
      } else {
        break
      }
    }
  }

  #denied(id: string, wait: number, limit: number): Decision {
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

  /** Sums the window from the store's reply, caches what settled, and decides. */
  #settle(plan: Plan, values: number[]): Decision | Promise<Decision> {
    const { entry, increments, reads, readTo, b, expand } = plan
    const first = increments.length
    let sum = plan.cachedSum + (values[first - 1] ?? 0)
    for (let i = first; i < values.length; i++) {
      sum += values[i] ?? 0
    }
    if (
      entry !== undefined &&
      (expand > 0 || plan.settle > 0) &&
      entry.version === plan.version &&
      entry.epoch === this.store.epochOf?.(entry.key)
    ) {
      this.#cacheReads(entry, plan, values)
    }
    if (sum > plan.limit) {
      return this.#deny(plan, values, sum)
    }

    // Admitted. More quota frees up when the oldest counted unit leaves: the first non-zero one
    // of the expanded edge, the cached units, the other reads, the current group.
    let leave = -1
    for (let i = 0; i < expand && leave < 0; i++) {
      if ((values[first + i] ?? 0) > 0) {
        leave = readTo[i] as number
      }
    }
    const cachedHead = expand > 0 ? plan.head + 3 : plan.head
    if (leave < 0 && cachedHead < plan.units.length) {
      leave = plan.units[cachedHead + 1] as number
    }
    for (let i = expand; i < reads.length && leave < 0; i++) {
      if ((values[first + i] ?? 0) > 0) {
        leave = readTo[i] as number
      }
    }
    if (entry?.denial !== undefined) {
      entry.denial.denying = false
    }
    // Nothing older counted: the current bucket (or group, which ends with it) leaves first.
    return this.#admitted(plan.id, plan.t, b, sum, leave < 0 ? b : leave, plan.limit)
  }

  /** Caches the settled values a reply brought (the entry has not changed since the plan). */
  #cacheReads(entry: Entry, plan: Plan, values: number[]): void {
    const { expand, settle, readFrom, readTo } = plan
    const first = plan.increments.length
    const old = entry.units
    const units: number[] = []
    let sum = 0
    for (let i = 0; i < expand; i++) {
      // The non-zero fine counters replacing the coarse group that straddled the old edge.
      const value = values[first + i] ?? 0
      if (value > 0) {
        units.push(readFrom[i] as number, readTo[i] as number, value)
        sum += value
      }
    }
    for (let h = expand > 0 ? entry.head + 3 : entry.head; h < old.length; h += 3) {
      units.push(old[h] as number, old[h + 1] as number, old[h + 2] as number)
      sum += old[h + 2] as number
    }
    for (let i = expand; i < expand + settle; i++) {
      const value = values[first + i] ?? 0
      if (value > 0) {
        units.push(readFrom[i] as number, readTo[i] as number, value)
        sum += value
      }
    }
    entry.units = units.length === 0 ? NO_UNITS : units
    entry.head = 0
    entry.sum = sum
    entry.settledTo = Math.max(entry.settledTo, plan.settledTo)
    entry.version++
  }

  /**
   * Denied: roll back our own increment. One more request passes once `deficit` of the other
   * counted requests have left the window; find the bucket where that happens, reading a coarse
   * group's fine counters (in the rollback's round trip) when the wait ends inside one.
   */
  #deny(plan: Plan, values: number[], sum: number): Decision | Promise<Decision> {
    const { increments, b, t, entry } = plan
    if (
      entry !== undefined &&
      plan.cachedSum > 0 &&
      t - plan.readAt * 1000 >= RECHECK_MS &&
      this.#cache.get(plan.id) === entry
    ) {
      // Cached counts this old may miss a reset or refund made elsewhere: take our increment
      // back and decide again on a fresh read of the window.
      if (entry.readAt === plan.readAt) {
        this.#forgetUnits(entry, t)
      }
      const back = increments.map(({ slot }) => ({ slot, amount: -1 }))
      const again = (): Decision | Promise<Decision> =>
        // The same decision going on: never queued behind itself.
        this.#run(this.#plan(plan.id, t, plan.limit), false)
      if (this.store.updateSync !== undefined) {
        this.#updateSync(plan.key, back, NO_READS, plan.entry)
        return again()
      }
      return this.#update(plan.key, back, NO_READS, plan.entry, again)
    }
    const g = this.groupSize
    const first = increments.length
    // Units oldest first, as the plan counted them, then the current group (or bucket) without
    // our own request.
    const units = this.#unitsOf(plan, values)
    const current = g === 0 ? b : Math.floor(b / g)
    units.from.push(g === 0 ? b : current * g)
    units.to.push(g === 0 ? b : current * g + g - 1)
    units.count.push((values[first - 1] ?? 0) - 1)
    const wait = this.#findLeave(plan, units, sum - plan.limit)
    const rollback = increments.map(({ slot }) => ({ slot, amount: -1 }))
    const finish = (after: number[]): Decision => {
      const leave = wait.leaveAfter(after, rollback.length)
      const deniedUntil = (leave + this.buckets) * this.#bucketMs
      const denial =
        entry === undefined || this.#cache.get(plan.id) !== entry
          ? undefined
          : (entry.denial ??= { until: 0, limit: 0, recheckAt: 0, denying: true })
      if (denial !== undefined) {
        denial.denying = true
      }
      if (
        denial !== undefined &&
        // Not when another decision or a refund overlapped this one (see Entry.started).
        plan.alone &&
        (entry as Entry).started === plan.seq
      ) {
        denial.until = (leave + this.buckets) * this.bucketSeconds
        denial.limit = plan.limit
        // Cached counts in the plan were read at readAt; the rest now.
        denial.recheckAt =
          (plan.cachedSum > 0 ? plan.readAt : Math.floor(t / 1000)) + RECHECK_MS / 1000
      }
      return this.#denied(plan.id, Math.max(1, Math.ceil((deniedUntil - t) / 1000)), plan.limit)
    }
    if (this.store.updateSync !== undefined) {
      return finish(this.#updateSync(plan.key, rollback, wait.reads, plan.entry))
    }
    return this.#update(plan.key, rollback, wait.reads, plan.entry, finish)
  }

  /** The units a plan counted, oldest first: the expanded edge, the cached units, the reads. */
  #unitsOf(plan: Plan, values: number[]): Units {
    const { reads, readFrom, readTo, expand, units } = plan
    const first = plan.increments.length
    const from: number[] = []
    const to: number[] = []
    const count: number[] = []
    for (let i = 0; i < expand; i++) {
      from.push(readFrom[i] as number)
      to.push(readTo[i] as number)
      count.push(values[first + i] ?? 0)
    }
    for (let h = expand > 0 ? plan.head + 3 : plan.head; h < units.length; h += 3) {
      from.push(units[h] as number)
      to.push(units[h + 1] as number)
      count.push(units[h + 2] as number)
    }
    for (let i = expand; i < reads.length; i++) {
      from.push(readFrom[i] as number)
      to.push(readTo[i] as number)
      count.push(values[first + i] ?? 0)
    }
    return { from, to, count }
  }

  /**
   * The bucket whose leaving the window frees one more request: once `deficit` of the counted
   * requests have left. When that happens inside a coarse group, its fine counters must be
   * read (`reads`), and `leaveAfter` takes their values (from index `at` of a reply).
   */
  #findLeave(
    plan: Plan,
    units: Units,
    deficit: number,
  ): { reads: number[]; leaveAfter: (after: number[], at: number) => number } {
    const { b, lo } = plan
    let cumulative = 0
    let leave = b
    let detail = -1
    for (let u = 0; u < units.count.length; u++) {
      const count = units.count[u] as number
      if (cumulative + count >= deficit) {
        if (units.from[u] === units.to[u]) {
          leave = units.from[u] as number
        } else {
          detail = u
        }
        break
      }
      cumulative += count
    }
    const detailFrom = detail < 0 ? 0 : Math.max(units.from[detail] as number, lo)
    const detailTo = detail < 0 ? -1 : Math.min(units.to[detail] as number, b)
    const reads: number[] = []
    for (let j = detailFrom; j <= detailTo; j++) {
      reads.push(j)
    }
    return {
      reads,
      leaveAfter: (after, at) => {
        if (detail < 0) {
          return leave
        }
        for (let j = detailFrom; j <= detailTo; j++) {
          cumulative += after[at + j - detailFrom] ?? 0
          if (cumulative >= deficit) {
            return j
          }
        }
        return detailTo
      },
    }
  }

  /**
   * Answers a read-only plan: whether one more request would be admitted now, the requests left
   * (`limit` minus those counted), and when more quota frees up.
   */
  async #peeked(plan: Plan, values: number[]): Promise<Decision> {
    const { entry, b, t, limit, id } = plan
    if (
      entry !== undefined &&
      (plan.expand > 0 || plan.settle > 0) &&
      entry.version === plan.version &&
      entry.epoch === this.store.epochOf?.(entry.key)
    ) {
      this.#cacheReads(entry, plan, values)
    }
    const units = this.#unitsOf(plan, values)
    let sum = 0
    let oldest = -1
    for (let u = 0; u < units.count.length; u++) {
      const count = units.count[u] as number
      sum += count
      if (oldest < 0 && count > 0) {
        oldest = units.to[u] as number
      }
    }
    if (sum < limit) {
      return {
        allowed: true,
        limit,
        windowSeconds: this.windowSeconds,
        remaining: limit - sum,
        retryAfterSeconds: 0,
        resetSeconds: this.#secondsUntil(oldest < 0 ? b : oldest, t),
        id,
        bucket: -1,
      }
    }
    const wait = this.#findLeave(plan, units, sum - limit + 1)
    const after =
      wait.reads.length === 0
        ? NO_READS
        : await this.#update(plan.key, [], wait.reads, plan.entry, (detail) => detail)
    return this.#denied(id, this.#secondsUntil(wait.leaveAfter(after as number[], 0), t), limit)
  }

  /** Whole seconds (at least 1) from `t` until bucket `bucket` has left the window. */
  #secondsUntil(bucket: number, t: number): number {
    const ms = (bucket + this.buckets) * this.#bucketMs - t
    return Math.max(1, Math.ceil(ms / 1000))
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
