import { FailoverStore, StoreError } from '@slidelimit/core'
import type { Store } from '@slidelimit/core'
import { MemoryStore } from '@slidelimit/store-memory'
import { describe, expect, it } from 'vitest'
import { Health } from './health.js'
import { createLogger } from './logger.js'

/** Two servers whose pings and stats a test controls. */
function pool() {
  const down = new Set<string>()
  const evictions: Record<string, number> = { 'a:1': 0, 'b:1': 0 }
  const pids: Record<string, string> = { 'a:1': '100', 'b:1': '200' }
  const clock = { t: 1_700_000_000_000 }
  const started: Record<string, number> = {
    'a:1': clock.t - 86_400_000,
    'b:1': clock.t - 3_600_000,
  }
  const primary: Store = {
    name: 'memcache',
    shards: ['a:1', 'b:1'],
    shardOf: (key) => (key.startsWith('a') ? 'a:1' : 'b:1'),
    update: () => Promise.resolve([]),
    ping: (server?: string) =>
      [...(server === undefined ? ['a:1', 'b:1'] : [server])].some((s) => down.has(s))
        ? Promise.reject(new StoreError('memcache', 'connection refused'))
        : Promise.resolve(),
    close: () => Promise.resolve(),
  }
  const stats = {
    stats: (server: string) =>
      Promise.resolve({
        [server]: {
          evictions: String(evictions[server]),
          pid: pids[server] as string,
          time: String(Math.floor(clock.t / 1000)),
          uptime: String(Math.floor((clock.t - (started[server] as number)) / 1000)),
        },
      }),
  }
  const lines: string[] = []
  const logger = createLogger('info', (line) => lines.push(line))
  const now = (): number => clock.t
  const make = (mode: 'open' | 'closed') =>
    new Health({
      logger,
      now,
      memcache: {
        failover: new FailoverStore({ primary, fallback: new MemoryStore(), mode, now }),
        stats,
      },
    })
  return { down, evictions, pids, started, lines, make, clock }
}

describe('Health', () => {
  it('reports each server, and logs evictions when they grow, once a minute at most', async () => {
    const { evictions, pids, started, lines, make, clock } = pool()
    // Evictions from before this process started are shown, not logged again.
    evictions['a:1'] = 5000
    const health = make('open')
    await health.refresh()
    expect(health.report()).toEqual({
      status: 'ok',
      ready: true,
      store: {
        backend: 'memcache',
        state: 'up',
        failureMode: 'open',
        servers: {
          'a:1': { state: 'up', evictions: 5000 },
          'b:1': { state: 'up', evictions: 0 },
        },
      },
    })
    expect(lines).toEqual([])
    const tick = async (ms = 1000): Promise<void> => {
      clock.t += ms
      await health.refresh()
    }
    evictions['b:1'] = 350
    await tick()
    await tick()
    // Growing every second of a spray: no new line within the minute...
    for (let second = 1; second <= 58; second++) {
      evictions['b:1'] += 2
      await tick()
    }
    expect(lines).toHaveLength(1)
    // ...then one with everything since.
    evictions['b:1'] += 2
    await tick()
    // The end of a spray, followed by quiet, is logged within a minute too.
    evictions['b:1'] += 7
    await tick()
    await tick(30_000)
    expect(lines).toHaveLength(2)
    await tick(30_000)
    // A restarted server counts from 0: what it evicted since is all new. Seen by its pid...
    pids['b:1'] = '201'
    started['b:1'] = clock.t
    evictions['b:1'] = 3
    await tick(60_000)
    // ...or, in a container where the pid is 1 again, by its start time, even when it has
    // already evicted more than before.
    started['b:1'] = clock.t
    evictions['b:1'] = 40
    await tick(60_000)
    const logged = lines.map((line) => JSON.parse(line) as Record<string, unknown>)
    expect(logged.map(({ server, evicted, evictions: total }) => [server, evicted, total])).toEqual(
      [
        ['b:1', 350, 350],
        ['b:1', 118, 468],
        ['b:1', 7, 475],
        ['b:1', 3, 3],
        ['b:1', 40, 40],
      ],
    )
    expect(logged[0]?.msg).toMatch(/limits of their requesters started over/)
    expect(health.report().store.servers?.['b:1']?.evictions).toBe(40)
  })

  it('is not ready in closed mode before its first check of memcached', async () => {
    const { make } = pool()
    const health = make('closed')
    expect(health.report()).toMatchObject({
      ready: false,
      reason: 'checking memcached (STORE_FAILURE_MODE=closed)',
    })
    await health.refresh()
    expect(health.report().ready).toBe(true)
    expect(make('open').report().ready).toBe(true)
  })

  it('stays ready in closed mode while some servers answer, and not when none does', async () => {
    const { down, make } = pool()
    const health = make('closed')
    down.add('a:1')
    await health.refresh()
    expect(health.report()).toMatchObject({
      ready: true,
      store: {
        state: 'degraded',
        servers: { 'a:1': { state: 'down', retryInMs: 250 }, 'b:1': { state: 'up' } },
      },
    })
    down.add('b:1')
    await health.refresh()
    expect(health.report()).toMatchObject({
      ready: false,
      reason: 'every memcached server is down and STORE_FAILURE_MODE=closed',
      store: { state: 'down' },
    })
  })

  it('stays ready in open mode with every server down: local limits decide', async () => {
    const { down, make } = pool()
    const health = make('open')
    down.add('a:1').add('b:1')
    await health.refresh()
    expect(health.report()).toMatchObject({ ready: true, store: { state: 'down' } })
  })

  it('is not ready once it is shutting down', () => {
    const health = new Health({ logger: createLogger('silent') })
    expect(health.report().ready).toBe(true)
    health.stop()
    expect(health.report()).toMatchObject({ ready: false, reason: 'shutting down' })
  })
})
