// The limiter's store traffic as memcached itself counts it (its `stats`), on a real
// memcached: one cold read of at most ~120 counters, then at most 3 operations per decision,
// and nothing at all for a requester denied from memory.

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

  it('reads a new requester once, then sends at most 3 operations per decision', async () => {
    // A simulated clock: memcached's own expiry (an hour and more) never comes into play.
    let t = Date.now()
    const limiter = createLimiter({ store, now: () => t, limit: 1_000_000 })
    const start = await memcached.operations()
    await limiter.consume('client-a')
    const cold = (await memcached.operations()) - start
    expect(cold).toBeGreaterThan(2)
    expect(cold).toBeLessThanOrEqual(2 + 120)

    const perDecision: number[] = []
    for (let i = 0; i < 600; i++) {
      t += 500
      const before = await memcached.operations()
      await limiter.consume('client-a')
      perDecision.push((await memcached.operations()) - before)
    }
    expect(Math.max(...perDecision)).toBeLessThanOrEqual(3)
    expect(Math.min(...perDecision)).toBe(2)
    const mean = perDecision.reduce((a, b) => a + b, 0) / perDecision.length
    expect(mean).toBeLessThan(2.2)
  })

  it('sends nothing for a requester denied from memory', async () => {
    let t = Date.now()
    const limiter = createLimiter({ store, now: () => t, limit: 2 })
    await limiter.consume('client-b')
    await limiter.consume('client-b')
    const first = await limiter.consume('client-b')
    expect(first.allowed).toBe(false)
    const before = await memcached.operations()
    for (let i = 0; i < 50; i++) {
      t += 1000
      expect((await limiter.consume('client-b')).allowed).toBe(false)
    }
    expect((await memcached.operations()) - before).toBe(0)
  })
})
