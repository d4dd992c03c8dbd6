import { spawn } from 'node:child_process'
import { describe, expect, it } from 'vitest'
import { ConfigError, StoreError, StoreKeyError } from './errors.js'
import { FailoverStore, StoreUnavailableError } from './failover-store.js'
import type { StoreStateChange } from './failover-store.js'
import { createLimiter } from './limiter.js'
import { MapStore } from './reference-model.test-helpers.js'
import type { Store } from './store.js'

/**
 * A MapStore that can be switched to fail, to throw at once (as a client library's RangeError
 * does), or to never answer; and whose keys can be marked as holding unusable data, once.
 */
class FlakyStore extends MapStore {
  mode: 'ok' | 'fail' | 'throw' | 'hang' = 'ok'
  pings = 0
  /** Keys whose next call fails with a StoreKeyError (their data is then gone). */
  readonly corrupt = new Set<string>()

  override update(...args: Parameters<MapStore['update']>): Promise<number[]> {
    if (this.mode === 'fail') {
      return Promise.reject(new StoreError('flaky', 'connection refused'))
    }
    if (this.mode === 'throw') {
      throw new RangeError('The value of "value" is out of range.')
    }
    if (this.mode === 'hang') {
      return new Promise(() => undefined)
    }
    const [key] = args
    if (this.corrupt.delete(key)) {
      // As memcached with one counter holding text: the call fails, the other counters stay.
      return Promise.reject(new StoreKeyError('flaky', key, `a counter of ${key} is not a number`))
    }
    return super.update(...args)
  }

  override remove(...args: Parameters<MapStore['remove']>): Promise<void> {
    if (this.mode === 'fail') {
      return Promise.reject(new StoreError('flaky', 'connection refused'))
    }
    if (this.mode === 'hang') {
      return new Promise(() => undefined)
    }
    return super.remove(...args)
  }

  override ping(): Promise<void> {
    this.pings++
    if (this.mode === 'throw') {
      throw new RangeError('The value of "value" is out of range.')
    }
    return this.mode === 'ok'
      ? Promise.resolve()
      : Promise.reject(new StoreError('flaky', 'connection refused'))
  }
}

/** A FailoverStore (back-off 100-400 ms, deadline 30 ms) on a primary made for a test clock. */
function breakerOn<P extends Store>(
  mode: 'open' | 'closed',
  makePrimary: (now: () => number) => P,
) {
  let t = 1_700_000_000_000
  const now = (): number => t
  const primary = makePrimary(now)
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

function setup(mode: 'open' | 'closed' = 'open') {
  return breakerOn(mode, (now) => new FlakyStore(now))
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

  it('backs off further when the primary fails again right after a probe said it was back', async () => {
    const { store, primary, changes, advance } = setup()
    // A primary whose probes pass while its calls fail (memcached out of memory answers a no-op).
    const flaky = (): void => {
      primary.mode = 'fail'
    }
    primary.ping = () => Promise.resolve()
    flaky()
    for (let i = 0; i < 5; i++) {
      await store.update('k', inc, [], 60)
      advance(1000)
      await store.update('k', inc, [], 60) // probes, and the probe passes
      await flush()
    }
    const downs = changes.filter((c) => c.state === 'down').map((c) => c.retryInMs)
    expect(downs).toEqual([100, 200, 400, 400, 400])
    // A failure long after the last recovery (more than maxBackoffMs) starts over, even though
    // no call came meanwhile: a shard without traffic is not kept on the longest back-off.
    advance(60_000)
    await store.update('k', inc, [], 60)
    expect(changes.at(-1)).toMatchObject({ state: 'down', retryInMs: 100 })
    // Back for real: it answers calls, and its next failure starts from the shortest back-off.
    primary.mode = 'ok'
    advance(100)
    await store.update('k', inc, [], 60)
    await flush()
    expect(await store.update('k', inc, [], 60)).toEqual([1])
    primary.mode = 'fail'
    await store.update('k', inc, [], 60)
    expect(changes.at(-1)).toMatchObject({ state: 'down', retryInMs: 100 })
  })

  it('probes at once when the clock went back, instead of in an hour', async () => {
    const { store, primary, advance } = setup()
    primary.mode = 'fail'
    await store.update('k', inc, [], 60)
    advance(-3_600_000) // the wall clock stepped back an hour
    primary.mode = 'ok'
    await store.ping()
    expect(store.state).toBe('up')
  })

  it('gives up on a probe that never settles, so the breaker can close later', async () => {
    let t = 1_700_000_000_000
    const primary = new FlakyStore(() => t)
    const store = new FailoverStore({
      primary,
      fallback: new MapStore(() => t),
      minBackoffMs: 10,
      maxBackoffMs: 40,
      now: () => t,
    })
    primary.mode = 'fail'
    await store.update('k', inc, [], 60)
    // The primary has no deadline of its own, and its ping hangs once.
    const ping = primary.ping.bind(primary)
    primary.ping = () => {
      primary.ping = ping
      return new Promise(() => undefined)
    }
    t += 10
    await expect(store.ping()).rejects.toThrow(/deadline/)
    primary.mode = 'ok'
    t += 1000
    await store.ping()
    expect(store.state).toBe('up')
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

  it('treats a synchronous throw from the primary as a failure and decides with the fallback', async () => {
    const { store, primary, fallback, changes } = setup()
    primary.mode = 'throw'
    expect(await store.update('k', inc, [], 60)).toEqual([1])
    expect(store.state).toBe('down')
    expect(fallback.calls).toBe(1)
    expect(changes[0]?.error).toBeInstanceOf(StoreError)
    expect((changes[0]?.error as StoreError).cause).toBeInstanceOf(RangeError)
  })

  it('refuses with StoreUnavailableError when the primary throws in closed mode', async () => {
    const { store, primary } = setup('closed')
    primary.mode = 'throw'
    const error = await store.update('k', inc, [], 60).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(StoreUnavailableError)
    expect(store.state).toBe('down')
  })

  it('treats a probe that throws as a failed probe', async () => {
    const { store, primary, advance } = setup()
    primary.mode = 'throw'
    await store.update('k', inc, [], 60)
    advance(100)
    expect(await store.update('k', inc, [], 60)).toEqual([2])
    await flush()
    expect(primary.pings).toBe(1)
    expect(store.state).toBe('down')
    await expect(store.ping()).rejects.toBeInstanceOf(StoreError)
  })

  it("keeps a key's unusable data that key's problem: the breaker stays closed", async () => {
    const { store, primary, fallback, changes } = setup()
    await store.update('other', inc, [], 60)
    const before = { bad: store.epochOf('bad'), other: store.epochOf('other') }
    primary.corrupt.add('bad')
    // That one call is decided by the fallback...
    expect(await store.update('bad', inc, [], 60)).toEqual([1])
    expect(fallback.calls).toBe(1)
    // ...and only that key's cached values are invalid.
    expect(store.epochOf('bad')).not.toBe(before.bad)
    expect(store.epochOf('other')).toBe(before.other)
    expect(store.state).toBe('up')
    expect(changes).toEqual([])
    // Every key, the bad one included, is back on the primary at once.
    expect(await store.update('other', inc, [], 60)).toEqual([2])
    expect(await store.update('bad', inc, [], 60)).toEqual([1])
    expect(primary.calls).toBe(3)
    expect(fallback.calls).toBe(1)
  })

  it("refuses only that key's call in closed mode when its data is unusable", async () => {
    const { store, primary } = setup('closed')
    primary.corrupt.add('bad')
    const error = await store.update('bad', inc, [], 60).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(StoreUnavailableError)
    expect((error as StoreError).cause).toBeInstanceOf(StoreKeyError)
    expect(store.state).toBe('up')
    expect(await store.update('good', inc, [], 60)).toEqual([1])
    expect(await store.update('bad', inc, [], 60)).toEqual([1])
  })

  it('gives a reply that arrived while the event loop was busy one more turn before its deadline fails', async () => {
    // The primary answers through a pipe (a child process echoing), as a socket would.
    const echo = spawn('cat', [], { stdio: ['pipe', 'pipe', 'ignore'] })
    const waiting: (() => void)[] = []
    echo.stdout.on('data', () => {
      waiting.shift()?.()
    })
    const primary = new FlakyStore(Date.now)
    const answering: Store = {
      name: 'echo',
      update: (...args) =>
        new Promise((resolve) => {
          waiting.push(() => {
            resolve(primary.update(...args))
          })
          echo.stdin.write('x')
        }),
      ping: () => Promise.resolve(),
      close: () => Promise.resolve(),
    }
    const store = new FailoverStore({
      primary: answering,
      fallback: new MapStore(Date.now),
      deadlineMs: 20,
    })
    try {
      for (let i = 0; i < 3; i++) {
        const answer = store.update('k', inc, [], 60)
        // This process is busy for five deadlines; the echo answers at once meanwhile.
        const until = performance.now() + 100
        while (performance.now() < until) {
          // busy
        }
        expect(await answer).toEqual([i + 1])
        expect(store.state).toBe('up')
      }
    } finally {
      echo.kill()
    }
  })

  it('reports the state through ping, and a ping never cuts a back-off short', async () => {
    const { store, primary, advance, changes } = setup()
    primary.mode = 'fail'
    await expect(store.ping()).rejects.toBeInstanceOf(StoreError)
    expect(store.state).toBe('down')
    primary.mode = 'ok'
    // A health check within the back-off reports the state without asking the primary...
    const pings = primary.pings
    await expect(store.ping()).rejects.toThrow(/down, the next probe is due in 100 ms/)
    expect(primary.pings).toBe(pings)
    expect(store.state).toBe('down')
    // ...and once a probe is due, it is that probe.
    advance(100)
    await store.ping()
    expect(primary.pings).toBe(pings + 1)
    expect(store.state).toBe('up')
    expect(changes.map((c) => c.state)).toEqual(['down', 'up'])
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

describe('a limiter on a FailoverStore', () => {
  /** Admitted decisions of `count` requests from `id`, one at a time. */
  async function admitted(
    limiter: ReturnType<typeof createLimiter>,
    id: string,
    count: number,
  ): Promise<number> {
    let n = 0
    for (let i = 0; i < count; i++) {
      if ((await limiter.consume(id)).allowed) {
        n++
      }
    }
    return n
  }

  it('never reuses counts cached before an outage, or during it, once the primary is back', async () => {
    const { store, primary, fallback, advance, changes } = setup()
    let t = 1_700_000_000_000
    const limiter = createLimiter({
      store,
      limit: 10,
      windowSeconds: 60,
      now: () => t,
      graceMs: 1000,
    })
    const later = (ms: number): void => {
      t += ms
      advance(ms)
    }
    // Up: 7 requests counted on the shared store, settled and cached.
    expect(await admitted(limiter, 'a', 6)).toBe(6)
    later(5000)
    expect(await admitted(limiter, 'a', 1)).toBe(1)
    later(5000)
    // Down: the local limiter decides alone, from its own (empty) counts, not on top of the
    // shared counts it had cached.
    primary.mode = 'fail'
    expect(await admitted(limiter, 'a', 12)).toBe(10)
    later(5000)
    expect(await admitted(limiter, 'a', 1)).toBe(0)
    expect(changes.map((c) => c.state)).toEqual(['down'])
    // Back: the shared store's 7 count again, and nothing the outage cached.
    primary.mode = 'ok'
    later(500)
    await limiter.consume('probe')
    await flush()
    expect(changes.map((c) => c.state)).toEqual(['down', 'up'])
    later(5000)
    expect(await admitted(limiter, 'a', 6)).toBe(3)
    expect(fallback.calls).toBeGreaterThan(0)
  })

  it("reads a requester's window from the primary again after one call went to the fallback", async () => {
    const { store, primary } = setup()
    let t = 1_700_000_000_000
    // Another process counted 8 requests of 'a' on the shared store two minutes ago.
    const elsewhere = createLimiter({ store: primary, limit: 10, windowSeconds: 600, now: () => t })
    expect(await admitted(elsewhere, 'a', 8)).toBe(8)
    t += 120_000
    const limiter = createLimiter({ store, limit: 10, windowSeconds: 600, now: () => t })
    // This process's first decision for 'a' meets unusable data: the fallback decides it, from
    // its own counts, which must not be cached as the requester's window.
    primary.corrupt.add(limiter.prefix + 'a')
    expect(await admitted(limiter, 'a', 1)).toBe(1)
    t += 5000
    expect(await admitted(limiter, 'a', 10)).toBe(2)
    expect(store.state).toBe('up')
  })
})

/** Two FlakyStores as the shards of one store: keys ending in `a` live on `a`, others on `b`. */
class ShardedStore implements Store {
  readonly name = 'pool'
  readonly shards = ['a', 'b']
  readonly parts: Record<string, FlakyStore>
  readonly pinged: (string | undefined)[] = []
  constructor(now: () => number) {
    this.parts = { a: new FlakyStore(now), b: new FlakyStore(now) }
  }
  shardOf(key: string): string {
    if (key.endsWith('!')) {
      throw new RangeError('cannot place this key')
    }
    return key.endsWith('a') ? 'a' : 'b'
  }
  update(...args: Parameters<Store['update']>): Promise<number[]> {
    return (this.parts[this.shardOf(args[0])] as FlakyStore).update(...args)
  }
  remove(key: string, slots: readonly number[]): Promise<void> {
    return (this.parts[this.shardOf(key)] as FlakyStore).remove(key, slots)
  }
  ping(shard?: string): Promise<void> {
    this.pinged.push(shard)
    return shard === undefined
      ? Promise.all([this.parts.a?.ping(), this.parts.b?.ping()]).then(() => undefined)
      : (this.parts[shard] as FlakyStore).ping()
  }
  close(): Promise<void> {
    return Promise.resolve()
  }
}

function sharded(mode: 'open' | 'closed' = 'open') {
  const parts = breakerOn(mode, (now) => new ShardedStore(now))
  const a = parts.primary.parts.a as FlakyStore
  const b = parts.primary.parts.b as FlakyStore
  return { ...parts, a, b }
}

describe('FailoverStore over a store of several shards', () => {
  it("sends only a failed shard's keys to the fallback; the other shard's keys stay shared", async () => {
    const { store, a, b, fallback, changes } = sharded()
    a.mode = 'fail'
    expect(await store.update('xa', inc, [], 60)).toEqual([1])
    expect(fallback.calls).toBe(1)
    expect(changes).toEqual([
      {
        state: 'down',
        shard: 'a',
        error: expect.any(StoreError) as unknown,
        retryInMs: 100,
        down: 1,
        shards: 2,
      },
    ])
    expect(store.state).toBe('degraded')
    // Keys of b keep counting on b, across many calls, while a is down.
    for (let i = 0; i < 5; i++) {
      await store.update('xb', inc, [], 60)
    }
    expect(b.counters.size).toBe(1)
    expect([...b.counters.values()][0]?.value).toBe(5)
    expect(fallback.calls).toBe(1)
    expect(store.shardStates()).toEqual([
      { shard: 'a', state: 'down', error: 'flaky store: connection refused', retryInMs: 100 },
      { shard: 'b', state: 'up' },
    ])
  })

  it('probes only the failed shard, and brings back only its keys', async () => {
    const { store, primary, a, fallback, changes, advance } = sharded()
    a.mode = 'fail'
    await store.update('xa', inc, [], 60)
    a.mode = 'ok'
    advance(100)
    // The due probe is made by the next call for any key of the failed shard.
    await store.update('ya', inc, [], 60)
    await flush()
    expect(primary.pinged).toEqual(['a'])
    expect(changes.map(({ state, shard, down }) => [state, shard, down])).toEqual([
      ['down', 'a', 1],
      ['up', 'a', 0],
    ])
    const before = fallback.calls
    await store.update('za', inc, [], 60)
    expect(fallback.calls).toBe(before)
    expect(store.state).toBe('up')
  })

  it('keeps the epoch of keys on healthy shards, so limiters keep what they cached', async () => {
    const { store, a } = sharded()
    const epochA = store.epochOf('xa')
    const epochB = store.epochOf('xb')
    a.mode = 'fail'
    await store.update('xa', inc, [], 60)
    expect(store.epochOf('xa')).not.toBe(epochA)
    expect(store.epochOf('xb')).toBe(epochB)
  })

  it('refuses only the failed shard’s keys in closed mode', async () => {
    const { store, a } = sharded('closed')
    a.mode = 'fail'
    await expect(store.update('xa', inc, [], 60)).rejects.toBeInstanceOf(StoreUnavailableError)
    await expect(store.update('ya', inc, [], 60)).rejects.toBeInstanceOf(StoreUnavailableError)
    expect(await store.update('xb', inc, [], 60)).toEqual([1])
  })

  it('pings every shard, names the ones that fail, and says down only when all are', async () => {
    const { store, a, b } = sharded()
    await store.ping()
    a.mode = 'fail'
    await expect(store.ping()).rejects.toThrow(/1 of 2 shards failing: a \(/)
    expect(store.state).toBe('degraded')
    await store.ping('b')
    b.mode = 'fail'
    await expect(store.ping()).rejects.toThrow(/2 of 2 shards failing/)
    expect(store.state).toBe('down')
    await expect(store.ping('c')).rejects.toThrow(/no shard named "c"/)
  })

  it('decides a key the primary cannot place with the fallback, once, and opens no breaker', async () => {
    const { store, fallback, changes } = sharded()
    expect(await store.update('x!', inc, [], 60)).toEqual([1])
    expect(fallback.calls).toBe(1)
    expect(changes).toEqual([])
    expect(store.state).toBe('up')
  })

  it('refuses a primary with several shards and no shardOf, or shards named twice', () => {
    const fallback = new MapStore(Date.now)
    const noShardOf = Object.assign(new MapStore(Date.now), { shards: ['a', 'b'] })
    expect(() => new FailoverStore({ primary: noShardOf, fallback })).toThrow(ConfigError)
    const twice = new ShardedStore(Date.now)
    Object.assign(twice, { shards: ['a', 'a'] })
    expect(() => new FailoverStore({ primary: twice, fallback })).toThrow(/primary/)
  })
})

describe('a limiter on a FailoverStore, with requesters blocked on local counts', () => {
  it('brings them back to the shared counts at the first decision after the shard is back', async () => {
    const { store, primary, changes, advance } = setup()
    let t = 1_700_000_000_000
    const limiter = createLimiter({ store, limit: 2, windowSeconds: 600, now: () => t })
    const later = (ms: number): void => {
      t += ms
      advance(ms)
    }
    primary.mode = 'fail'
    // Down: the local counts admit 2 and block the third, a denial the limiter then remembers.
    expect((await limiter.consume('a')).allowed).toBe(true)
    expect((await limiter.consume('a')).allowed).toBe(true)
    expect((await limiter.consume('a')).allowed).toBe(false)
    const calls = primary.calls
    primary.mode = 'ok'
    later(100)
    // A remembered denial makes no store call, yet asks for the epoch: the due probe is made.
    expect((await limiter.consume('a')).allowed).toBe(false)
    expect(primary.calls).toBe(calls)
    await flush()
    expect(changes.map((c) => c.state)).toEqual(['down', 'up'])
    // The next decision reads the shared counts (empty here: nothing reached them).
    expect((await limiter.consume('a')).allowed).toBe(true)
    expect(primary.calls).toBe(calls + 1)
  })
})

describe('FailoverStore.remove', () => {
  it('removes the counters from the primary and from the fallback', async () => {
    const { store, primary, fallback } = setup()
    await store.update('k', inc, [], 60)
    await fallback.update('k', inc, [], 60)
    await store.remove('k', [1])
    expect(primary.counters.size).toBe(0)
    expect(fallback.counters.size).toBe(0)
  })

  it("fails the key's shard when the primary fails or misses the deadline, and rejects", async () => {
    for (const mode of ['fail', 'hang'] as const) {
      const { store, primary, fallback, changes } = setup()
      await fallback.update('k', inc, [], 60)
      primary.mode = mode
      await expect(store.remove('k', [1])).rejects.toBeInstanceOf(StoreError)
      expect(store.state).toBe('down')
      expect(changes).toMatchObject([{ state: 'down' }])
      // The fallback, which decides for the key meanwhile, has forgotten it.
      expect(fallback.counters.size).toBe(0)
    }
  })

  it('rejects while the shard is down, sending nothing to it, and removes from the fallback', async () => {
    const { store, a, b, fallback } = sharded()
    a.mode = 'fail'
    await store.update('xa', inc, [], 60)
    await store.update('xb', inc, [], 60)
    const calls = a.calls
    await expect(store.remove('xa', [1])).rejects.toThrow(/a down/)
    expect(a.calls).toBe(calls)
    expect(fallback.counters.size).toBe(0)
    // The other shard's keys are removed as usual.
    await store.remove('xb', [1])
    expect(b.counters.size).toBe(0)
    expect(store.shardStates().map(({ state }) => state)).toEqual(['down', 'up'])
  })

  it('rejects with the unsupported code when the primary has no remove, keeping it up', async () => {
    const { store } = breakerOn('open', (now) => {
      const inner = new MapStore(now)
      return {
        name: 'old',
        update: inner.update.bind(inner),
        ping: () => Promise.resolve(),
        close: () => Promise.resolve(),
      } satisfies Store
    })
    await expect(store.remove('k', [1])).rejects.toMatchObject({
      code: 'ERR_SLIDELIMIT_STORE_UNSUPPORTED',
    })
    expect(store.state).toBe('up')
  })
})
