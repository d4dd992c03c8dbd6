// The arithmetic of a bucketed window: which bucket a time falls in, which buckets the window
// holds, which have settled, and which counters cover a run of buckets. Pure: no store, no cache.
//
// Time is cut into buckets of `bucketSeconds`, numbered from the epoch; a window is the last
// `buckets` of them. Above COARSE_ABOVE_BUCKETS, every request is also counted in a coarse
// counter for its group of `groupSize` buckets (about the square root of `buckets`), so that a
// run of whole groups is read as one counter each. docs/algorithm.md has the picture.

import type { SlotIncrement } from './store.js'

/** Buckets in a window above which coarse group counters are kept. */
const COARSE_ABOVE_BUCKETS = 64
/** Seconds a counter outlives the window, covering clock differences between processes. */
const TTL_MARGIN_SECONDS = 5

/** Slot of the coarse counter for group `group`; fine buckets use slots >= 0. */
export function coarseSlot(group: number): number {
  return -1 - group
}

/** Counters to read, each with the first and last bucket it covers. */
export interface ReadList {
  readonly slots: number[]
  readonly from: number[]
  readonly to: number[]
}

export function emptyReads(): ReadList {
  return { slots: [], from: [], to: [] }
}

/** The bucket arithmetic of one limiter. */
export class BucketWindow {
  /** Buckets per window. */
  readonly buckets: number
  /** Buckets per coarse group, or 0 when no coarse counters are kept. */
  readonly groupSize: number
  readonly bucketMs: number
  /** Time to live of every counter, in seconds. */
  readonly ttlSeconds: number
  /** Increments per counted request: the fine bucket's, then (with groups) the group's. */
  readonly incrementsPerRequest: number

  constructor(
    windowSeconds: number,
    readonly bucketSeconds: number,
    /** Milliseconds after a bucket's end during which another process may still count in it. */
    readonly graceMs: number,
  ) {
    this.buckets = windowSeconds / bucketSeconds
    this.groupSize = this.buckets > COARSE_ABOVE_BUCKETS ? Math.ceil(Math.sqrt(this.buckets)) : 0
    this.bucketMs = bucketSeconds * 1000
    this.incrementsPerRequest = this.groupSize === 0 ? 1 : 2
    // A counter is made by the first request in its group (or bucket) and read until the group's
    // last bucket leaves the window: a group longer than the window, then the margin and grace.
    this.ttlSeconds =
      windowSeconds +
      Math.max(this.groupSize, 1) * bucketSeconds +
      TTL_MARGIN_SECONDS +
      Math.ceil(graceMs / 1000)
  }

  /** The bucket time `nowMs` falls in. */
  bucketAt(nowMs: number): number {
    return Math.floor(nowMs / this.bucketMs)
  }

  /** The oldest bucket in the window ending with `bucket` (buckets before the epoch hold nothing). */
  oldestWith(bucket: number): number {
    return Math.max(bucket - this.buckets + 1, 0)
  }

  /** The unit counting `bucket` as a whole: its group, or the bucket itself without groups. */
  unitOf(bucket: number): number {
    return this.groupSize === 0 ? bucket : Math.floor(bucket / this.groupSize)
  }

  /** The first bucket of the unit holding `bucket` (its group's, or itself). */
  unitStart(bucket: number): number {
    return this.groupSize === 0 ? bucket : this.unitOf(bucket) * this.groupSize
  }

  /** The last bucket of the unit holding `bucket`. */
  unitEnd(bucket: number): number {
    return this.groupSize === 0 ? bucket : this.unitStart(bucket) + this.groupSize - 1
  }

  /** The counter whose value is the unit holding `bucket`: its coarse group's, or its own. */
  unitSlot(bucket: number): number {
    return this.groupSize === 0 ? bucket : coarseSlot(this.unitOf(bucket))
  }

  /**
   * The last bucket whose counters no process changes any more at `nowMs` (one still in its
   * grace may be counted in elsewhere), rounded down to the end of a whole group.
   */
  settledThrough(nowMs: number, bucket: number): number {
    const settled = Math.min(Math.floor((nowMs - this.graceMs) / this.bucketMs) - 1, bucket - 1)
    const size = this.groupSize
    return size === 0 ? settled : Math.floor((settled + 1) / size) * size - 1
  }

  /** The increments of one request counted in `bucket` (or, with -1, of its rollback). */
  incrementsFor(bucket: number, amount: 1 | -1): SlotIncrement[] {
    return this.groupSize === 0
      ? [{ slot: bucket, amount }]
      : [
          { slot: bucket, amount },
          { slot: coarseSlot(this.unitOf(bucket)), amount },
        ]
  }

  /** Adds to `reads` counters covering buckets `from` .. `to`: whole groups where aligned, else fine. */
  cover(reads: ReadList, from: number, to: number): void {
    const size = this.groupSize
    let bucket = from
    while (bucket <= to) {
      if (size !== 0 && bucket % size === 0 && bucket + size - 1 <= to) {
        reads.slots.push(coarseSlot(bucket / size))
        reads.from.push(bucket)
        reads.to.push(bucket + size - 1)
        bucket += size
      } else {
        reads.slots.push(bucket)
        reads.from.push(bucket)
        reads.to.push(bucket)
        bucket++
      }
    }
  }

  /**
   * Every counter that can be in the window of a process whose clock is within the grace of
   * `nowMs`: the fine buckets, then the coarse groups holding them.
   */
  slotsAround(nowMs: number): number[] {
    const skew = Math.ceil(this.graceMs / this.bucketMs)
    const bucket = this.bucketAt(nowMs)
    const from = Math.max(bucket - this.buckets + 1 - skew, 0)
    const to = bucket + skew
    const slots: number[] = []
    for (let fine = from; fine <= to; fine++) {
      slots.push(fine)
    }
    const size = this.groupSize
    if (size !== 0) {
      for (let group = Math.floor(from / size); group <= Math.floor(to / size); group++) {
        slots.push(coarseSlot(group))
      }
    }
    return slots
  }

  /** Whole seconds (at least 1) from `nowMs` until `bucket` has left the window. */
  secondsUntilLeaves(bucket: number, nowMs: number): number {
    const ms = (bucket + this.buckets) * this.bucketMs - nowMs
    return Math.max(1, Math.ceil(ms / 1000))
  }

  /** When (in whole seconds: a bucket's end is one) `bucket` has left the window. */
  secondLeaving(bucket: number): number {
    return (bucket + this.buckets) * this.bucketSeconds
  }
}
