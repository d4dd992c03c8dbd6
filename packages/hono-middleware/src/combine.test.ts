import type { Decision } from '@slidelimit/core'
import { describe, expect, it } from 'vitest'
import { combine } from './combine.js'

const decision = (over: Partial<Decision>): Decision => ({
  allowed: true,
  limit: 10,
  windowSeconds: 60,
  remaining: 5,
  retryAfterSeconds: 0,
  resetSeconds: 30,
  id: 'k',
  bucket: 7,
  ...over,
})

describe('combine', () => {
  it('binds the policy with the fewest requests left, the later reset on a tie', () => {
    const { denied, shown, bind } = combine(
      [
        decision({ remaining: 3, resetSeconds: 10 }),
        decision({ remaining: 3, resetSeconds: 20 }),
        decision({ remaining: 4 }),
      ],
      ['a', 'b', 'c'],
    )
    expect(denied).toBe(false)
    expect(shown.map((d) => d.policy)).toEqual(['a', 'b', 'c'])
    expect(bind.policy).toBe('b')
    expect(shown.every((d) => d.bucket === 7)).toBe(true)
  })

  it('denies when any policy denies, binding the longest wait, the others given back', () => {
    const { denied, shown, bind } = combine(
      [
        decision({ remaining: 0, limit: 1, retryAfterSeconds: 0 }),
        decision({ allowed: false, remaining: 0, retryAfterSeconds: 5, bucket: -1 }),
        decision({ allowed: false, remaining: 0, retryAfterSeconds: 9, bucket: -1 }),
      ],
      ['a', 'b', 'c'],
    )
    expect(denied).toBe(true)
    expect(bind.policy).toBe('c')
    // The admitted one is shown as given back: one more left (never above its limit), no bucket.
    expect(shown[0]).toMatchObject({
      allowed: true,
      remaining: 1,
      retryAfterSeconds: 0,
      bucket: -1,
    })
    expect(shown.every((d) => d.bucket === -1)).toBe(true)
  })
})
