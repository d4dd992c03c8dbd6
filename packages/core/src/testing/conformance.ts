// The store conformance suite: every Store implementation runs it against a real backend.
// It pins down the contract in store.ts: creation at zero, ordering of results, isolation,
// atomic parallel increments, decrements that stop at zero, expiry, removal, cells, shards and
// close.
// Every test that counts runs through each entry point the store offers: `update`, and
// `updateSync` where the store has it (the limiter prefers it).

import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { StoreError } from '../errors.js'
import type { Store } from '../store.js'

/** How the suite makes stores and lets time pass for them. */
export interface ConformanceHarness {
  /** Makes a fresh store; each test gets its own and closes it. */
  create: () => Store | Promise<Store>
  /**
   * Lets `seconds` pass for the store: a fake clock advanced, or a real sleep for a store
   * whose backend keeps its own time.
   */
  advance: (seconds: number) => Promise<void>
  /** Parallel increments in the concurrency test. Defaults to `200`. */
  parallel?: number
}

/** The ways to call a store's counters; a store without `updateSync` skips its tests. */
const ENTRY_POINTS = ['update', 'updateSync'] as const

let unique = 0
/** A key no other test (or earlier run against the same backend) has used. */
function freshKey(label: string): string {
  unique += 1
  return `conformance:${label}:${process.pid}:${Date.now()}:${unique}`
}

/**
 * Registers the conformance tests for a store.
 *
 * @example
 * ```ts
 * import { describeStoreConformance } from '@slidelimit/core/testing'
 * describeStoreConformance('MemoryStore', { create: () => new MemoryStore({ now }), advance })
 * ```
 */
export function describeStoreConformance(name: string, harness: ConformanceHarness): void {
  describe.each(ENTRY_POINTS)(`${name} conforms to the Store contract through %s`, (entry) => {
    let store: Store
    /** The entry point under test, as a promise (a synchronous throw becomes a rejection). */
    let update: Store['update']

    beforeEach(async (context) => {
      store = await harness.create()
      if (entry === 'updateSync' && store.updateSync === undefined) {
        await store.close()
        context.skip()
      }
      update = entryPoint(store, entry)
    })

    afterEach(async () => {
      await store.close()
    })

    it('reads a counter that was never written as 0', async () => {
      const key = freshKey('fresh')
      expect(await update(key, [], [0, 1, 12345, -1, -7], 60)).toEqual([0, 0, 0, 0, 0])
    })

    it('returns the new value of each increment', async () => {
      const key = freshKey('increment')
      expect(await update(key, [{ slot: 5, amount: 1 }], [], 60)).toEqual([1])
      expect(await update(key, [{ slot: 5, amount: 2 }], [], 60)).toEqual([3])
      expect(await update(key, [{ slot: 5, amount: 4 }], [5], 60)).toEqual([7, 7])
    })

    it('answers increments first, then reads, each in the order asked', async () => {
      const key = freshKey('order')
      await update(
        key,
        [
          { slot: 1, amount: 10 },
          { slot: 2, amount: 20 },
        ],
        [],
        60,
      )
      const values = await update(
        key,
        [
          { slot: 3, amount: 3 },
          { slot: -1, amount: 4 },
        ],
        [2, 9, 1, 3, -1],
        60,
      )
      expect(values).toEqual([3, 4, 20, 0, 10, 3, 4])
    })

    it('answers a counter read twice in both places', async () => {
      const key = freshKey('twice')
      await update(key, [{ slot: 5, amount: 2 }], [], 60)
      expect(await update(key, [{ slot: 5, amount: 1 }], [5, 6, 5], 60)).toEqual([3, 3, 0, 3])
    })

    it('keeps counters of different keys and slots apart', async () => {
      const a = freshKey('a')
      const b = freshKey('b')
      await update(a, [{ slot: 7, amount: 2 }], [], 60)
      await update(b, [{ slot: 7, amount: 5 }], [], 60)
      await update(a, [{ slot: -8, amount: 3 }], [], 60)
      expect(await update(a, [], [7, -8, 8, -7], 60)).toEqual([2, 3, 0, 0])
      expect(await update(b, [], [7, -8], 60)).toEqual([5, 0])
    })

    it('accepts any key: long, non-ASCII, with spaces and control characters', async () => {
      const keys = [
        freshKey('x'.repeat(2000)),
        freshKey('2001:db8::1 \u00e9\u4e2d\u{1f600}'),
        freshKey('tab\there\nnewline\r\u0000nul'),
      ]
      for (const [i, key] of keys.entries()) {
        await update(key, [{ slot: 1, amount: i + 1 }], [], 60)
      }
      for (const [i, key] of keys.entries()) {
        expect(await update(key, [], [1], 60)).toEqual([i + 1])
      }
    })

    it('stops a decrement at 0 and creates a decremented counter at 0', async () => {
      const key = freshKey('decrement')
      await update(key, [{ slot: 1, amount: 2 }], [], 60)
      expect(await update(key, [{ slot: 1, amount: -1 }], [], 60)).toEqual([1])
      expect(await update(key, [{ slot: 1, amount: -5 }], [], 60)).toEqual([0])
      expect(await update(key, [{ slot: 2, amount: -1 }], [2], 60)).toEqual([0, 0])
      expect(await update(key, [{ slot: 1, amount: 1 }], [], 60)).toEqual([1])
    })

    it('sums parallel increments exactly', async () => {
      const key = freshKey('parallel')
      const n = harness.parallel ?? 200
      const results = await Promise.all(
        Array.from({ length: n }, () =>
          update(
            key,
            [
              { slot: 3, amount: 1 },
              { slot: -1, amount: 1 },
            ],
            [],
            60,
          ),
        ),
      )
      // Every increment saw a distinct value: none was lost or applied twice.
      const seen = results.map((r) => r[0]).sort((x = 0, y = 0) => x - y)
      expect(seen).toEqual(Array.from({ length: n }, (_, i) => i + 1))
      expect(await update(key, [], [3, -1], 60)).toEqual([n, n])
    })

    it('drops a counter once its time to live has passed', async () => {
      const key = freshKey('expiry')
      await update(key, [{ slot: 1, amount: 3 }], [], 1)
      await update(key, [{ slot: 2, amount: 4 }], [], 30)
      expect(await update(key, [], [1, 2], 1)).toEqual([3, 4])
      await harness.advance(2.5)
      expect(await update(key, [], [1, 2], 1)).toEqual([0, 4])
      expect(await update(key, [{ slot: 1, amount: 1 }], [], 30)).toEqual([1])
    })

    it('keeps the time to live set when a counter was created', async () => {
      const key = freshKey('ttl-kept')
      await update(key, [{ slot: 1, amount: 1 }], [], 2)
      await harness.advance(1.5)
      await update(key, [{ slot: 1, amount: 1 }], [], 2)
      await harness.advance(2)
      expect(await update(key, [], [1], 2)).toEqual([0])
    })

    it('answers the same through a cell as without one, across removal and expiry', async () => {
      const key = freshKey('cell')
      const cell = { held: undefined as unknown }
      const other = { held: undefined as unknown }
      const one = [{ slot: 1, amount: 1 }]
      expect(await update(key, one, [], 2, cell)).toEqual([1])
      expect(await update(key, one, [], 2)).toEqual([2])
      expect(await update(key, one, [1], 2, other)).toEqual([3, 3])
      expect(await update(key, [], [1], 2, cell)).toEqual([3])
      if (store.remove !== undefined) {
        await store.remove(key, [1])
        expect(await update(key, [], [1], 2, cell)).toEqual([0])
        expect(await update(key, one, [], 2, other)).toEqual([1])
        expect(await update(key, [], [1], 2, cell)).toEqual([1])
      }
      await harness.advance(2.5)
      expect(await update(key, [], [1], 2, cell)).toEqual([0])
      expect(await update(key, one, [], 60, other)).toEqual([1])
      expect(await update(key, one, [1], 60, cell)).toEqual([2, 2])
      expect(await update(key, [], [1], 60)).toEqual([2])
    })

    it('removes the counters of a key, and only those', async (context) => {
      const remove = removeOf(store, context)
      const key = freshKey('remove')
      const other = freshKey('remove-other')
      await update(
        key,
        [
          { slot: 1, amount: 2 },
          { slot: 2, amount: 3 },
          { slot: -1, amount: 5 },
        ],
        [],
        60,
      )
      await update(other, [{ slot: 1, amount: 7 }], [], 60)
      await remove(key, [1, 2, -1, 3, -2])
      expect(await update(key, [], [1, 2, -1], 60)).toEqual([0, 0, 0])
      expect(await update(other, [], [1], 60)).toEqual([7])
      // A removed counter starts again at 0, with a new time to live.
      expect(await update(key, [{ slot: 1, amount: 1 }], [], 60)).toEqual([1])
    })

    it('removes a key that holds nothing, and many slots in one call', async (context) => {
      const remove = removeOf(store, context)
      const key = freshKey('remove-many')
      await remove(key, [])
      await remove(key, [5])
      const slots = Array.from({ length: 4100 }, (_, i) => i - 100)
      await update(key, [{ slot: 3999, amount: 1 }], [], 60)
      await remove(key, slots)
      expect(await update(key, [], [3999, -100], 60)).toEqual([0, 0])
    })

    it('refuses a remove after close with a StoreError', async (context) => {
      removeOf(store, context)
      const other = await harness.create()
      await other.close()
      await expect(other.remove?.(freshKey('closed'), [1])).rejects.toBeInstanceOf(StoreError)
    })

    it('answers a ping', async () => {
      await expect(store.ping()).resolves.toBeUndefined()
    })

    it('places each key on one of its shards, always the same, and answers a ping per shard', async () => {
      const shards = store.shards
      if (shards === undefined) {
        expect('shardOf' in store && store.shardOf !== undefined).toBe(false)
        return
      }
      expect(shards.length).toBeGreaterThan(0)
      expect(new Set(shards).size).toBe(shards.length)
      if (shards.length > 1) {
        expect(typeof store.shardOf).toBe('function')
      }
      const shardOf = store.shardOf?.bind(store)
      if (shardOf !== undefined) {
        const seen = new Set<string>()
        for (let i = 0; i < 200; i++) {
          const key = `conformance:placement:${i}`
          const shard = shardOf(key)
          expect(shards).toContain(shard)
          expect(shardOf(key)).toBe(shard)
          seen.add(shard)
        }
        // 200 keys over a few shards: every shard holds some.
        expect(seen.size).toBe(shards.length)
      }
      for (const shard of shards) {
        await expect(store.ping(shard)).resolves.toBeUndefined()
      }
    })

    it('refuses work after close with a StoreError, counting nothing', async () => {
      const other = await harness.create()
      const key = freshKey('closed')
      await entryPoint(other, entry)(key, [{ slot: 1, amount: 1 }], [], 60)
      await other.close()
      if (entry === 'updateSync') {
        // Synchronously: a caller on the synchronous path gets the error at once.
        expect(() => other.updateSync?.(key, [{ slot: 1, amount: 1 }], [1], 60)).toThrow(StoreError)
      }
      await expect(
        entryPoint(other, entry)(key, [{ slot: 1, amount: 1 }], [1], 60),
      ).rejects.toBeInstanceOf(StoreError)
      await expect(entryPoint(other, entry)(key, [], [1], 60)).rejects.toBeInstanceOf(StoreError)
    })
  })
}

/** The store's `remove`; a store without it (optional in the contract) skips the test. */
function removeOf(
  store: Store,
  context: { skip: () => never },
): (key: string, slots: readonly number[]) => Promise<void> {
  const remove = store.remove?.bind(store)
  if (remove === undefined) {
    return context.skip()
  }
  return remove
}

/** A store's `update`, or its `updateSync` as a promise (a synchronous throw rejects). */
function entryPoint(store: Store, entry: (typeof ENTRY_POINTS)[number]): Store['update'] {
  const updateSync = store.updateSync?.bind(store)
  if (entry === 'update' || updateSync === undefined) {
    return store.update.bind(store)
  }
  return (...args) =>
    new Promise((resolve) => {
      resolve(updateSync(...args))
    })
}
