import { describe, expect, it } from 'vitest'
import { ConfigError, StoreError } from './errors.js'
import { FailoverStore, StoreUnavailableError } from './failover-store.js'
import type { StoreStateChange } from './failover-store.js'
import { createLimiter } from './limiter.js'
import { MapStore } from './reference-model.test-helpers.js'

/** A MapStore that can be switched to fail, or to never answer. */
class FlakyStore extends MapStore {
  mode: 'ok' | 'fail' | 'hang' = 'ok'
  pings = 0

  override update(...args: Parameters<MapStore['update']>): Promise<number[]> {
    if (this.mode === 'fail') {
      return Promise.reject(new StoreError('flaky', 'connection refused'))
    }
    if (this.mode === 'hang') {
      return new Promise(() => undefined)
    }
    return super.update(...args)
  }

  override ping(): Promise<void> {
    this.pings++
    return this.mode === 'ok'
      ? Promise.resolve()
      : Promise.reject(new StoreError('flaky', 'connection refused'))
  }
}

function setup(mode: 'open' | 'closed' = 'open') {
  let t = 1_700_000_000_000
  const now = (): number => t
  const primary = new FlakyStore(now)
  const fallback = new MapStore(now)
  const changes: StoreStateChange[] = []
  const store = new FailoverStore({
    primary,
    fallback,
    mode,
    minBackoffMs: 100,
    maxBackoffMs: 400,
    deadlineMs: 30,
    now,
    onStateChange: (change) => changes.push(change),
  })
  return {
    primary,
    fallback,
    store,
    changes,
    advance: (ms: number) => {
      t += ms
    },
  }
}

const inc = [{ slot: 1, amount: 1 }]
const flush = () => new Promise((r) => setTimeout(r, 0))

describe('FailoverStore', () => {
  it('uses the primary while it answers', async () => {
    const { store, primary, fallback } = setup()
    expect(await store.update('k', inc, [], 60)).toEqual([1])
    expect(primary.calls).toBe(1)
    expect(fallback.calls).toBe(0)
    expect(store.state).toBe('up')
  })

  it('decides with the fallback when the primary fails, and says so once', async () => {
    const { store, primary, fallback, changes } = setup()
    primary.mode = 'fail'
    for (let i = 0; i < 5; i++) {
      expect(await store.update('k', inc, [], 60)).toEqual([i + 1])
    }
    expect(store.state).toBe('down')
    expect(primary.calls).toBe(0)
    expect(fallback.calls).toBe(5)
    expect(changes).toHaveLength(1)
    expect(changes[0]).toMatchObject({ state: 'down', retryInMs: 100 })
  })

  it('treats a primary that misses the deadline as failed', async () => {
    const { store, primary } = setup()
    primary.mode = 'hang'
    const started = performance.now()
    expect(await store.update('k', inc, [], 60)).toEqual([1])
    expect(performance.now() - started).toBeLessThan(30 + 100)
    expect(store.state).toBe('down')
  })

  it('backs off, probes with a doubling delay, and returns to the primary', async () => {
    const { store, primary, changes, advance } = setup()
    primary.mode = 'fail'
    await store.update('k', inc, [], 60)
    await store.update('k', inc, [], 60)
    expect(primary.pings).toBe(0) // within the first back-off
    advance(100)
    await store.update('k', inc, [], 60)
    await flush()
    expect(primary.pings).toBe(1)
    advance(150) // the back-off is now 200 ms
    await store.update('k', inc, [], 60)
    expect(primary.pings).toBe(1)
    advance(50)
    await store.update('k', inc, [], 60)
    await flush()
    expect(primary.pings).toBe(2)
    advance(10_000) // capped at 400 ms
    primary.mode = 'ok'
    await store.update('k', inc, [], 60)
    await flush()
    expect(store.state).toBe('up')
    expect(changes.map((c) => c.state)).toEqual(['down', 'up'])
    expect(await store.update('k', inc, [], 60)).toEqual([1])
    expect(primary.calls).toBe(1)
  })

  it('refuses with StoreUnavailableError in closed mode', async () => {
    const { store, primary } = setup('closed')
    primary.mode = 'fail'
    const error = await store.update('k', inc, [], 60).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(StoreUnavailableError)
    expect(error).toMatchObject({ code: 'ERR_SLIDELIMIT_STORE_UNAVAILABLE' })
    await expect(store.update('k', inc, [], 60)).rejects.toBeInstanceOf(StoreUnavailableError)
  })

  it('keeps a limiter exact across an outage, on local counts', async () => {
    const { store, primary } = setup()
    let t = 1_700_000_000_000
    const limiter = createLimiter({ store, limit: 2, windowSeconds: 60, now: () => t })
    primary.mode = 'fail'
    expect((await limiter.consume('a')).allowed).toBe(true)
    expect((await limiter.consume('a')).allowed).toBe(true)
    expect(await limiter.consume('a')).toMatchObject({ allowed: false, retryAfterSeconds: 60 })
    t += 60_000
    expect((await limiter.consume('a')).allowed).toBe(true)
  })

  it('reports the state through ping', async () => {
    const { store, primary } = setup()
    primary.mode = 'fail'
    await expect(store.ping()).rejects.toBeInstanceOf(StoreError)
    expect(store.state).toBe('down')
    primary.mode = 'ok'
    await store.ping()
    expect(store.state).toBe('up')
  })

  it('refuses bad options', () => {
    const primary = new MapStore(Date.now)
    expect(() => new FailoverStore({ primary, fallback: primary, mode: 'ajar' as 'open' })).toThrow(
      ConfigError,
    )
    expect(() => new FailoverStore({ primary, fallback: {} as unknown as MapStore })).toThrow(
      /fallback/,
    )
    expect(() => new FailoverStore({ primary, fallback: primary, maxBackoffMs: 1 })).toThrow(
      /maxBackoffMs/,
    )
  })
})
