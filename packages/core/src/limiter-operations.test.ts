// Refund, reset, peek and per-request limits, on cached and uncached limiters.

import { describe, expect, it } from 'vitest'
import { createLimiter } from './limiter.js'
import type { LimiterOptions } from './limiter.js'
import { MapStore, SyncMapStore } from './reference-model.test-helpers.js'

const T0 = 1_700_000_000_000

/** A limiter on a store of its own, cached or not, with a clock the test moves. */
function setup(
  Store: typeof MapStore,
  options: Omit<LimiterOptions, 'store'> & { cached?: boolean } = {},
) {
  let t = T0
  const now = (): number => t
  const store = new Store(now)
  const { cached = true, ...rest } = options
  const limiter = createLimiter({ store, now, ...rest, ...(cached ? {} : { cacheSize: 0 }) })
  return {
    store,
    limiter,
    at: (ms: number) => {
      t = T0 + ms
    },
  }
}

const STORES = [
  ['a store answering with promises', MapStore],
  ['a synchronous store', SyncMapStore],
] as const
// 60 one-second buckets have no coarse groups; an hour of them has.
const WINDOWS = [60, 3600] as const

describe.each(STORES)('refunds on %s', (_, Store) => {
  describe.each(WINDOWS)('a %i s window', (windowSeconds) => {
    it.each([true, false])(
      'admits a request freed by refunding a settled one (cached: %s)',
      async (cached) => {
        const { limiter, at } = setup(Store, { limit: 2, windowSeconds, cached })
        // B comes once A's bucket (and, in the hour, its coarse group of 60) has settled.
        const gap = windowSeconds > 64 ? 65_000 : 5000
        const a = await limiter.consume('client')
        at(gap)
        expect((await limiter.consume('client')).allowed).toBe(true)
        await limiter.refund(a)
        at(gap + 1000)
        expect(await limiter.consume('client')).toMatchObject({ allowed: true, remaining: 0 })
        expect(await limiter.consume('client')).toMatchObject({
          allowed: false,
          retryAfterSeconds: windowSeconds - 1, // B leaves first
        })
      },
    )
  })
})

describe.each(STORES)('a per-request limit on %s', (_, Store) => {
  it.each([true, false])(
    'decides each request under its own limit over the same counters (cached: %s)',
    async (cached) => {
      const { limiter, at } = setup(Store, { windowSeconds: 60, cached })
      expect(await limiter.consume('user', { limit: 2 })).toMatchObject({
        allowed: true,
        limit: 2,
        remaining: 1,
      })
      at(10_000)
      expect(await limiter.consume('user', { limit: 2 })).toMatchObject({ remaining: 0 })
      expect(await limiter.consume('user', { limit: 2 })).toMatchObject({
        allowed: false,
        limit: 2,
        retryAfterSeconds: 50,
      })
      // A raised limit is never denied from a denial remembered under the lower one.
      expect(await limiter.consume('user', { limit: 3 })).toMatchObject({
        allowed: true,
        limit: 3,
        remaining: 0,
      })
      expect(await limiter.consume('user')).toMatchObject({ allowed: true, limit: 100 })
      // A lowered limit denies, with the exact wait of the lower limit (3 of 4 must leave).
      expect(await limiter.consume('user', { limit: 2 })).toMatchObject({
        allowed: false,
        limit: 2,
        retryAfterSeconds: 60,
      })
      expect(await limiter.consume('user', { limit: 1 })).toMatchObject({
        allowed: false,
        limit: 1,
        retryAfterSeconds: 60,
      })
    },
  )

  it('refuses a per-request limit that is not a whole number of at least 1, naming limit', () => {
    const { limiter } = setup(Store)
    for (const limit of [0, -1, 1.5, Number.NaN, Infinity, '3'] as unknown[]) {
      expect(() => limiter.decide('user', { limit: limit as number })).toThrow(
        expect.objectContaining({ code: 'ERR_SLIDELIMIT_CONFIG', option: 'limit' }),
      )
    }
  })
})

describe.each(STORES)('resetKey on %s', (_, Store) => {
  describe.each(WINDOWS)('a %i s window', (windowSeconds) => {
    it.each([true, false])(
      'lets a blocked requester start again, and leaves others blocked (cached: %s)',
      async (cached) => {
        const { limiter, store, at } = setup(Store, { limit: 2, windowSeconds, cached })
        for (const id of ['blocked', 'other']) {
          await limiter.consume(id)
          at(windowSeconds > 64 ? 65_000 : 5000)
          await limiter.consume(id)
          expect((await limiter.consume(id)).allowed).toBe(false)
        }
        await limiter.resetKey('blocked')
        // Every counter of the key went: fine buckets and coarse groups.
        expect([...store.counters.keys()].filter((key) => key.includes('blocked'))).toEqual([])
        expect(await limiter.consume('blocked')).toMatchObject({ allowed: true, remaining: 1 })
        expect(await limiter.consume('blocked')).toMatchObject({ allowed: true, remaining: 0 })
        expect((await limiter.consume('blocked')).allowed).toBe(false)
        expect((await limiter.consume('other')).allowed).toBe(false)
      },
    )
  })

  it('resets a long id by its hash, as decisions hold it', async () => {
    const { limiter } = setup(Store, { limit: 1 })
    const id = 'token-'.repeat(100)
    await limiter.consume(id)
    expect((await limiter.consume(id)).allowed).toBe(false)
    await limiter.resetKey(id)
    expect((await limiter.consume(id)).allowed).toBe(true)
  })
})

it('refuses resetKey on a store without remove, saying so', async () => {
  const store = new MapStore(Date.now)
  const limiter = createLimiter({
    store: {
      name: 'old',
      update: store.update.bind(store),
      ping: () => Promise.resolve(),
      close: () => Promise.resolve(),
    },
  })
  await expect(limiter.resetKey('a')).rejects.toMatchObject({
    name: 'StoreError',
    code: 'ERR_SLIDELIMIT_STORE_UNSUPPORTED',
    message: expect.stringContaining('no remove operation') as unknown,
  })
})

describe.each(STORES)('peek on %s', (_, Store) => {
  describe.each(WINDOWS)('a %i s window', (windowSeconds) => {
    it.each([true, false])(
      'tells what the next request would be told, counting nothing (cached: %s)',
      async (cached) => {
        const { limiter, store, at } = setup(Store, { limit: 3, windowSeconds, cached })
        expect(await limiter.peek('client')).toMatchObject({
          allowed: true,
          remaining: 3,
          retryAfterSeconds: 0,
          bucket: -1,
        })
        // Requests at 0 s, at 70 s (after a coarse group of the hour settled) and at 71 s.
        const times = windowSeconds > 64 ? [0, 70_000, 71_000] : [0, 20_000, 21_000]
        for (const [i, ms] of times.entries()) {
          at(ms)
          await limiter.consume('client')
          const counters = JSON.stringify([...store.counters])
          const peeked = await limiter.peek('client')
          expect(JSON.stringify([...store.counters])).toBe(counters)
          expect(peeked).toMatchObject({ allowed: i < 2, remaining: 2 - i, limit: 3 })
        }
        // Denied: the first request leaves the window at windowSeconds.
        const last = times[2] as number
        const wait = windowSeconds - last / 1000
        expect(await limiter.peek('client')).toMatchObject({
          allowed: false,
          remaining: 0,
          retryAfterSeconds: wait,
          resetSeconds: wait,
        })
        expect(await limiter.consume('client')).toMatchObject({
          allowed: false,
          retryAfterSeconds: wait,
        })
        // Under a higher limit one more would pass.
        expect(await limiter.peek('client', { limit: 4 })).toMatchObject({
          allowed: true,
          remaining: 1,
        })
        // Under lower limits, more must leave; in the hour they are in the current coarse
        // group, whose fine counters are read to say when exactly.
        expect(await limiter.peek('client', { limit: 2 })).toMatchObject({
          allowed: false,
          retryAfterSeconds: windowSeconds - 1,
        })
        expect(await limiter.peek('client', { limit: 1 })).toMatchObject({
          allowed: false,
          retryAfterSeconds: windowSeconds,
        })
      },
    )
  })
})

describe.each(STORES)('two processes sharing %s', (_, Store) => {
  /** Two cached limiters (as two processes) on one store, with one clock. */
  function twoProcesses(windowSeconds: number) {
    let t = T0
    const now = (): number => t
    const store = new Store(now)
    const options = { store, now, limit: 2, windowSeconds }
    return {
      one: createLimiter(options),
      two: createLimiter(options),
      at: (ms: number) => {
        t = T0 + ms
      },
    }
  }

  describe.each(WINDOWS)('a %i s window', (windowSeconds) => {
    const gap = windowSeconds > 64 ? 65_000 : 5000

    it('a reset in one reaches the denials the other remembers within 5 s', async () => {
      const { one, two, at } = twoProcesses(windowSeconds)
      await two.consume('client')
      at(gap)
      await two.consume('client')
      expect((await two.consume('client')).allowed).toBe(false)
      at(gap + 1000)
      await one.resetKey('client')
      at(gap + 6000)
      expect(await two.consume('client')).toMatchObject({ allowed: true, remaining: 1 })
    })

    it.each([6000, 30_000])(
      'a refund of a settled request in one reaches the other within 5 s (its counts cached %i ms before)',
      async (cachedFor) => {
        const { one, two, at } = twoProcesses(windowSeconds)
        const a = await one.consume('client')
        at(gap)
        // The other caches A's settled count with this decision.
        expect(await two.consume('client')).toMatchObject({ allowed: true, remaining: 0 })
        await one.refund(a)
        at(gap + cachedFor)
        expect(await two.consume('client')).toMatchObject({ allowed: true, remaining: 0 })
        expect((await two.consume('client')).allowed).toBe(false)
      },
    )
  })

  it('a refund in one shows in the remaining count of the other within 10 minutes', async () => {
    const { one, two, at } = twoProcesses(3600)
    const limit = { limit: 10 }
    const a = await one.consume('client', limit)
    at(65_000)
    expect(await two.consume('client', limit)).toMatchObject({ remaining: 8 })
    await one.refund(a)
    at(665_000)
    expect(await two.consume('client', limit)).toMatchObject({ remaining: 8 })
  })
})

describe('decisions that overlap on a store answering with promises', () => {
  /** Decisions of a cached and an uncached limiter, each on its own MapStore. */
  function both() {
    return [true, false].map((cached) => setup(MapStore, { limit: 2, windowSeconds: 60, cached }))
  }

  it('does not remember a denial that a refund overtook while it waited for the store', async () => {
    const outcomes: string[][] = []
    for (const { limiter, at } of both()) {
      const first = await limiter.consume('k')
      at(1000)
      await limiter.consume('k')
      at(2000)
      // Denied (3 > 2), and while it waits for the store, the first request is taken back.
      const inFlight = limiter.consume('k')
      const refunded = limiter.refund(first)
      const denied = await inFlight
      await refunded
      expect(denied.allowed).toBe(false)
      // The window has room again: the next request is admitted, cached or not.
      outcomes.push([String((await limiter.consume('k')).allowed)])
    }
    expect(outcomes).toEqual([['true'], ['true']])
  })

  it('sends one decision at a time for a requester that is being denied, then denies from memory', async () => {
    for (const windowSeconds of [60, 3600]) {
      const { limiter, store, at } = setup(MapStore, { limit: 1, windowSeconds })
      await limiter.consume('k')
      const wave = async (ms: number): Promise<{ calls: number; waits: number[] }> => {
        at(ms)
        const before = store.calls
        const decisions = await Promise.all(Array.from({ length: 64 }, () => limiter.consume('k')))
        expect(decisions.every((d) => !d.allowed)).toBe(true)
        return {
          calls: store.calls - before,
          waits: [...new Set(decisions.map((d) => d.retryAfterSeconds))],
        }
      }
      // 64 at once from an admitted requester: each goes to the store (they count each other's
      // increments, so none is remembered).
      expect((await wave(10_000)).calls).toBeGreaterThanOrEqual(64)
      // Now known as denied: one goes to the store, alone, and the 63 others wait for it (four
      // calls: its counts were cached more than 5 s ago, so it takes its increment back and
      // decides again on a fresh read, then rolls back).
      const second = await wave(11_000)
      expect(second.calls).toBeLessThanOrEqual(4)
      expect(second.waits).toEqual([windowSeconds - 11])
      // Remembered: no store call at all.
      expect(await wave(12_000)).toEqual({ calls: 0, waits: [windowSeconds - 12] })
    }
  })

  /**
   * A requester denied at 1 s under limit 1 (remembered until 60 s), with the clock at 7 s:
   * past the 5 s recheck, so its next request goes to the store.
   */
  async function deniedAtSeven() {
    const made = setup(MapStore, { limit: 1, windowSeconds: 60 })
    await made.limiter.consume('k')
    made.at(1000)
    expect((await made.limiter.consume('k')).allowed).toBe(false)
    made.at(7000)
    return made
  }

  it('queues a denied requester only behind a decision under the same limit', async () => {
    const { limiter, store } = await deniedAtSeven()
    const before = store.calls
    const ahead = limiter.consume('k')
    const sameLimit = limiter.consume('k')
    const otherLimit = limiter.consume('k', { limit: 3 })
    // The one under another limit went at once; the one under the same limit waits.
    expect(store.calls - before).toBe(2)
    expect(await ahead).toMatchObject({ allowed: false })
    // Decided after the one under limit 3 was counted: both counted requests must leave.
    expect(await sameLimit).toMatchObject({ allowed: false, retryAfterSeconds: 60 })
    expect(await otherLimit).toMatchObject({ allowed: true, limit: 3 })
  })

  it('lets a denied requester’s requests go to the store when the decision ahead never answers', async () => {
    const { limiter, store } = await deniedAtSeven()
    const update = store.update.bind(store)
    let lost = true
    store.update = (...args) => {
      if (lost) {
        lost = false
        return new Promise(() => undefined) // a reply that never comes
      }
      return update(...args)
    }
    void limiter.consume('k')
    const started = performance.now()
    expect(await limiter.consume('k')).toMatchObject({ allowed: false })
    // Released after about a second (AHEAD_WAIT_MS), not held forever.
    expect(performance.now() - started).toBeLessThan(3000)
  })

  it('stops holding a denied requester back once a decision fails', async () => {
    const { limiter, store } = await deniedAtSeven()
    store.closed = true
    await expect(limiter.consume('k')).rejects.toThrow()
    store.closed = false
    const before = store.calls
    const decisions = Promise.all([limiter.consume('k'), limiter.consume('k')])
    // Both sent at once: the failure ended the requester's denied state.
    expect(store.calls - before).toBe(2)
    expect((await decisions).map((d) => d.allowed)).toEqual([false, false])
  })

  it('does not hold back an admitted requester: its decisions go to the store together', async () => {
    const { limiter, store } = setup(MapStore, { limit: 100, windowSeconds: 60 })
    const decisions = Promise.all(Array.from({ length: 10 }, () => limiter.consume('k')))
    // Sent at once, not one after another.
    expect(store.calls).toBe(10)
    expect((await decisions).every((d) => d.allowed)).toBe(true)
  })

  it('does not remember the inflated wait of denials that saw each other', async () => {
    const waits: number[] = []
    for (const { limiter, at } of [true, false].map((cached) =>
      setup(MapStore, { limit: 3, windowSeconds: 60, cached }),
    )) {
      for (let i = 0; i < 3; i++) {
        at(i * 1000)
        await limiter.consume('k')
      }
      at(3000)
      // Three at once: each may count the others' increments before they are rolled back.
      await Promise.all([limiter.consume('k'), limiter.consume('k'), limiter.consume('k')])
      // The next request is told the true wait: the first request leaves at 60 s.
      waits.push((await limiter.consume('k')).retryAfterSeconds)
    }
    expect(waits).toEqual([57, 57])
  })
})
