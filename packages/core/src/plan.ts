// One decision's plan (the increments and reads it sends, and where their values go), and the
// pure steps that read a store's reply: walking what was counted oldest first, caching what
// settled, and finding when enough leaves the window for one more request.

import {
  UNIT,
  NO_UNITS,
  type Entry,
  type Units,
  unitCount,
  unitFrom,
  unitTo,
} from './requester-cache.js'
import type { SlotIncrement } from './store.js'
import type { ReadList } from './window.js'

/** One request being decided, and what the requester's cache held when it was planned. */
export interface Request {
  readonly id: string
  readonly limit: number
  readonly nowMs: number
  /** The bucket the request is counted in when admitted. */
  readonly bucket: number
  /** The oldest bucket of its window. */
  readonly oldest: number
  readonly key: string
  readonly entry: Entry | undefined
  /** The entry's `readAt` (seconds) when the plan was made. */
  readonly readAt: number
  /** Sum of the cached units counted in the window. */
  readonly cachedSum: number
  /** The entry's `started` count for this decision (see Entry.started). */
  seq: number
  /** Whether no other decision for the entry was waiting for the store when this one left. */
  alone: boolean
}

/** A request's increments and reads, and where the values of the reads go. */
export interface Plan extends Request {
  readonly version: number
  /** The cached units as this plan counted them (lists are replaced, never changed). */
  readonly units: Units
  readonly first: number
  /**
   * The first reads (`edgeReads` of them) are the fine buckets of a coarse group straddling the
   * window's old edge, which replace the first cached unit.
   */
  readonly edgeReads: number
  /** The reads after those that are settled counters, to cache once the reply comes. */
  readonly newlySettled: number
  /** The bucket `settledThrough` becomes when those are cached. */
  readonly settledThrough: number
  readonly increments: SlotIncrement[]
  readonly reads: ReadList
}

/** Counted units oldest first, as columns: the buckets each covers and its count. */
export interface Counted {
  readonly from: number[]
  readonly to: number[]
  readonly count: number[]
}

/**
 * Visits what a plan counted, oldest first, until `visit` returns true: the fine buckets read at
 * the old edge, the cached units after the one they replace, then the reads after the edge ones
 * up to index `end`. Read values come from `values` (the store's reply, increments first).
 * Returns the last bucket of the unit `visit` stopped at, or -1 when it did not stop.
 */
export function walkCounted(
  plan: Plan,
  values: readonly number[],
  end: number,
  visit: (from: number, to: number, count: number) => boolean,
): number {
  const { reads, edgeReads, units } = plan
  const at = plan.increments.length
  for (let i = 0; i < edgeReads; i++) {
    if (visit(reads.from[i] as number, reads.to[i] as number, values[at + i] ?? 0)) {
      return reads.to[i] as number
    }
  }
  for (let u = edgeReads > 0 ? plan.first + UNIT : plan.first; u < units.length; u += UNIT) {
    if (visit(unitFrom(units, u), unitTo(units, u), unitCount(units, u))) {
      return unitTo(units, u)
    }
  }
  for (let i = edgeReads; i < end; i++) {
    if (visit(reads.from[i] as number, reads.to[i] as number, values[at + i] ?? 0)) {
      return reads.to[i] as number
    }
  }
  return -1
}

/** A visitor for {@link walkCounted} that stops at the first unit holding a request. */
export function holdsRequests(_from: number, _to: number, count: number): boolean {
  return count > 0
}

/** Everything a plan counted, oldest first. */
export function countedOf(plan: Plan, values: readonly number[]): Counted {
  const counted: Counted = { from: [], to: [], count: [] }
  walkCounted(plan, values, plan.reads.slots.length, (from, to, count) => {
    counted.from.push(from)
    counted.to.push(to)
    counted.count.push(count)
    return false
  })
  return counted
}

/** The cached units from index `first` on, oldest first. */
export function countedUnits(units: Units, first: number): Counted {
  const counted: Counted = { from: [], to: [], count: [] }
  for (let u = first; u < units.length; u += UNIT) {
    counted.from.push(unitFrom(units, u))
    counted.to.push(unitTo(units, u))
    counted.count.push(unitCount(units, u))
  }
  return counted
}

/**
 * Caches the settled values a reply brought, when nothing changed the entry since the plan was
 * made (same version): the edge's fine counters, the cached units, the newly settled reads.
 */
export function cacheReads(entry: Entry, plan: Plan, values: readonly number[]): void {
  const units: number[] = []
  let sum = 0
  walkCounted(plan, values, plan.edgeReads + plan.newlySettled, (from, to, count) => {
    if (count > 0) {
      units.push(from, to, count)
      sum += count
    }
    return false
  })
  entry.units = units.length === 0 ? NO_UNITS : units
  entry.first = 0
  entry.sum = sum
  entry.settledThrough = Math.max(entry.settledThrough, plan.settledThrough)
  entry.version++
}

/** When one more request passes: see {@link findLeave}. */
export interface Leave {
  /** Fine buckets to read when the answer lies inside a coarse group (else none). */
  readonly reads: number[]
  /** The bucket whose leaving frees the request, given the values of `reads` from index `at`. */
  leaveAfter(values: readonly number[], at: number): number
}

/**
 * The bucket whose leaving the window frees one more request: once `deficit` (at least 1) of
 * the counted requests have left. `oldest` and `bucket` bound the window. When that happens
 * inside a coarse group, its fine counters in the window must be read first.
 */
export function findLeave(
  counted: Counted,
  deficit: number,
  oldest: number,
  bucket: number,
): Leave {
  let cumulative = 0
  let leave = bucket
  let detail = -1
  for (let u = 0; u < counted.count.length; u++) {
    const count = counted.count[u] as number
    if (cumulative + count >= deficit) {
      if (counted.from[u] === counted.to[u]) {
        leave = counted.from[u] as number
      } else {
        detail = u
      }
      break
    }
    cumulative += count
  }
  if (detail < 0) {
    return { reads: [], leaveAfter: () => leave }
  }
  const detailFrom = Math.max(counted.from[detail] as number, oldest)
  const detailTo = Math.min(counted.to[detail] as number, bucket)
  const reads: number[] = []
  for (let fine = detailFrom; fine <= detailTo; fine++) {
    reads.push(fine)
  }
  return {
    reads,
    leaveAfter: (values, at) => {
      let left = cumulative
      for (let fine = detailFrom; fine <= detailTo; fine++) {
        left += values[at + fine - detailFrom] ?? 0
        if (left >= deficit) {
          return fine
        }
      }
      return detailTo
    },
  }
}
