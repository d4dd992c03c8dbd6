// Test helpers: the plain reference model the limiter must agree with, and a minimal Map store
// (core cannot depend on store-memory, which depends on core).

import { StoreError } from './errors.js'
import type { SlotIncrement, Store, StoreCell } from './store.js'

export interface ReferenceDecision {
  allowed: boolean
  remaining: number
  retryAfterSeconds: number
  /** Exact whole seconds until the oldest counted request leaves the window. */
  resetSeconds: number
}

/** The obvious model: a list of admitted timestamps, counted by bucket. */
export class ReferenceModel {
  readonly admitted: number[] = []

  constructor(
    readonly limit: number,
    readonly windowSeconds: number,
    readonly bucketSeconds: number,
  ) {}

  /** Whether one more request would be admitted at t under `limit`, counting nothing. */
  peek(t: number, limit = this.limit): ReferenceDecision {
    const decision = this.decide(t, limit)
    if (decision.allowed) {
      this.admitted.pop()
      return { ...decision, remaining: decision.remaining + 1, retryAfterSeconds: 0 }
    }
    return decision
  }

  decide(t: number, limit = this.limit): ReferenceDecision {
    const bucketMs = this.bucketSeconds * 1000
    const n = this.windowSeconds / this.bucketSeconds
    const b = Math.floor(t / bucketMs)
    const inWindow = this.admitted
      .map((ts) => Math.floor(ts / bucketMs))
      .filter((j) => j > b - n && j <= b)
      .sort((x, y) => x - y)
    const secondsUntilLeaves = (j: number): number =>
      Math.max(1, Math.ceil(((j + n) * bucketMs - t) / 1000))
    if (inWindow.length < limit) {
      this.admitted.push(t)
      const remaining = limit - inWindow.length - 1
      const reset = secondsUntilLeaves(inWindow[0] ?? b)
      return {
        allowed: true,
        remaining,
        retryAfterSeconds: remaining > 0 ? 0 : reset,
        resetSeconds: reset,
      }
    }
    // One more passes once (count - limit + 1) of the oldest have left.
    const j = inWindow[inWindow.length - limit] as number
    const retry = secondsUntilLeaves(j)
    return { allowed: false, remaining: 0, retryAfterSeconds: retry, resetSeconds: retry }
  }
}

/** A minimal store on a Map, with the contract's semantics, for core's own tests. */
export class MapStore implements Store {
  readonly name = 'map'
  readonly counters = new Map<string, { value: number; expiresAt: number }>()
  calls = 0
  incrementsSeen = 0
  readsSeen = 0
  closed = false

  constructor(readonly now: () => number) {}

  update(
    key: string,
    increments: readonly SlotIncrement[],
    reads: readonly number[],
    ttlSeconds: number,
    _cell?: StoreCell,
  ): Promise<number[]> {
    if (this.closed) {
      return Promise.reject(new StoreError(this.name, 'closed'))
    }
    return Promise.resolve(this.apply(key, increments, reads, ttlSeconds))
  }

  /** The update itself, answered at once. */
  apply(
    key: string,
    increments: readonly SlotIncrement[],
    reads: readonly number[],
    ttlSeconds: number,
  ): number[] {
    this.calls++
    this.incrementsSeen += increments.length
    this.readsSeen += reads.length
    const t = this.now()
    const live = (slot: number): { value: number; expiresAt: number } | undefined => {
      const entry = this.counters.get(`${key}|${slot}`)
      return entry !== undefined && entry.expiresAt > t ? entry : undefined
    }
    const out: number[] = []
    for (const { slot, amount } of increments) {
      const entry = live(slot) ?? { value: 0, expiresAt: t + ttlSeconds * 1000 }
      entry.value = Math.max(0, entry.value + amount)
      this.counters.set(`${key}|${slot}`, entry)
      out.push(entry.value)
    }
    for (const slot of reads) {
      out.push(live(slot)?.value ?? 0)
    }
    return out
  }

  remove(key: string, slots: readonly number[]): Promise<void> {
    if (this.closed) {
      return Promise.reject(new StoreError(this.name, 'closed'))
    }
    this.calls++
    for (const slot of slots) {
      this.counters.delete(`${key}|${slot}`)
    }
    return Promise.resolve()
  }

  ping(): Promise<void> {
    return Promise.resolve()
  }

  close(): Promise<void> {
    this.closed = true
    return Promise.resolve()
  }
}

/** The Map store with `updateSync`, as the memory store has: the limiter's synchronous path. */
export class SyncMapStore extends MapStore {
  updateSync(
    key: string,
    increments: readonly SlotIncrement[],
    reads: readonly number[],
    ttlSeconds: number,
  ): number[] {
    if (this.closed) {
      throw new StoreError(this.name, 'closed')
    }
    return this.apply(key, increments, reads, ttlSeconds)
  }
}

/** Wraps a store and records the operations of every call, to pin them per decision. */
export class CountingStore implements Store {
  readonly name: string
  /** One row per update call: how many increments and reads it sent. */
  readonly calls: { increments: number; reads: number }[] = []

  constructor(readonly inner: Store) {
    this.name = inner.name
  }

  epochOf(key: string): number {
    return this.inner.epochOf?.(key) ?? 0
  }

  /** Operations (increments + reads) since `since` calls, and the calls themselves. */
  opsSince(since: number): { calls: number; ops: number } {
    const rows = this.calls.slice(since)
    return { calls: rows.length, ops: rows.reduce((sum, r) => sum + r.increments + r.reads, 0) }
  }

  update(
    key: string,
    increments: readonly SlotIncrement[],
    reads: readonly number[],
    ttlSeconds: number,
  ): Promise<number[]> {
    this.calls.push({ increments: increments.length, reads: reads.length })
    return this.inner.update(key, increments, reads, ttlSeconds)
  }

  ping(): Promise<void> {
    return this.inner.ping()
  }

  close(): Promise<void> {
    return this.inner.close()
  }
}
