// The limiter's store traffic as memcached itself counts it (its `stats`), on a real
// memcached: one cold read of at most ~120 counters, then at most 3 operations per decision
// but for a read of the whole window again every 10 minutes, and nothing for a requester denied
// from memory but one check every 5 s (the bounds in LimiterOptions.cacheSize).

import { createLimiter } from '@slidelimit/core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MemcacheStore } from './memcache-store.js'
import { memcachedAvailable, startMemcached } from './testing/memcached.js'
import type { Memcached } from './testing/memcached.js'

const available = memcachedAvailable()

describe.skipIf(!available)('limiter traffic measured by memcached', () => {
  let memcached: Memcached
  let store: MemcacheStore

  beforeAll(async () => {
    memcached = await startMemcached()
    store = new MemcacheStore({ servers: memcached.address, deadlineMs: 2000, prefix: 'traffic:' })
  })

  afterAll(async () => {
    await store.close()
    await memcached.stop()
  })

  it('reads a new requester once, then sends at most 3 operations per decision, and reads the window again every 10 minutes', async () => {
    // A simulated clock: memcached's own expiry (an hour and more) never comes into play.
    let t = Date.now()
    const limiter = createLimiter({ store, now: () => t, limit: 1_000_000 })
    const start = await memcached.operations()
    await limiter.consume('client-a')
    const cold = (await memcached.operations()) - start
    expect(cold).toBeGreaterThan(2)
    expect(cold).toBeLessThanOrEqual(2 + 120)

    const perDecision: number[] = []
    for (let i = 0; i < 1300; i++) {
      t += 500
      const before = await memcached.operations()
      await limiter.consume('client-a')
      perDecision.push((await memcached.operations()) - before)
    }
    // 650 s: the cached counts are read again once.
    const rereads = perDecision.filter((ops) => ops > 3)
    expect(rereads.length).toBe(1)
    expect(Math.max(...rereads)).toBeLessThanOrEqual(2 + 120)
    const steady = perDecision.filter((ops) => ops <= 3)
    expect(Math.min(...steady)).toBe(2)
    const mean = steady.reduce((a, b) => a + b, 0) / steady.length
    expect(mean).toBeLessThan(2.2)
  })

  it('sends nothing for a requester denied from memory, but a check every 5 s', async () => {
    let t = Date.now()
    const limiter = createLimiter({ store, now: () => t, limit: 2 })
    await limiter.consume('client-b')
    await limiter.consume('client-b')
    const first = await limiter.consume('client-b')
    expect(first.allowed).toBe(false)
    const checked: number[] = []
    for (let i = 1; i <= 50; i++) {
      t += 1000
      const before = await memcached.operations()
      expect((await limiter.consume('client-b')).allowed).toBe(false)
      if ((await memcached.operations()) > before) {
        checked.push(i)
      }
    }
    expect(checked).toEqual([5, 10, 15, 20, 25, 30, 35, 40, 45, 50])
  })
})
