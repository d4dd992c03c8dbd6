import { ConfigError, StoreError, StoreKeyError, createLimiter } from '@slidelimit/core'
import { describeStoreConformance } from '@slidelimit/core/testing'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MemcacheStore } from './memcache-store.js'
import { freePort, memcachedAvailable, startMemcached } from './testing/memcached.js'
import type { Memcached } from './testing/memcached.js'

const available = memcachedAvailable()
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

describe.skipIf(!available)('MemcacheStore against a real memcached', () => {
  let memcached: Memcached
  let second: Memcached

  beforeAll(async () => {
    ;[memcached, second] = await Promise.all([startMemcached(), startMemcached()])
  })

  afterAll(async () => {
    await Promise.all([memcached.stop(), second.stop()])
  })

  describeStoreConformance('MemcacheStore', {
    create: () => new MemcacheStore({ servers: memcached.address, deadlineMs: 2000 }),
    advance: (seconds) => sleep(seconds * 1000),
  })

  describeStoreConformance('MemcacheStore on two servers', {
    create: () =>
      new MemcacheStore({ servers: `${memcached.address},${second.address}`, deadlineMs: 2000 }),
    advance: (seconds) => sleep(seconds * 1000),
  })

  it('never sends a raw requester id to memcached', async () => {
    const store = new MemcacheStore({ servers: memcached.address, prefix: 'raw-test:' })
    const id = 'user 42\r\nset evil 0 0 1'
    await store.update(id, [{ slot: 9, amount: 1 }], [], 60)
    const key = `${store.keyBase(id)}9`
    expect(key).toMatch(/^raw-test:[A-Za-z0-9_-]{27}:9$/)
    expect(await memcached.command(`get ${key}`)).toContain('\r\n1\r\n')
    expect(await memcached.command('get evil')).toBe('END\r\n')
    await store.close()
  })

  it('keeps every counter of one requester on one server', async () => {
    const store = new MemcacheStore({ servers: `${memcached.address},${second.address}` })
    const slots = Array.from({ length: 40 }, (_, i) => ({ slot: i - 20, amount: 1 }))
    for (const id of ['a', 'b', 'c', 'd', 'e', 'f']) {
      await store.update(id, slots, [], 60)
      const base = store.keyBase(id)
      const onFirst = await memcached.command(`get ${base}0 ${base}-5 ${base}19`)
      const onSecond = await second.command(`get ${base}0 ${base}-5 ${base}19`)
      const hits = [onFirst, onSecond].map((r) => (r.match(/VALUE/g) ?? []).length)
      expect(hits.sort()).toEqual([0, 3])
    }
    await store.close()
  })

  it('reports a corrupt counter as a StoreKeyError, deletes it and keeps working', async () => {
    const store = new MemcacheStore({ servers: memcached.address, deadlineMs: 2000 })
    const base = store.keyBase('corrupt')
    await memcached.command(`set ${base}1 0 60 5\r\nhello`)
    await expect(store.update('corrupt', [], [1], 60)).rejects.toBeInstanceOf(StoreKeyError)
    expect(await store.update('corrupt', [{ slot: 1, amount: 1 }], [], 60)).toEqual([1])
    expect(await store.update('corrupt', [{ slot: 2, amount: 1 }], [], 60)).toEqual([1])
    await store.close()
  })

  it('fails within its deadline when memcached does not answer', async () => {
    const stalled = await startMemcached()
    stalled.process.kill('SIGSTOP')
    const store = new MemcacheStore({ servers: stalled.address, deadlineMs: 40 })
    const started = performance.now()
    await expect(store.update('k', [{ slot: 1, amount: 1 }], [1], 60)).rejects.toThrow(/deadline/)
    expect(performance.now() - started).toBeLessThan(40 + 200)
    await store.close()
    stalled.process.kill('SIGCONT')
    await stalled.stop()
  })

  it('fails fast when nothing listens', async () => {
    const store = new MemcacheStore({ servers: `127.0.0.1:${await freePort()}`, deadlineMs: 1000 })
    await expect(store.update('k', [{ slot: 1, amount: 1 }], [], 60)).rejects.toBeInstanceOf(
      StoreError,
    )
    await expect(store.ping()).rejects.toBeInstanceOf(StoreError)
    await store.close()
  })

  it('runs the limiter: the 4th of 3 is denied, and denial rolls back', async () => {
    const store = new MemcacheStore({
      servers: memcached.address,
      prefix: `lim${Date.now()}:`,
      deadlineMs: 2000,
    })
    const limiter = createLimiter({ store, limit: 3, windowSeconds: 60 })
    const decisions = []
    for (let i = 0; i < 5; i++) {
      decisions.push(await limiter.consume('client'))
    }
    expect(decisions.map((d) => d.allowed)).toEqual([true, true, true, false, false])
    expect(decisions[4]?.retryAfterSeconds).toBeGreaterThanOrEqual(59)
    const values = await store.update(
      limiter.prefix + 'client',
      [],
      [Math.floor(Date.now() / 1000)],
      60,
    )
    expect(values[0]).toBeLessThanOrEqual(3)
    await store.close()
  })
})

describe('MemcacheStore options', () => {
  it('refuses bad options with a ConfigError', () => {
    for (const options of [
      { servers: 'localhost' },
      { servers: 'a:1,,b:2' },
      { servers: '::1:11211' },
      { deadlineMs: 0 },
      { prefix: 'has space' },
    ]) {
      expect(() => new MemcacheStore(options)).toThrow(ConfigError)
    }
  })
})
