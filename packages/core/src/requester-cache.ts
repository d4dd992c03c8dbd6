// What a limiter keeps per requester between decisions: the settled counts still in its window
// (so that a decision in steady state reads almost nothing), its remembered denial, and the
// store's cell for its key. Entries are held least recently seen first, up to a capacity;
// requesters idle for a whole window are dropped as others arrive.

import type { Store, StoreCell } from './store.js'

/**
 * Other processes' resets and refunds reach decisions within this: a denial is decided only on
 * cached counts read at most this long before (older ones are read again first), and is
 * remembered at most this long after those counts were read.
 */
export const RECHECK_MS = 5000
/**
 * Milliseconds a denied requester's request waits for the decision ahead of it (see
 * {@link DeniedQueue}) before going to the store itself: a store that never answers holds
 * nobody for long.
 */
const AHEAD_WAIT_MS = 1000
/** Idle entries examined for removal per new requester. */
const SWEEP_PER_INSERT = 2
/** An entry moves to the young end of the cache at most this often. */
const TOUCH_EVERY_SECONDS = 1
/**
 * Cached settled counts are read again from the store after this, so that `remaining` on
 * admitted decisions shows a reset or refund made elsewhere (decisions never wait for it: only
 * denials can be wrong, and those are bounded by the limiter's recheck). Long, because a read of
 * the whole window costs up to 119 counters a requester.
 */
const REREAD_MS = 600_000
/** Units dropped from the front of a list before it is copied smaller. */
const COPY_AFTER_DROPPED = 16

/**
 * A requester's settled units still in the window, oldest first: a unit is a fine bucket
 * (`from === to`) or a coarse group, with its count (never 0). Held flat, three numbers a unit
 * (`from, to, count`), because a packed array of small integers is the cheapest thing a
 * requester can hold; read it through `unitFrom`, `unitTo` and `unitCount`. Replaced, never
 * changed in place, so that a decision in flight keeps what it counted.
 */
export type Units = readonly number[]
/** Numbers per unit in {@link Units}. */
export const UNIT = 3
export const NO_UNITS: Units = []

export function unitFrom(units: Units, at: number): number {
  return units[at] as number
}
export function unitTo(units: Units, at: number): number {
  return units[at + 1] as number
}
export function unitCount(units: Units, at: number): number {
  return units[at + 2] as number
}

/** What a limiter knows about one requester (and the store's cell for its key). */
export interface Entry extends StoreCell {
  /** The requester's key in the store (prefix + id), built once. */
  readonly key: string
  /** The store's epoch for this key when the cached values were read. */
  epoch: number | undefined
  /** Settled units in the window, from index `first` on. */
  units: Units
  /** Index of the first unit of `units` still in the window. */
  first: number
  /** Sum of the counts of the units from `first` on. */
  sum: number
  /** Every settled bucket up to this one that is in the window is in `units`. */
  settledThrough: number
  /** The oldest bucket of the window `units` was last trimmed to. */
  oldest: number
  /** Bumped by every change of the cached units; a reply to an older version is not cached. */
  version: number
  // Times are whole seconds since the epoch, not milliseconds: small whole numbers are held in
  // the object itself, where a millisecond time takes a boxed number of its own (16 bytes each).
  // Each is rounded the safe way.
  /** The requester's denials: absent until it is first denied (most never are). */
  denial: Denial | undefined
  /**
   * Decisions and refunds sent to the store for this requester, and those answered (or
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
export interface Denial {
  /** Until when requests are denied from memory (0: none); a bucket's end, so exact. */
  until: number
  /** The limit the remembered denial was decided under; only that limit reuses it. */
  limit: number
  /** After when a remembered denial is checked against the store again (rounded down). */
  recheckAt: number
  /**
   * Whether the last decision answered for this requester was a denial (and nothing was
   * refunded since): while it is, one decision at a time goes to the store, and those that
   * come meanwhile wait for it.
   */
  denying: boolean
}

/** The requesters one limiter keeps, least recently seen first. */
export class RequesterCache {
  readonly #entries = new Map<string, Entry>()

  constructor(
    /** Requesters kept at most. */
    readonly capacity: number,
    readonly store: Store,
    readonly prefix: string,
    /** The window, milliseconds. */
    readonly windowMs: number,
    readonly graceMs: number,
  ) {}

  get size(): number {
    return this.#entries.size
  }

  get(id: string): Entry | undefined {
    return this.#entries.get(id)
  }

  delete(id: string): void {
    this.#entries.delete(id)
  }

  /**
   * The entry of `id` brought up to `nowMs`, whose window starts at bucket `oldest` and is
   * settled through `settledThrough`; or a new one.
   */
  at(id: string, nowMs: number, oldest: number, settledThrough: number): Entry {
    const entries = this.#entries
    const second = Math.floor(nowMs / 1000)
    let entry = entries.get(id)
    const epoch = this.store.epochOf?.(entry?.key ?? this.prefix + id)
    if (entry !== undefined) {
      if (
        entry.epoch !== epoch ||
        oldest < entry.oldest ||
        settledThrough < entry.settledThrough ||
        (entry.denial?.until ?? 0) * 1000 - nowMs > this.windowMs
      ) {
        // The store changed under us, or the clock went back: start again.
        entries.delete(id)
        entry = undefined
      } else if (second - entry.seen >= TOUCH_EVERY_SECONDS) {
        // Move to the young end, so that eviction drops the least recently seen first.
        entries.delete(id)
        entries.set(id, entry)
      }
    }
    if (entry === undefined) {
      entry = {
        key: this.prefix + id,
        epoch,
        units: NO_UNITS,
        first: 0,
        sum: 0,
        settledThrough: oldest - 1,
        oldest,
        version: 0,
        denial: undefined,
        held: undefined,
        started: 0,
        answered: 0,
        readAt: second,
        seen: second,
      }
      this.#sweep(nowMs)
      entries.set(id, entry)
    }
    entry.seen = second
    if (nowMs - entry.readAt * 1000 >= REREAD_MS) {
      // Settled counts may have fallen since (a reset or refund in another process).
      forgetUnits(entry, nowMs)
    }
    if (oldest > entry.oldest) {
      dropLeft(entry, oldest)
    }
    return entry
  }

  /** Drops requesters idle for a whole window, and the oldest when the cache is full. */
  #sweep(nowMs: number): void {
    const entries = this.#entries
    // Seen before this second: idle for longer than the window and its grace.
    const idle = Math.floor((nowMs - this.windowMs - this.graceMs) / 1000)
    let examined = 0
    for (const [id, entry] of entries) {
      if (entries.size >= this.capacity || (examined < SWEEP_PER_INSERT && entry.seen < idle)) {
        entries.delete(id)
        examined++
      } else {
        break
      }
    }
  }
}

/** Drops the units that have left a window now starting at bucket `oldest`. */
function dropLeft(entry: Entry, oldest: number): void {
  const units = entry.units
  let first = entry.first
  while (first < units.length && unitTo(units, first) < oldest) {
    entry.sum -= unitCount(units, first)
    first += UNIT
  }
  if (first !== entry.first) {
    entry.version++
    if (first === units.length) {
      entry.units = NO_UNITS
      first = 0
    } else if (first >= COPY_AFTER_DROPPED * UNIT && first * 2 >= units.length) {
      entry.units = units.slice(first)
      first = 0
    }
    entry.first = first
  }
  entry.oldest = oldest
}

/** Drops the cached units of an entry: the next decision reads its whole window again. */
export function forgetUnits(entry: Entry, nowMs: number): void {
  entry.units = NO_UNITS
  entry.first = 0
  entry.sum = 0
  entry.settledThrough = entry.oldest - 1
  entry.readAt = Math.floor(nowMs / 1000)
  entry.version++
}

/**
 * A refunded request leaves the cached units too, when its bucket has settled (in a fine unit
 * or a coarse group's). The version changes either way, so that a reply read before the
 * store's decrement is not cached.
 */
export function uncount(entry: Entry, bucket: number): void {
  entry.version++
  const units = entry.units
  for (let at = entry.first; at < units.length; at += UNIT) {
    if (unitFrom(units, at) <= bucket && bucket <= unitTo(units, at)) {
      const kept = units.slice(entry.first)
      const inKept = at - entry.first
      const count = unitCount(units, at)
      if (count > 1) {
        kept[inKept + 2] = count - 1
      } else {
        kept.splice(inKept, UNIT)
      }
      entry.units = kept.length === 0 ? NO_UNITS : kept
      entry.first = 0
      entry.sum--
      return
    }
  }
}

/**
 * Seconds until a request under `limit` at `nowMs` passes, when the requester's remembered
 * denial answers it; else 0. A denial is remembered under its limit: a raised limit must not be
 * denied from memory, and a lowered one has a later retry time. Unless `peek`, a denial not
 * reused is forgotten (what this decision admits makes it wrong for the old limit too), and
 * one due for a check is checked on a fresh read (a reset elsewhere may have ended it).
 */
export function rememberedWait(entry: Entry, nowMs: number, limit: number, peek: boolean): number {
  const denial = entry.denial
  if (denial === undefined || denial.until * 1000 <= nowMs) {
    return 0
  }
  if (denial.limit === limit && nowMs < denial.recheckAt * 1000) {
    return Math.max(1, Math.ceil((denial.until * 1000 - nowMs) / 1000))
  }
  if (!peek) {
    if (nowMs >= denial.recheckAt * 1000) {
      forgetUnits(entry, nowMs)
    }
    denial.until = 0
  }
  return 0
}

/**
 * Marks a requester as being denied and, when `alone` (no other decision or refund overlapped
 * this one: see Entry.started), remembers the denial under `limit` until second `until`. The
 * counts it was decided on were read at second `readAt`.
 */
export function rememberDenial(
  entry: Entry,
  alone: boolean,
  until: number,
  limit: number,
  readAt: number,
): void {
  const denial = (entry.denial ??= { until: 0, limit: 0, recheckAt: 0, denying: true })
  denial.denying = true
  if (alone) {
    denial.until = until
    denial.limit = limit
    denial.recheckAt = readAt + RECHECK_MS / 1000
  }
}

/** A denied requester's decision at the store, which its next requests wait for. */
interface Ahead {
  /** The limit it is decided under: only requests under the same limit wait for it. */
  readonly limit: number
  /** Settles when it is answered (either way), or after AHEAD_WAIT_MS. */
  readonly done: Promise<void>
}

/**
 * For each requester being denied, the decision it has at the store. A client hammering while
 * blocked sends many requests at once; sent together, each would count the others' increments
 * before their rollback, so no denial would be remembered and every request would cost a full
 * decision. Queued behind one another, the next one is alone, its denial is remembered, and the
 * rest are denied from memory.
 */
export class DeniedQueue {
  readonly #ahead = new Map<Entry, Ahead>()

  /**
   * What a request under `limit` waits for: a decision whose denial can answer it from memory
   * (sent alone, so it is remembered when denied, and under the same limit); else undefined.
   */
  waitFor(entry: Entry, limit: number): Promise<void> | undefined {
    const ahead = this.#ahead.get(entry)
    return ahead !== undefined && ahead.limit === limit ? ahead.done : undefined
  }

  /** Makes `sent` the decision that `entry`'s next requests under `limit` wait for. */
  add(entry: Entry, limit: number, sent: Promise<unknown>): void {
    let timer: ReturnType<typeof setTimeout> | undefined
    const ahead: Ahead = {
      limit,
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
}
