// `remove` (a limiter's resetKey) on a real memcached: a window of 3600 one-second buckets is
// about 3,670 deletes, which go in chunks, one remove at a time per server, so the decisions
// sharing the socket only ever wait behind one chunk, within the default 50 ms deadline.
// Checked against what memcached itself holds.

import { StoreError } from '@slidelimit/core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MemcacheStore } from './memcache-store.js'
import type { MemcacheEvent } from './memcache-store.js'
import { memcachedAvailable, startFaultProxy, startMemcached } from './testing/index.js'
import type { Memcached } from './testing/index.js'

const available = memcachedAvailable()

/** What resetKey sends for a 3600 s window of 1 s buckets (with the grace's buckets). */
const SLOTS = 3670
/** The slots of a window ending now. */
const windowSlots = (): number[] => {
  const last = Math.floor(Date.now() / 1000)
  return Array.from({ length: SLOTS }, (_, i) => last - SLOTS + 1 + i)
}

describe.skipIf(!available)('MemcacheStore.remove against a real memcached', () => {
  let memcached: Memcached

  beforeAll(async () => {
    memcached = await startMemcached()
  })

  afterAll(async () => {
    await memcached.stop()
  })

  /** Counts 1 in every `every`-th slot of each key, with a store of a generous deadline. */
  async function fill(prefix: string, keys: string[], slots: number[], every: number) {
    const filler = new MemcacheStore({ servers: memcached.address, prefix, deadlineMs: 5000 })
    const increments = slots.filter((_, i) => i % every === 0).map((slot) => ({ slot, amount: 1 }))
    for (const key of keys) {
      for (let i = 0; i < increments.length; i += 200) {
        await filler.update(key, increments.slice(i, i + 200), [], 600)
      }
    }
    await filler.close()
  }

  it('12 removes of a whole window in parallel with 50 decisions: all answer, none is late, every counter goes', async () => {
    const prefix = 'rm-parallel:'
    const slots = windowSlots()
    const targets = Array.from({ length: 12 }, (_, i) => `admin-target-${i}`)
    await fill(prefix, targets, slots, 16)
    const events: MemcacheEvent[] = []
    const store = new MemcacheStore({
      servers: memcached.address,
      prefix,
      onEvent: (event) => events.push(event),
    })
    expect(store.deadlineMs).toBe(50)
    await store.ping()
    const bases = targets.map((key) => store.keyBase(key))
    const before = await memcached.items(prefix)
    expect(before.size).toBe(12 * Math.ceil(SLOTS / 16))

    const last = slots[slots.length - 1] as number
    const removes = targets.map((key) => store.remove(key, slots).then(() => 'ok', String))
    const updates = Array.from({ length: 50 }, (_, i) =>
      store
        .update(`user-${i}`, [{ slot: last, amount: 1 }], [last - 1], 600)
        .then((values) => JSON.stringify(values), String),
    )
    expect(await Promise.all(updates)).toEqual(Array.from({ length: 50 }, () => '[1,0]'))
    expect(await Promise.all(removes)).toEqual(targets.map(() => 'ok'))
    expect(events.filter(({ type }) => type === 'down')).toEqual([])

    const after = await memcached.items(prefix)
    expect([...after.keys()].filter((key) => bases.some((base) => key.startsWith(base)))).toEqual(
      [],
    )
    expect(after.size).toBe(50) // the decisions' counters, all there
    await store.close()
  })

  it('one remove of a whole window meets a 5 ms deadline', async () => {
    const prefix = 'rm-short:'
    const slots = windowSlots()
    await fill(prefix, ['k'], slots, 7)
    const store = new MemcacheStore({ servers: memcached.address, prefix, deadlineMs: 5 })
    // A short deadline on a loaded machine may miss a request now and then: the point is that
    // a remove is no longer one request that can never make it.
    let answered = false
    for (let attempt = 0; attempt < 5 && !answered; attempt++) {
      answered = await store.remove('k', slots).then(
        () => true,
        () => false,
      )
    }
    expect(answered).toBe(true)
    expect((await memcached.items(prefix)).size).toBe(0)
    await store.close()
  })

  it('fails at the first chunk without an answer, and sends none of the chunks after it', async () => {
    const prefix = 'rm-late:'
    const slots = windowSlots()
    await fill(prefix, ['k'], slots, 1)
    const proxy = await startFaultProxy(memcached.address)
    const store = new MemcacheStore({ servers: proxy.address, prefix, deadlineMs: 100 })
    await store.ping()
    // Requests reach memcached, their answers come too late: the first chunk fails (its
    // deletes land), and a chunk sent after it would land too.
    await proxy.set({ kind: 'delay', ms: 1000 })
    const error = await store.remove('k', slots).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(StoreError)
    expect(String(error)).toMatch(/within the 100 ms deadline/)
    await new Promise((resolve) => setTimeout(resolve, 300))
    const base = store.keyBase('k')
    const left = await memcached.items(prefix)
    expect([...left.keys()].sort()).toEqual(
      slots
        .slice(256)
        .map((slot) => `${base}${slot}`)
        .sort(),
    )
    await store.close()
    await proxy.close()
  })

  it('fails a remove waiting its turn once the store is closed', async () => {
    const store = new MemcacheStore({ servers: memcached.address, prefix: 'rm-closed:' })
    const slots = windowSlots()
    const first = store.remove('a', slots).catch((e: unknown) => e)
    const second = store.remove('b', slots).catch((e: unknown) => e)
    await store.close()
    expect(await second).toBeInstanceOf(StoreError)
    expect(String(await second)).toMatch(/closed/)
    expect(await first).toBeInstanceOf(StoreError)
    await expect(store.remove('c', slots)).rejects.toThrow(/closed/)
  })
})
