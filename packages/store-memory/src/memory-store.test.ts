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

  it('rejects bad options with a ConfigError naming the option', () => {
    expect(() => new MemoryStore({ sweepIntervalMs: -1 })).toThrow(/sweepIntervalMs/)
    expect(() => new MemoryStore({ sweepChunk: 0 })).toThrow(/sweepChunk/)
  })
})
