import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ConfigError } from './errors.js'
import { createLimiter } from './limiter.js'
import type { Decision } from './limiter.js'
import { MapStore, ReferenceModel } from './reference-model.test-helpers.js'

const T0 = 1_700_000_000_000 // a bucket boundary for every bucket size used here

function setup(options: { limit?: number; windowSeconds?: number; bucketSeconds?: number } = {}) {
  let t = T0
  const now = (): number => t
  const store = new MapStore(now)
  const limiter = createLimiter({ store, now, ...options })
  return {
    store,
    limiter,
    at: (ms: number) => {
      t = T0 + ms
    },
  }
}

async function consumeMany(
  limiter: ReturnType<typeof createLimiter>,
  id: string,
  count: number,
): Promise<Decision[]> {
  const out: Decision[] = []
  for (let i = 0; i < count; i++) {
    out.push(await limiter.consume(id))
  }
  return out
}

describe('SlidingWindowLimiter', () => {
  it('admits 100 requests in an hour and denies the 101st with a 3600 s retry', async () => {
    const { limiter } = setup()
    const admitted = await consumeMany(limiter, '203.0.113.7', 100)
    expect(admitted.every((d) => d.allowed)).toBe(true)
    expect(admitted.map((d) => d.remaining).slice(0, 3)).toEqual([99, 98, 97])
    expect(admitted[99]).toMatchObject({ remaining: 0, retryAfterSeconds: 3600 })
    const denied = await limiter.consume('203.0.113.7')
    expect(denied).toEqual({
      allowed: false,
      limit: 100,
      windowSeconds: 3600,
      remaining: 0,
      retryAfterSeconds: 3600,
      resetSeconds: 3600,
    })
  })

  it('frees a request exactly when the oldest bucket leaves the window', async () => {
    const { limiter, at } = setup()
    await limiter.consume('a')
    at(10_000)
    await consumeMany(limiter, 'a', 99)
    at(20_500)
    expect(await limiter.consume('a')).toMatchObject({ allowed: false, retryAfterSeconds: 3580 })
    at(3_599_999)
    expect(await limiter.consume('a')).toMatchObject({ allowed: false, retryAfterSeconds: 1 })
    at(3_600_000)
    expect(await limiter.consume('a')).toMatchObject({ allowed: true, remaining: 0 })
    expect(await limiter.consume('a')).toMatchObject({ allowed: false, retryAfterSeconds: 10 })
  })

  it('does not extend a block when a blocked client keeps hammering', async () => {
    const { limiter, at } = setup({ limit: 3, windowSeconds: 60 })
    await consumeMany(limiter, 'a', 3)
    for (let s = 1; s < 60; s += 7) {
      at(s * 1000)
      expect(await limiter.consume('a')).toMatchObject({
        allowed: false,
        retryAfterSeconds: 60 - s,
      })
    }
    at(60_000)
    expect((await consumeMany(limiter, 'a', 3)).every((d) => d.allowed)).toBe(true)
  })

  it('keeps requesters apart', async () => {
    const { limiter } = setup({ limit: 2, windowSeconds: 10 })
    await consumeMany(limiter, 'a', 2)
    expect((await limiter.consume('a')).allowed).toBe(false)
    expect((await limiter.consume('b')).allowed).toBe(true)
  })

  it('rolls its own increment back when it denies', async () => {
    const { limiter, store } = setup({ limit: 1, windowSeconds: 3600 })
    await limiter.consume('a')
    await limiter.consume('a')
    await limiter.consume('a')
    const values = [...store.counters.values()].map((c) => c.value)
    expect(values).toEqual([1, 1])
  })

  it('makes one store round trip per admitted request and reads at most 119 counters', async () => {
    const { limiter, store, at } = setup()
    at(1_234_567)
    await limiter.consume('a')
    expect(store.calls).toBe(1)
    expect(store.incrementsSeen).toBe(2)
    expect(store.readsSeen).toBeLessThanOrEqual(119)
  })

  it('reads a coarse group in detail only when a denial needs it', async () => {
    const { limiter, store, at } = setup({ limit: 2 })
    await limiter.consume('a')
    at(600_000)
    await limiter.consume('a')
    at(1_200_000)
    const before = store.calls
    expect(await limiter.consume('a')).toMatchObject({ allowed: false, retryAfterSeconds: 2400 })
    expect(store.calls - before).toBe(2)
  })

  it('refuses bad options with a ConfigError naming the option and value', () => {
    const store = new MapStore(Date.now)
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ limit: 0 }, /Invalid option limit: got 0/],
      [{ limit: 1.5 }, /limit/],
      [{ windowSeconds: -1 }, /windowSeconds/],
      [{ windowSeconds: 10, bucketSeconds: 3 }, /bucketSeconds: got 3, expected a divisor/],
      [{ now: 5 }, /now/],
      [{ store: {} }, /store/],
    ]
    for (const [options, message] of bad) {
      expect(() => createLimiter({ store, ...options })).toThrow(ConfigError)
      expect(() => createLimiter({ store, ...options })).toThrow(message)
    }
  })
})

describe('SlidingWindowLimiter against the reference model', () => {
  const geometry = fc.record({
    limit: fc.integer({ min: 1, max: 12 }),
    bucketSeconds: fc.constantFrom(1, 2, 3, 5),
    buckets: fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 65, max: 400 })),
  })
  // Gaps between requests: bursts, steps of about a bucket, and long jumps across windows.
  const gaps = (windowMs: number, bucketMs: number) =>
    fc.array(
      fc.oneof(
        { weight: 5, arbitrary: fc.integer({ min: 0, max: 300 }) },
        { weight: 3, arbitrary: fc.integer({ min: 0, max: bucketMs * 3 }) },
        { weight: 2, arbitrary: fc.integer({ min: 0, max: Math.floor(windowMs / 3) }) },
        { weight: 1, arbitrary: fc.integer({ min: 0, max: windowMs * 2 }) },
      ),
      { minLength: 1, maxLength: 120 },
    )

  const scenario = geometry.chain((g) => {
    const windowSeconds = g.buckets * g.bucketSeconds
    return fc.record({
      ...Object.fromEntries(Object.entries(g).map(([k, v]) => [k, fc.constant(v)])),
      windowSeconds: fc.constant(windowSeconds),
      start: fc.integer({ min: 0, max: 10_000_000 }),
      gaps: gaps(windowSeconds * 1000, g.bucketSeconds * 1000),
      ids: fc.array(fc.constantFrom('a', 'b'), { minLength: 120, maxLength: 120 }),
    }) as fc.Arbitrary<{
      limit: number
      bucketSeconds: number
      windowSeconds: number
      start: number
      gaps: number[]
      ids: string[]
    }>
  })

  it('decides, counts down and sets retry times exactly as a list of timestamps would', async () => {
    await fc.assert(
      fc.asyncProperty(
        scenario,
        async ({ limit, bucketSeconds, windowSeconds, start, gaps, ids }) => {
          let t = T0 + start
          const store = new MapStore(() => t)
          const limiter = createLimiter({
            store,
            now: () => t,
            limit,
            windowSeconds,
            bucketSeconds,
          })
          const models = new Map<string, ReferenceModel>()
          const groupSeconds = Math.max(limiter.groupSize, 1) * bucketSeconds
          for (const [i, gap] of gaps.entries()) {
            t += gap
            const id = ids[i] ?? 'a'
            let model = models.get(id)
            if (model === undefined) {
              model = new ReferenceModel(limit, windowSeconds, bucketSeconds)
              models.set(id, model)
            }
            const expected = model.decide(t)
            const actual = await limiter.consume(id)
            expect(actual.allowed).toBe(expected.allowed)
            expect(actual.remaining).toBe(expected.remaining)
            if (expected.allowed) {
              // Admitted: the reset may be rounded up to the end of a coarse group.
              expect(actual.resetSeconds).toBeGreaterThanOrEqual(expected.resetSeconds)
              expect(actual.resetSeconds).toBeLessThanOrEqual(expected.resetSeconds + groupSeconds)
              if (expected.remaining > 0) {
                expect(actual.retryAfterSeconds).toBe(0)
              }
            } else {
              expect(actual.retryAfterSeconds).toBe(expected.retryAfterSeconds)
              expect(actual.resetSeconds).toBe(expected.resetSeconds)
            }
          }
        },
      ),
      { numRuns: 400 },
    )
  })

  it('agrees with the model for the default hour of one-second buckets', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.integer({ min: 1, max: 5 }),
        fc.array(
          fc.oneof(fc.integer({ min: 0, max: 2000 }), fc.integer({ min: 0, max: 1_500_000 })),
          { minLength: 1, maxLength: 40 },
        ),
        async (limit, gaps) => {
          let t = T0 + 123_456
          const store = new MapStore(() => t)
          const limiter = createLimiter({ store, now: () => t, limit })
          const model = new ReferenceModel(limit, 3600, 1)
          for (const gap of gaps) {
            t += gap
            const expected = model.decide(t)
            const actual = await limiter.consume('x')
            expect(actual.allowed).toBe(expected.allowed)
            expect(actual.remaining).toBe(expected.remaining)
            if (!expected.allowed) {
              expect(actual.retryAfterSeconds).toBe(expected.retryAfterSeconds)
            }
          }
        },
      ),
      { numRuns: 200 },
    )
  })
})
