import fc from 'fast-check'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { ConfigError, StoreError } from './errors.js'
import { createLimiter } from './limiter.js'
import type { Decision } from './limiter.js'
import type { Store } from './store.js'
import {
  CountingStore,
  MapStore,
  ReferenceModel,
  SyncMapStore,
} from './reference-model.test-helpers.js'

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
      id: '203.0.113.7',
      bucket: -1,
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

describe('SlidingWindowLimiter store traffic (1 h window, 1 s buckets)', () => {
  function counted(options: { limit?: number; graceMs?: number; cacheSize?: number } = {}) {
    let t = T0 + 7_000
    const now = (): number => t
    const store = new CountingStore(new MapStore(now))
    const limiter = createLimiter({ store, now, ...options })
    return {
      store,
      limiter,
      advance: (ms: number) => {
        t += ms
      },
    }
  }

  it("reads a new requester's whole window in one round trip of at most 119 reads", async () => {
    const { limiter, store } = counted()
    await limiter.consume('a')
    expect(store.calls).toEqual([{ increments: 2, reads: expect.any(Number) as number }])
    expect(store.calls[0]?.reads).toBeLessThanOrEqual(119)
  })

  it('in steady state sends one round trip of at most 3 operations per request, and reads the window again every 10 minutes', async () => {
    const { limiter, store, advance } = counted({ limit: 1_000_000 })
    await limiter.consume('a') // the first, cold read
    const perDecision: number[] = []
    // Two requests a second for 50 minutes: the window's old edge stays empty.
    for (let i = 0; i < 6000; i++) {
      advance(500)
      const before = store.calls.length
      await limiter.consume('a')
      const { calls, ops } = store.opsSince(before)
      expect(calls).toBe(1)
      perDecision.push(ops)
    }
    // At most: both increments and one coarse group read (the previous group, still changing in
    // the first seconds of a group, or once it settles); but every 10 minutes the cached counts
    // are read again (a reset or refund elsewhere may have lowered them).
    const rereads = perDecision.filter((ops) => ops > 3)
    expect(rereads.length).toBe(Math.floor((6000 * 500) / 600_000))
    expect(Math.max(...rereads)).toBeLessThanOrEqual(2 + 119)
    expect(Math.max(...perDecision.filter((ops) => ops <= 3))).toBe(3)
    // Most decisions only increment: the current fine bucket and its coarse group.
    const onlyIncrements = perDecision.filter((ops) => ops === 2).length
    expect(onlyIncrements / perDecision.length).toBeGreaterThan(0.9)
  })

  it('reads each coarse group reaching the old edge in detail once, not per request', async () => {
    const { limiter, store, advance } = counted({ limit: 1_000_000 })
    for (let i = 0; i < 3600 * 2 + 600; i++) {
      advance(500)
      await limiter.consume('a')
    }
    // Now in the second hour: every request's window has traffic at its old edge.
    const before = store.calls.length
    for (let i = 0; i < 1200; i++) {
      advance(500)
      await limiter.consume('a')
    }
    const rows = store.calls.slice(before)
    // Besides the whole window read again every 10 minutes (at most once in 600 s)...
    const rereads = rows.filter((r) => r.reads > 61)
    expect(rereads.length).toBeLessThanOrEqual(1)
    const big = rows.filter((r) => r.increments + r.reads > 4 && r.reads <= 61)
    // ...600 s cross 10 one-minute groups; each is read in detail (at most 60 reads) once.
    expect(big.length).toBeLessThanOrEqual(11)
    expect(store.opsSince(before).ops / rows.length).toBeLessThan(5)
  })

  it('denies a blocked requester from memory, checking the store again at most every 5 s', async () => {
    const { limiter, store, advance } = counted({ limit: 3 })
    await consumeMany(limiter, 'a', 3)
    const first = await limiter.consume('a')
    expect(first).toMatchObject({ allowed: false, retryAfterSeconds: 3600 })
    const before = store.calls.length
    for (let i = 0; i < 100; i++) {
      advance(1000)
      const denied = await limiter.consume('a')
      expect(denied).toMatchObject({
        allowed: false,
        retryAfterSeconds: 3600 - (i + 1),
      })
    }
    // One check (a decision and its rollback) every 5 s, none in between.
    expect(store.calls.length - before).toBe((100 / 5) * 2)
    advance(3_600_000 - 100 * 1000 - 1)
    expect(await limiter.consume('a')).toMatchObject({ allowed: false, retryAfterSeconds: 1 })
    advance(1)
    expect(await limiter.consume('a')).toMatchObject({ allowed: true })
  })

  it('with cacheSize 0 reads the whole window on every request', async () => {
    const { limiter, store, advance } = counted({ cacheSize: 0 })
    await limiter.consume('a')
    advance(120_000)
    await limiter.consume('a')
    expect(store.calls[1]?.reads).toBeGreaterThan(60)
    expect(limiter.cached).toBe(0)
  })

  it('keeps at most cacheSize requesters, and drops the idle ones as others arrive', async () => {
    const { limiter, advance } = counted({ cacheSize: 50 })
    for (let i = 0; i < 200; i++) {
      await limiter.consume(`client-${i}`)
    }
    expect(limiter.cached).toBe(50)
    advance(3_700_000)
    for (let i = 0; i < 30; i++) {
      await limiter.consume(`late-${i}`)
    }
    // Each newcomer drops up to two requesters idle for a whole window.
    expect(limiter.cached).toBe(30)
  })

  it('refunds an admitted request and forgets a remembered denial', async () => {
    const { limiter, store } = counted({ limit: 2 })
    const [first] = await consumeMany(limiter, 'a', 2)
    expect((await limiter.consume('a')).allowed).toBe(false)
    await limiter.refund(first as Decision)
    expect(await limiter.consume('a')).toMatchObject({ allowed: true, remaining: 0 })
    const denied = await limiter.consume('a')
    const calls = store.calls.length
    await limiter.refund(denied) // a denial: nothing to refund
    expect(store.calls.length).toBe(calls)
  })

  it('remembers denials after a refund with a synchronous store too', async () => {
    let t = T0 + 7_000
    const store = new SyncMapStore(() => t)
    const limiter = createLimiter({ store, now: () => t, limit: 2 })
    const [first] = await consumeMany(limiter, 'a', 2)
    await limiter.refund(first as Decision)
    expect(limiter.decide('a')).toMatchObject({ allowed: true, remaining: 0 })
    expect(limiter.decide('a')).toMatchObject({ allowed: false })
    const calls = store.calls
    for (let i = 0; i < 4; i++) {
      t += 1000
      expect(limiter.decide('a')).toMatchObject({ allowed: false })
    }
    // Denied from memory: no store call until the remembered denial is checked again (5 s).
    expect(store.calls).toBe(calls)
  })

  it('remembers no denial decided while a refund is still on its way to the store', async () => {
    let t = T0 + 7_500
    const inner = new SyncMapStore(() => t)
    // updateSync answers at once; update (which a refund uses) lands a moment later
    const store: Store = {
      name: 'deferred',
      updateSync: (key, increments, reads, ttl) => inner.updateSync(key, increments, reads, ttl),
      update: (key, increments, reads, ttl) =>
        new Promise((resolve) => {
          setTimeout(() => {
            resolve(inner.apply(key, increments, reads, ttl))
          }, 1)
        }),
      ping: () => Promise.resolve(),
      close: () => Promise.resolve(),
    }
    const limiter = createLimiter({ store, now: () => t, limit: 2, windowSeconds: 60 })
    const first = limiter.decide('a') as Decision
    expect(limiter.decide('a')).toMatchObject({ allowed: true, remaining: 0 })
    const refunded = limiter.refund(first) // not awaited, as the middleware's refund option does
    expect(limiter.decide('a')).toMatchObject({ allowed: false })
    await refunded
    t += 1000
    expect(limiter.decide('a')).toMatchObject({ allowed: true, remaining: 0 })
  })

  describe('a refund on its way to the store', () => {
    afterEach(() => {
      vi.useRealTimers()
    })

    /**
     * An async store on a Map: decisions land after 1 ms, and the next call made while
     * `refunding` is set (a refund: `limiter.refund` calls the store before it returns) hangs,
     * fails or lands after 50 ms.
     */
    function refundingStore(now: () => number, refunds: 'hang' | 'fail' | 'later') {
      const inner = new MapStore(now)
      let calls = 0
      let refunding = false
      const store: Store = {
        name: 'refunding',
        update: (key, increments, reads, ttl) => {
          calls++
          const refund = refunding
          refunding = false
          if (refund && refunds === 'hang') {
            return new Promise<number[]>(() => undefined)
          }
          if (refund && refunds === 'fail') {
            return Promise.reject(new Error('blip'))
          }
          return new Promise((resolve) => {
            setTimeout(
              () => {
                resolve(inner.apply(key, increments, reads, ttl))
              },
              refund ? 50 : 1,
            )
          })
        },
        ping: () => Promise.resolve(),
        close: () => Promise.resolve(),
      }
      const refund = (limiter: ReturnType<typeof createLimiter>, decision: Decision) => {
        refunding = true
        return limiter.refund(decision)
      }
      return { store, calls: () => calls, refund }
    }

    it('that never lands stops keeping denials from being remembered after 5 s', async () => {
      vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] })
      try {
        let t = T0 + 7_500
        const { store, calls, refund } = refundingStore(() => t, 'hang')
        const limiter = createLimiter({ store, now: () => t, limit: 2, windowSeconds: 60 })
        const decide = async (): Promise<Decision> => {
          const pending = limiter.consume('a')
          await vi.advanceTimersByTimeAsync(2)
          return pending
        }
        const first = await decide()
        await decide()
        void refund(limiter, first)
        // The store never took it back: still at the limit.
        expect(await decide()).toMatchObject({ allowed: false })
        const before = calls()
        await decide()
        // The refund is under way: each denial goes to the store (a decision and its rollback).
        expect(calls() - before).toBe(2)
        t += 5000
        await vi.advanceTimersByTimeAsync(5000)
        expect(await decide()).toMatchObject({ allowed: false })
        const after = calls()
        t += 1000
        expect(await decide()).toMatchObject({ allowed: false })
        expect(calls()).toBe(after)
      } finally {
        vi.useRealTimers()
      }
    })

    it('is known to decisions of a requester dropped from the cache before the refund', async () => {
      let t = T0 + 7_500
      const { store, refund } = refundingStore(() => t, 'later')
      const limiter = createLimiter({
        store,
        now: () => t,
        limit: 3,
        windowSeconds: 60,
        cacheSize: 1,
      })
      const admitted = await consumeMany(limiter, 'a', 3)
      await limiter.consume('b') // drops a
      const landed = refund(limiter, admitted[0] as Decision) // not awaited, as the middleware does
      expect(await limiter.consume('a')).toMatchObject({ allowed: false })
      await landed
      t += 1000
      expect(await limiter.consume('a')).toMatchObject({ allowed: true, remaining: 0 })
    })

    it('that fails leaves the cached counts showing the request', async () => {
      let t = T0 + 7_500
      const { store, refund } = refundingStore(() => t, 'fail')
      const limiter = createLimiter({ store, now: () => t, limit: 3, windowSeconds: 60 })
      const admitted = await consumeMany(limiter, 'a', 3)
      t += 3000 // the three have settled and are cached
      expect(await limiter.consume('a')).toMatchObject({ allowed: false })
      for (const decision of admitted) {
        await expect(refund(limiter, decision)).rejects.toThrow(StoreError)
      }
      t += 100
      expect(await limiter.consume('a')).toMatchObject({ allowed: false })
    })
  })

  it('turns whatever a store throws or rejects with into a StoreError, never a crash', async () => {
    const failures: [string, () => never][] = [
      [
        'a RangeError thrown at once',
        () => {
          throw new RangeError('The value of "value" is out of range.')
        },
      ],
      [
        'a TypeError from a store bug',
        () => {
          throw new TypeError("Cannot read properties of undefined (reading 'write')")
        },
      ],
    ]
    for (const [what, fail] of failures) {
      const throwing: Store = {
        name: 'broken',
        update: fail,
        ping: () => Promise.resolve(),
        close: () => Promise.resolve(),
      }
      const rejecting: Store = { ...throwing, update: () => Promise.reject(new Error(what)) }
      const rejectingText: Store = {
        ...throwing,
        // A store written in JavaScript can reject with anything.
        // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
        update: () => Promise.reject('plain text'),
      }
      const syncThrowing: Store = {
        ...throwing,
        update: () => Promise.resolve([]),
        updateSync: fail,
      }
      for (const store of [throwing, rejecting, rejectingText]) {
        const limiter = createLimiter({ store })
        let answer: unknown
        expect(() => (answer = limiter.decide('a'))).not.toThrow()
        const error: unknown = await (answer as Promise<unknown>).catch((e: unknown) => e)
        expect(error, what).toBeInstanceOf(StoreError)
        expect((error as StoreError).store).toBe('broken')
      }
      const limiter = createLimiter({ store: syncThrowing })
      expect(() => limiter.decide('a')).toThrow(StoreError)
      const error = await limiter.consume('a').catch((e: unknown) => e)
      expect((error as StoreError).cause).toBeInstanceOf(Error)
    }
  })

  it("drops cached values when the store's epoch changes (a failover)", async () => {
    let t = T0
    const inner = new MapStore(() => t)
    const store = Object.assign(new CountingStore(inner), { epochValue: 1 })
    store.epochOf = () => store.epochValue
    const limiter = createLimiter({ store, now: () => t, limit: 1000 })
    await limiter.consume('a')
    t += 300_000
    await limiter.consume('a')
    t += 1000
    await limiter.consume('a')
    expect(store.calls[2]?.reads).toBeLessThanOrEqual(1)
    store.epochValue = 2
    t += 1000
    await limiter.consume('a')
    expect(store.calls[3]?.reads).toBeGreaterThan(50)
  })
})

describe.each([
  ['a store answering with promises', MapStore],
  ['a synchronous store (as the memory store)', SyncMapStore],
])('with %s', (_kind, StoreKind) => {
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
            const store = new StoreKind(() => t)
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
                expect(actual.resetSeconds).toBeLessThanOrEqual(
                  expected.resetSeconds + groupSeconds,
                )
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
        { numRuns: Number(process.env.PROPERTY_RUNS ?? 600) },
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
            const store = new StoreKind(() => t)
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

  describe('several cached limiters sharing one store, as separate processes would', () => {
    // Each instance has its own clock, off by less than the grace; each keeps its own cache. The
    // same requests go to limiters without a cache (cacheSize 0), which read their whole window
    // every time: the cache must change nothing.
    const scenario = fc.record({
      limit: fc.integer({ min: 1, max: 8 }),
      bucketSeconds: fc.constantFrom(1, 2),
      buckets: fc.oneof(fc.integer({ min: 1, max: 64 }), fc.integer({ min: 65, max: 300 })),
      graceMs: fc.constantFrom(0, 1000, 2000, 5000),
      // Each clock within half a grace of the true time: any two are apart by less than the
      // grace, as the limiter requires (skews of up to 0.99 each put two clocks up to 1.98
      // graces apart, and a bucket one process had cached as settled was written by another).
      skews: fc.array(fc.double({ min: -0.49, max: 0.49, noNaN: true }), {
        minLength: 2,
        maxLength: 4,
      }),
      start: fc.integer({ min: 0, max: 10_000_000 }),
      steps: fc.array(
        fc.record({
          gap: fc.oneof(
            { weight: 10, arbitrary: fc.integer({ min: 0, max: 1500 }) },
            { weight: 2, arbitrary: fc.integer({ min: 0, max: 60_000 }) },
            { weight: 1, arbitrary: fc.integer({ min: 0, max: 1_200_000 }) },
          ),
          instance: fc.nat(),
          id: fc.constantFrom('a', 'b'),
        }),
        { minLength: 1, maxLength: 150 },
      ),
    })

    it('decides as uncached limiters do, with clocks apart by less than the grace', async () => {
      await fc.assert(
        fc.asyncProperty(
          scenario,
          async ({ limit, bucketSeconds, buckets, graceMs, skews, start, steps }) => {
            let t = T0 + start
            const windowSeconds = buckets * bucketSeconds
            const offsets = skews.map((s) => Math.trunc(s * graceMs))
            const world = (cacheSize: number) => {
              const store = new StoreKind(() => t)
              return offsets.map((offset) =>
                createLimiter({
                  store,
                  now: () => t + offset,
                  limit,
                  windowSeconds,
                  bucketSeconds,
                  graceMs,
                  cacheSize,
                }),
              )
            }
            const cached = world(100)
            const plain = world(0)
            for (const { gap, instance, id } of steps) {
              t += gap
              const i = instance % offsets.length
              const actual = await (cached[i] as (typeof cached)[number]).consume(id)
              const expected = await (plain[i] as (typeof plain)[number]).consume(id)
              expect(actual.allowed).toBe(expected.allowed)
              expect(actual.remaining).toBe(expected.remaining)
              if (graceMs === 0 || offsets.every((o) => o === offsets[0])) {
                // One clock: a remembered denial is exact.
                expect(actual).toEqual(expected)
              } else if (!actual.allowed) {
                // A process with a faster clock may admit before a remembered denial ends: the
                // remembered wait is then shorter than the store's, never longer.
                expect(actual.retryAfterSeconds).toBeLessThanOrEqual(expected.retryAfterSeconds)
              } else {
                expect(actual.resetSeconds).toBe(expected.resetSeconds)
              }
            }
          },
        ),
        { numRuns: Number(process.env.PROPERTY_RUNS ?? 600) },
      )
    })

    it('agrees with the reference model when the instances share one clock', async () => {
      await fc.assert(
        fc.asyncProperty(
          fc.integer({ min: 1, max: 6 }),
          fc.array(
            fc.record({
              gap: fc.oneof(
                fc.integer({ min: 0, max: 3000 }),
                fc.integer({ min: 0, max: 900_000 }),
              ),
              instance: fc.integer({ min: 0, max: 2 }),
            }),
            { minLength: 1, maxLength: 80 },
          ),
          async (limit, steps) => {
            let t = T0 + 4321
            const store = new StoreKind(() => t)
            const limiters = [0, 1, 2].map(() => createLimiter({ store, now: () => t, limit }))
            const model = new ReferenceModel(limit, 3600, 1)
            for (const { gap, instance } of steps) {
              t += gap
              const expected = model.decide(t)
              const actual = await (limiters[instance] as (typeof limiters)[number]).consume('x')
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

  describe('decisions in flight at once', () => {
    it('never admit more than the limit', async () => {
      const t = T0 + 100_000
      const limiter = createLimiter({ store: new StoreKind(() => t), now: () => t, limit: 50 })
      const decisions = await Promise.all(Array.from({ length: 60 }, () => limiter.consume('a')))
      expect(decisions.filter((d) => d.allowed)).toHaveLength(50)
    })

    it('leave the cache matching a full read of the store, across settling and the old edge', async () => {
      let t = T0 + 100_000
      const store = new StoreKind(() => t)
      const cached = createLimiter({ store, now: () => t, limit: 1_000_000 })
      const plain = createLimiter({ store, now: () => t, limit: 1_000_000, cacheSize: 0 })
      for (let step = 0; step < 400; step++) {
        t += (step * 7919) % 40_000
        await Promise.all(Array.from({ length: 5 }, () => cached.consume('a')))
        const viaCache = await cached.consume('a')
        const viaPlain = await plain.consume('a')
        expect(viaCache.remaining - 1).toBe(viaPlain.remaining)
      }
    })
  })
})

describe('odd and huge requester ids', () => {
  it('limits a huge id by its hash, and keeps no copy of it', async () => {
    let t = T0
    const store = new MapStore(() => t)
    const limiter = createLimiter({ store, now: () => t, limit: 2, windowSeconds: 60 })
    const huge = 'x'.repeat(100_000)
    const first = await limiter.consume(huge)
    expect(first.id).toMatch(/^sha256:[\w-]{43}$/)
    await limiter.consume(huge)
    expect((await limiter.consume(huge)).allowed).toBe(false)
    expect((await limiter.consume(`${huge}y`)).allowed).toBe(true)
    expect([...store.counters.keys()].every((k) => k.length < 200)).toBe(true)
    await limiter.refund(first)
    t += 1000
    expect((await limiter.consume(huge)).allowed).toBe(true)
  })

  it('takes empty, unicode and control-character ids as they are', async () => {
    const t = T0
    const limiter = createLimiter({ store: new MapStore(() => t), now: () => t, limit: 1 })
    for (const id of ['', '\u0000\r\n', 'ключ', '🔑', ' ']) {
      expect((await limiter.consume(id)).allowed).toBe(true)
      expect((await limiter.consume(id)).allowed).toBe(false)
    }
  })
})
