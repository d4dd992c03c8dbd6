// Cached and uncached limiters against the reference model, with refunds, resets, peeks and
// per-request limits mixed into random request sequences.

import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { createLimiter } from './limiter.js'
import type { Decision } from './limiter.js'
import { MapStore, ReferenceModel, SyncMapStore } from './reference-model.test-helpers.js'

type Step =
  | { op: 'consume'; limit: number | undefined }
  | { op: 'peek'; limit: number | undefined }
  | { op: 'refund'; pick: number }
  | { op: 'reset' }

const step: fc.Arbitrary<Step> = fc.oneof(
  {
    weight: 8,
    arbitrary: fc.record({
      op: fc.constant('consume' as const),
      limit: fc.option(fc.integer({ min: 1, max: 6 }), { nil: undefined }),
    }),
  },
  {
    weight: 2,
    arbitrary: fc.record({
      op: fc.constant('peek' as const),
      limit: fc.option(fc.integer({ min: 1, max: 6 }), { nil: undefined }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('refund' as const), pick: fc.nat() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('reset' as const) }) },
)

/**
 * What every limiter must agree on: the wait of a denial is exact; that of an admitted request
 * that used the last of the quota may be rounded up to the end of a coarse group.
 */
function shape(d: Pick<Decision, 'allowed' | 'remaining' | 'retryAfterSeconds'>) {
  return d.allowed
    ? { allowed: true, remaining: d.remaining }
    : { allowed: false, remaining: d.remaining, retryAfterSeconds: d.retryAfterSeconds }
}

describe.each([
  ['a store answering with promises', MapStore],
  ['a synchronous store', SyncMapStore],
])('with %s', (_, Store) => {
  // 20 one-second buckets have no coarse groups; 300 of them (groups of 18) have.
  describe.each([
    [20, 1],
    [300, 1],
    [600, 2],
  ])('a %i s window of %i s buckets', (windowSeconds, bucketSeconds) => {
    const windowMs = windowSeconds * 1000
    const scenario = fc.record({
      limit: fc.integer({ min: 1, max: 5 }),
      steps: fc.array(
        fc.record({
          step,
          id: fc.constantFrom('a', 'b'),
          gap: fc.oneof(
            { weight: 5, arbitrary: fc.integer({ min: 0, max: 1500 }) },
            { weight: 3, arbitrary: fc.integer({ min: 0, max: 8000 }) },
            { weight: 2, arbitrary: fc.integer({ min: 0, max: Math.floor(windowMs / 3) }) },
            { weight: 1, arbitrary: fc.integer({ min: 0, max: windowMs * 2 }) },
          ),
        }),
        { minLength: 1, maxLength: 100 },
      ),
    })

    it('cached and uncached limiters decide as the reference model does', async () => {
      await fc.assert(
        fc.asyncProperty(scenario, async ({ limit, steps }) => {
          let t = 1_700_000_000_000
          const now = (): number => t
          const options = { now, limit, windowSeconds, bucketSeconds }
          const cached = createLimiter({ ...options, store: new Store(now) })
          const uncached = createLimiter({ ...options, store: new Store(now), cacheSize: 0 })
          const models = new Map<string, ReferenceModel>()
          /** Admitted, not yet refunded decisions per id, with their times. */
          const admitted = new Map<string, { t: number; pair: [Decision, Decision] }[]>()
          for (const [i, { step: s, id, gap }] of steps.entries()) {
            t += gap
            let model = models.get(id)
            if (model === undefined) {
              model = new ReferenceModel(limit, windowSeconds, bucketSeconds)
              models.set(id, model)
            }
            const where = `step ${i} (${s.op} ${id} at +${t % 1_000_000})`
            if (s.op === 'consume') {
              const opts = s.limit === undefined ? undefined : { limit: s.limit }
              const expected = model.decide(t, s.limit)
              const one = await cached.consume(id, opts)
              const two = await uncached.consume(id, opts)
              expect(shape(one), where).toEqual(shape(expected))
              expect(shape(two), where).toEqual(shape(expected))
              expect(one.limit).toBe(s.limit ?? limit)
              if (one.allowed) {
                const list = admitted.get(id) ?? []
                list.push({ t, pair: [one, two] })
                admitted.set(id, list)
              }
            } else if (s.op === 'peek') {
              const opts = s.limit === undefined ? undefined : { limit: s.limit }
              const expected = model.peek(t, s.limit)
              expect(shape(await cached.peek(id, opts)), where).toEqual(shape(expected))
              expect(shape(await uncached.peek(id, opts)), where).toEqual(shape(expected))
            } else if (s.op === 'refund') {
              const list = admitted.get(id) ?? []
              const [taken] = list.splice(s.pick % Math.max(list.length, 1), 1)
              if (taken !== undefined) {
                await cached.refund(taken.pair[0])
                await uncached.refund(taken.pair[1])
                model.admitted.splice(model.admitted.indexOf(taken.t), 1)
              }
            } else {
              await cached.resetKey(id)
              await uncached.resetKey(id)
              model.admitted.length = 0
              admitted.delete(id)
            }
          }
        }),
        { numRuns: Number(process.env.PROPERTY_RUNS ?? 150) },
      )
    })

    it('a cached and an uncached limiter on one store decide as one reference model', async () => {
      // Refunds and resets go through the cached limiter, whichever made the decision: its own
      // changes reach its cache at once (another process's within the documented 5 s). Each
      // requester has one limit (a tier) for decisions: another process admitting under a
      // higher limit shortens the wait of a denial remembered under a lower one (the denial
      // stays right; its wait is checked again within 5 s). Peeks take any limit.
      await fc.assert(
        fc.asyncProperty(
          scenario,
          fc.array(fc.boolean(), { minLength: 100, maxLength: 100 }),
          fc.integer({ min: 1, max: 6 }),
          async ({ limit, steps }, which, tier) => {
            let t = 1_700_000_000_000
            const now = (): number => t
            const store = new Store(now)
            const options = { now, limit, windowSeconds, bucketSeconds, store }
            const cached = createLimiter(options)
            const uncached = createLimiter({ ...options, cacheSize: 0 })
            const models = new Map<string, ReferenceModel>()
            const admitted = new Map<string, { t: number; decision: Decision }[]>()
            for (const [i, { step: s, id, gap }] of steps.entries()) {
              t += gap
              let model = models.get(id)
              if (model === undefined) {
                model = new ReferenceModel(limit, windowSeconds, bucketSeconds)
                models.set(id, model)
              }
              const limiter = which[i] === true ? cached : uncached
              const where = `step ${i} (${s.op} ${id} at +${t % 1_000_000}, cached: ${String(which[i])})`
              if (s.op === 'consume') {
                const own = id === 'b' ? tier : undefined
                const expected = model.decide(t, own)
                const decision = await limiter.consume(id, own === undefined ? {} : { limit: own })
                expect(shape(decision), where).toEqual(shape(expected))
                if (decision.allowed) {
                  const list = admitted.get(id) ?? []
                  list.push({ t, decision })
                  admitted.set(id, list)
                }
              } else if (s.op === 'peek') {
                const opts = s.limit === undefined ? undefined : { limit: s.limit }
                expect(shape(await limiter.peek(id, opts)), where).toEqual(
                  shape(model.peek(t, s.limit)),
                )
              } else if (s.op === 'refund') {
                const list = admitted.get(id) ?? []
                const [taken] = list.splice(s.pick % Math.max(list.length, 1), 1)
                if (taken !== undefined) {
                  await cached.refund(taken.decision)
                  model.admitted.splice(model.admitted.indexOf(taken.t), 1)
                }
              } else {
                await cached.resetKey(id)
                model.admitted.length = 0
                admitted.delete(id)
              }
            }
          },
        ),
        { numRuns: Number(process.env.PROPERTY_RUNS ?? 150) },
      )
    })
  })
})
