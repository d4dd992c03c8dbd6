import { describe, expect, it } from 'vitest'
import { findLeave } from './plan.js'
import { BucketWindow, coarseSlot, emptyReads } from './window.js'

describe('BucketWindow', () => {
  const hour = new BucketWindow(3600, 1, 2000)

  it('keeps coarse groups of about sqrt(n) buckets above 64 buckets, none below', () => {
    expect(hour.buckets).toBe(3600)
    expect(hour.groupSize).toBe(60)
    expect(hour.incrementsPerRequest).toBe(2)
    expect(new BucketWindow(60, 1, 2000).groupSize).toBe(0)
    // window + a group + 5 s margin + the grace
    expect(hour.ttlSeconds).toBe(3600 + 60 + 5 + 2)
  })

  it('settles a bucket once its grace has passed, rounded down to a whole group', () => {
    const now = 1_000_000 * 1000 + 500
    const bucket = hour.bucketAt(now)
    expect(bucket).toBe(1_000_000)
    // 1,000,000 - 2 s grace - 1 = 999,997, rounded down to a group end (multiple of 60, minus 1)
    expect(hour.settledThrough(now, bucket)).toBe(999_959)
    const minute = new BucketWindow(60, 1, 2000)
    expect(minute.settledThrough(now, bucket)).toBe(999_997)
  })

  it('covers a run of buckets with whole groups where aligned and fine buckets elsewhere', () => {
    const reads = emptyReads()
    hour.cover(reads, 58, 181)
    expect(reads.slots).toEqual([58, 59, coarseSlot(1), coarseSlot(2), 180, 181])
    expect(reads.from).toEqual([58, 59, 60, 120, 180, 181])
    expect(reads.to).toEqual([58, 59, 119, 179, 180, 181])
  })

  it('counts a request in its bucket and its group, and rolls both back', () => {
    expect(hour.incrementsFor(125, 1)).toEqual([
      { slot: 125, amount: 1 },
      { slot: coarseSlot(2), amount: 1 },
    ])
    expect(hour.incrementsFor(125, -1).map((i) => i.amount)).toEqual([-1, -1])
    expect(hour.unitStart(125)).toBe(120)
    expect(hour.unitEnd(125)).toBe(179)
  })

  it('lists for removal every counter within the grace of either end of the window', () => {
    const minute = new BucketWindow(60, 1, 2000)
    const slots = minute.slotsAround(100_000)
    expect(slots[0]).toBe(100 - 59 - 2)
    expect(slots.at(-1)).toBe(102)
  })

  it('gives whole seconds until a bucket leaves the window, at least 1', () => {
    expect(hour.secondsUntilLeaves(10, 10_000)).toBe(3600)
    expect(hour.secondsUntilLeaves(10, 3_609_999)).toBe(1)
    expect(hour.secondsUntilLeaves(10, 3_700_000)).toBe(1)
    expect(hour.secondLeaving(10)).toBe(3610)
  })
})

describe('findLeave', () => {
  it('finds the fine bucket whose leaving frees one more request', () => {
    const counted = { from: [3, 5, 9], to: [3, 5, 9], count: [2, 1, 4] }
    expect(findLeave(counted, 1, 0, 10).leaveAfter([], 0)).toBe(3)
    expect(findLeave(counted, 3, 0, 10).leaveAfter([], 0)).toBe(5)
    expect(findLeave(counted, 4, 0, 10).reads).toEqual([])
    expect(findLeave(counted, 4, 0, 10).leaveAfter([], 0)).toBe(9)
  })

  it('reads a coarse group in detail, within the window, when the answer lies inside it', () => {
    const counted = { from: [1, 60], to: [1, 119], count: [1, 5] }
    const leave = findLeave(counted, 3, 100, 130)
    expect(leave.reads).toEqual(Array.from({ length: 20 }, (_, i) => 100 + i))
    const values = Array.from({ length: 20 }, () => 0)
    values[7] = 1
    values[12] = 3
    // after two leading values (a reply's rollback), the detail: 1 + 1 at 107, 1 + 1 + 3 at 112
    expect(leave.leaveAfter([0, 0, ...values], 2)).toBe(112)
  })
})
