// End to end with memcached: real server processes sharing one real memcached.

import { FailoverStore, createLimiter } from '@slidelimit/core'
import { MemcacheStore } from '@slidelimit/store-memcache'
import { memcachedAvailable, startMemcached } from '@slidelimit/store-memcache/testing'
import type { Memcached } from '@slidelimit/store-memcache/testing'
import { afterEach, describe, expect, it } from 'vitest'
import { MemoryStore } from '@slidelimit/store-memory'
import { createApp } from './app.js'
import { loadConfig } from './config.js'
import { Health } from './health.js'
import { createLogger } from './logger.js'
import { expectLoggedOncePerChange, startServer } from './server.test-helpers.js'
import type { RunningServer } from './server.test-helpers.js'

const available = memcachedAvailable()
const running: { stop: (signal?: NodeJS.Signals) => Promise<unknown> }[] = []
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop('SIGKILL')))
})

async function memcached(options?: Parameters<typeof startMemcached>[0]): Promise<Memcached> {
  const m = await startMemcached(options)
  running.push(m)
  return m
}

async function app(cache: Memcached, env: Record<string, string> = {}): Promise<RunningServer> {
  const server = await startServer({
    STORE_BACKEND: 'memcache',
    MEMCACHE_CONNECTION_STRING: cache.address,
    LOG_LEVEL: 'info',
    ...env,
  })
  running.push(server)
  return server
}

async function health(server: RunningServer): Promise<unknown> {
  return (await fetch(`${server.url}/healthz`)).json()
}

/** /healthz once the background check has read every server's stats (at start: within 1 s). */
async function healthWithStats(server: RunningServer): Promise<unknown> {
  const started = Date.now()
  for (;;) {
    const body = (await health(server)) as { store: { servers: Record<string, object> } }
    if (Object.values(body.store.servers).every((status) => 'evictions' in status)) {
      return body
    }
    expect(Date.now() - started, server.output()).toBeLessThan(3000)
    await sleep(50)
  }
}

describe.skipIf(!available)('the hello app in this process, with memcached', () => {
  it('answers 200 then 429, never 500, while its request ids cross 2^31 and 2^32', async () => {
    const cache = await memcached()
    for (const firstRequestId of [2 ** 31 - 20, 2 ** 32 - 20]) {
      const config = loadConfig({
        STORE_BACKEND: 'memcache',
        RATE_LIMIT: '30',
        LOG_LEVEL: 'silent',
      })
      const events: string[] = []
      const primary = new MemcacheStore({
        servers: cache.address,
        prefix: `ids${firstRequestId}:`,
        firstRequestId,
        onEvent: (event) => events.push(event.type),
      })
      const changes: string[] = []
      const store = new FailoverStore({
        primary,
        fallback: new MemoryStore(),
        onStateChange: ({ state }) => changes.push(state),
      })
      const limiter = createLimiter({ store, limit: 30 })
      const app = createApp({
        config,
        policies: [{ name: 'default', limiter }],
        health: new Health({ logger: createLogger('silent') }),
        logger: createLogger('silent'),
      })
      const statuses: number[] = []
      for (let i = 0; i < 40; i++) {
        const res = await app.request(
          '/',
          {},
          { incoming: { socket: { remoteAddress: '203.0.113.5' } } },
        )
        statuses.push(res.status)
      }
      expect(changes).toEqual([])
      expect(statuses).toEqual([...Array<number>(30).fill(200), ...Array<number>(10).fill(429)])
      expect(events).toEqual(['up'])
      await store.close()
    }
  })
})

describe.skipIf(!available)('the hello server with STORE_BACKEND=memcache', () => {
  it('shares one limit between two processes', async () => {
    const cache = await memcached()
    const [a, b] = await Promise.all([app(cache), app(cache)])
    for (let i = 0; i < 100; i++) {
      const res = await fetch((i % 2 === 0 ? a : b).url)
      expect(res.status).toBe(200)
      expect(res.headers.get('ratelimit')).toMatch(new RegExp(`^"default";r=${99 - i};`))
    }
    for (const server of [a, b]) {
      const res = await fetch(server.url)
      expect(res.status).toBe(429)
      expect(await res.text()).toMatch(/^Rate limit exceeded\. Try again in #\d+ seconds$/)
    }
    expect(await healthWithStats(a)).toEqual({
      status: 'ok',
      ready: true,
      store: {
        backend: 'memcache',
        state: 'up',
        failureMode: 'open',
        servers: { [cache.address]: { state: 'up', evictions: 0 } },
      },
    })
  })

  it('admits exactly the limit of 900 concurrent requests from one client across three processes', async () => {
    const cache = await memcached()
    // The default deadline (50 ms): a burst is when the shared limit matters, and a busy
    // process must not take its own lag for an outage.
    const servers = await Promise.all([1, 2, 3].map(() => app(cache)))
    const statuses = await Promise.all(
      Array.from({ length: 900 }, (_, i) =>
        fetch((servers[i % 3] as RunningServer).url).then((r) => r.status),
      ),
    )
    // First: did any process decide alone? That is allowed in open mode, but not the point here.
    for (const server of servers) {
      expect(server.output(), `a process failed over:\n${server.output()}`).not.toMatch(
        /memcached is down|memcached connection lost/,
      )
    }
    expect(statuses.filter((s) => s !== 200 && s !== 429)).toEqual([])
    expect(statuses.filter((s) => s === 200)).toHaveLength(100)
    // Once the dust settles nothing more gets in.
    expect((await fetch((servers[0] as RunningServer).url)).status).toBe(429)
  })

  it('keeps limiting with a window over 30 days (counters sent with an absolute expiry)', async () => {
    const cache = await memcached()
    const server = await app(cache, {
      RATE_WINDOW_SECONDS: '2678400',
      RATE_BUCKET_SECONDS: '3600',
      RATE_LIMIT: '3',
    })
    const statuses = []
    for (let i = 0; i < 6; i++) {
      statuses.push((await fetch(server.url)).status)
    }
    expect(statuses).toEqual([200, 200, 200, 429, 429, 429])
    const denied = await fetch(server.url)
    expect(Number(denied.headers.get('retry-after'))).toBeGreaterThan(2678400 - 3600)
    // Its counters are in memcached, alive.
    expect((await cache.stats()).curr_items).toBeGreaterThan(0)
    expect(server.output()).not.toMatch(/memcached is down/)
  })

  it('keeps answering quickly when memcached dies, and uses it again once it is back', async () => {
    const cache = await memcached()
    const server = await app(cache, { RATE_LIMIT: '1000' })
    expect((await fetch(server.url)).status).toBe(200)
    await cache.stop()
    const slowest: number[] = []
    for (let i = 0; i < 60; i++) {
      const started = performance.now()
      const res = await fetch(server.url)
      slowest.push(performance.now() - started)
      expect(res.status).toBe(200)
      expect(await res.text()).toBe('Hello, world!')
    }
    // Deadline 50 ms, plus a few ms; generous for a shared machine.
    expect(Math.max(...slowest)).toBeLessThan(500)
    expect(await health(server)).toMatchObject({ store: { backend: 'memcache', state: 'down' } })
    await server.waitForOutput(/memcached is down: deciding with local in-memory limits/)
    await server.waitForOutput(/"msg":"memcached connection lost"/)

    const again = await memcached(cache.port)
    const started = Date.now()
    // The back-off ceiling is 5 s: requests probe memcached again within it.
    while (Date.now() - started < 8000) {
      await fetch(server.url)
      if (((await again.stats()).curr_items ?? 0) > 0) {
        break
      }
      await sleep(100)
    }
    expect((await again.stats()).curr_items).toBeGreaterThan(0)
    expect(await health(server)).toMatchObject({ store: { state: 'up' } })
    await server.waitForOutput(/memcached is back/)
    await server.waitForOutput(/"msg":"memcached connection restored"/)
    // Each change of the connection is logged once, however many requests failed meanwhile.
    expect(expectLoggedOncePerChange(server.output())).toContain('restored')
  })

  it('answers 503 while memcached is down when STORE_FAILURE_MODE=closed', async () => {
    const cache = await memcached()
    const server = await app(cache, { STORE_FAILURE_MODE: 'closed' })
    expect((await fetch(server.url)).status).toBe(200)
    await cache.stop()
    const res = await fetch(server.url)
    expect(res.status).toBe(503)
    expect(await res.text()).toBe('Rate limiting is unavailable. Try again later.')
    // Alive, but not ready: a load balancer stops sending it requests it can only refuse.
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200)
    const notReady = await fetch(`${server.url}/readyz`)
    expect(notReady.status).toBe(503)
    expect(await notReady.json()).toMatchObject({
      status: 'ok',
      ready: false,
      reason: 'every memcached server is down and STORE_FAILURE_MODE=closed',
      store: { state: 'down', servers: { [cache.address]: { state: 'down' } } },
    })
    // Ready again within a second or two once the background check's probe finds memcached
    // back (back-off 250 ms, checked once a second); alive all along.
    await memcached(cache.port)
    const started = Date.now()
    while ((await fetch(`${server.url}/readyz`)).status !== 200) {
      expect((await fetch(`${server.url}/healthz`)).status).toBe(200)
      expect(Date.now() - started, server.output()).toBeLessThan(2500)
      await sleep(50)
    }
    expect((await fetch(`${server.url}/healthz`)).status).toBe(200)
    expect((await fetch(server.url)).status).toBe(200)
  })

  it('shows memcached evictions on /healthz and logs them when they grow', async () => {
    const cache = await memcached({ megabytes: 2, args: ['-I', '512k'] })
    const server = await app(cache)
    expect(await healthWithStats(server)).toMatchObject({
      store: { servers: { [cache.address]: { evictions: 0 } } },
    })
    // More items than 2 MB hold: memcached evicts the oldest, as it would counters.
    for (let filled = 0; ((await cache.stats()).evictions ?? 0) === 0; filled += 2000) {
      expect(filled).toBeLessThan(200_000)
      const sets = Array.from(
        { length: 2000 },
        (_, i) => `set spray-${filled + i} 0 0 100 noreply\r\n${'x'.repeat(100)}`,
      )
      await cache.command(`${sets.join('\r\n')}\r\nmn`)
    }
    await server.waitForOutput(/"msg":"memcached evicted counters for lack of memory/)
    const body = (await health(server)) as {
      store: { servers: Record<string, { evictions: number }> }
    }
    expect(body.store.servers[cache.address]?.evictions).toBeGreaterThan(0)
  })

  it('starts while memcached is unreachable and serves from local limits', async () => {
    const cache = await memcached()
    await cache.stop()
    const server = await app(cache, { RATE_LIMIT: '2' })
    expect((await fetch(server.url)).status).toBe(200)
    expect((await fetch(server.url)).status).toBe(200)
    expect((await fetch(server.url)).status).toBe(429)
  })

  it('closes its memcached connections on SIGTERM and exits 0', async () => {
    const cache = await memcached()
    // memcached's own list of connections, without the one asking.
    expect(await cache.clients()).toBe(0)
    const server = await app(cache, { MEMCACHE_TIMEOUT_MS: '2000' })
    expect((await fetch(server.url)).status).toBe(200)
    expect(await cache.clients(), server.output()).toBe(1)
    expect(await server.stop('SIGTERM')).toBe(0)
    expect(server.output()).toContain('"msg":"stopped"')
    expect(await cache.clients()).toBe(0)
  })
})
