import { describeStoreConformance } from '@slidelimit/core/testing'
import { describe, expect, it } from 'vitest'
import { MemoryStore } from './memory-store.js'

let clock = 1_700_000_000_000
const now = (): number => clock

describeStoreConformance('MemoryStore', {
  create: () => new MemoryStore({ now, sweepIntervalMs: 0 }),
  advance: (seconds) => {
    clock += seconds * 1000
    return Promise.resolve()
  },
})

describe('MemoryStore', () => {
  it('drops whole expired records in the sweep, a chunk at a time', async () => {
    let t = 1_000_000
    const store = new MemoryStore({ now: () => t, sweepIntervalMs: 0, sweepChunk: 10 })
    for (let i = 0; i < 25; i++) {
      await store.update(`k${i}`, [{ slot: 1, amount: 1 }], [], 10)
    }
    await store.update('long', [{ slot: 1, amount: 1 }], [], 100)
    expect(store.size).toBe(26)
    t += 11_000
    expect(store.sweep() + store.sweep() + store.sweep()).toBe(25)
    expect(store.size).toBe(1)
    expect(await store.update('long', [], [1], 100)).toEqual([1])
    await store.close()
  })

  it('frees a record when all its counters have expired and it is touched again', async () => {
    let t = 5_000_000
    const store = new MemoryStore({ now: () => t, sweepIntervalMs: 0 })
    await store.update('k', [{ slot: 1, amount: 1 }], [], 5)
    t += 6000
    expect(await store.update('k', [], [1], 5)).toEqual([0])
    expect(store.size).toBe(0)
    await store.close()
  })

  it('keeps values beyond 32-bit integers exact (slots, counts, fractional clocks)', async () => {
    let t = 1_700_000_000_000.25
    const store = new MemoryStore({ now: () => t, sweepIntervalMs: 0 })
    const far = 2 ** 40
    expect(await store.update('k', [{ slot: 3, amount: 1 }], [], 60)).toEqual([1])
    expect(await store.update('k', [{ slot: far, amount: 2 ** 33 }], [3], 60)).toEqual([2 ** 33, 1])
    expect(await store.update('k', [{ slot: -far, amount: 5 }], [far, 3], 60)).toEqual([
      5,
      2 ** 33,
      1,
    ])
    expect(await store.update('k', [{ slot: far, amount: -1 }], [], 60)).toEqual([2 ** 33 - 1])
    // Expiries are kept in whole seconds, as memcached keeps them: at most a second longer.
    t += 61_000
    expect(await store.update('k', [], [far, 3, -far], 60)).toEqual([0, 0, 0])
    await store.close()
  })

  it('keeps counters of one key in order however they arrive', async () => {
    const store = new MemoryStore({ now: () => 1_000_000, sweepIntervalMs: 0 })
    const slots = [50, -7, 3, 1000, -1, 0, 49, 51, -3000000, 2 ** 31 + 5]
    for (const [i, slot] of slots.entries()) {
      await store.update('k', [{ slot, amount: i + 1 }], [], 600)
    }
    expect(await store.update('k', [], slots, 600)).toEqual(slots.map((_, i) => i + 1))
    await store.close()
  })

  it('answers through a cell only while its record is still the key’s', async () => {
    let t = 2_000_000
    const store = new MemoryStore({ now: () => t, sweepIntervalMs: 0 })
    const one = [{ slot: 1, amount: 1 }]
    const cell = { held: undefined as unknown }
    const other = { held: undefined as unknown }
    expect(store.updateSync('k', one, [], 60, cell)).toEqual([1])
    // The same counters with the cell, without it, and through another cell.
    expect(store.updateSync('k', one, [], 60, cell)).toEqual([2])
    expect(store.updateSync('k', one, [], 60)).toEqual([3])
    expect(store.updateSync('k', one, [], 60, other)).toEqual([4])
    // Removed: the cell's record is not the key's any more, and holds no counters (a cell may
    // keep it long after).
    await store.remove('k', [1])
    expect((cell.held as { data: number[] }).data).toHaveLength(0)
    expect(store.updateSync('k', one, [], 60, cell)).toEqual([1])
    expect(store.updateSync('k', [], [1], 60, other)).toEqual([1])
    expect(store.size).toBe(1)
    // Swept while the counters had expired; then a new record for the key.
    t += 61_000
    expect(store.sweep()).toBe(1)
    expect(store.updateSync('k', one, [], 60)).toEqual([1])
    expect(store.updateSync('k', one, [], 60, cell)).toEqual([2])
    expect(store.updateSync('k', [], [1], 60, other)).toEqual([2])
    // Expired and touched through a cell: dropped, then counted afresh in the store.
    t += 61_000
    expect(store.updateSync('k', [], [1], 60, cell)).toEqual([0])
    expect(store.size).toBe(0)
    expect(store.updateSync('k', one, [], 60, other)).toEqual([1])
    expect(store.updateSync('k', [], [1], 60)).toEqual([1])
    expect(store.size).toBe(1)
    await store.close()
    expect(() => store.updateSync('k', one, [], 60, cell)).toThrow(/closed/)
  })

  it('reads expired counters as 0 and counts afresh in them while they await compaction', async () => {
    let t = 3_000_000
    const store = new MemoryStore({ now: () => t, sweepIntervalMs: 0 })
    const slots = Array.from({ length: 40 }, (_, i) => i + 1)
    for (const slot of slots) {
      store.updateSync('k', [{ slot, amount: 2 }], [], 1000)
    }
    store.updateSync('k', [{ slot: 0, amount: 1 }], [], 10)
    // Slot 0 expires and is compacted away; the next compaction waits 40 / 8 seconds past the
    // others' expiry.
    t += 11_000
    expect(store.updateSync('k', [], [0, 1], 1000)).toEqual([0, 2])
    t = 3_000_000 + 1_001_000
    expect(store.updateSync('k', [], slots, 1000)).toEqual(slots.map(() => 0))
    expect(store.updateSync('k', [{ slot: 5, amount: 3 }], [5, 6], 1000)).toEqual([3, 3, 0])
    expect(store.updateSync('k', [{ slot: 6, amount: -1 }], [], 1000)).toEqual([0])
    // The counters counted afresh live on after the compaction; the record stays.
    t += 10_000
    expect(store.updateSync('k', [], [4, 5, 6, 7], 1000)).toEqual([0, 3, 0, 0])
    expect(store.size).toBe(1)
    await store.close()
  })

  it('rejects bad options with a ConfigError naming the option', () => {
    expect(() => new MemoryStore({ sweepIntervalMs: -1 })).toThrow(/sweepIntervalMs/)
    expect(() => new MemoryStore({ sweepChunk: 0 })).toThrow(/sweepChunk/)
  })
})
