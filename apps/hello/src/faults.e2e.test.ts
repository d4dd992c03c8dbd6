// Faults on purpose, end to end: the real server process on a real memcached, behind a fault
// proxy that breaks the path. For each fault: no answer but 200 and 429 (503 in closed mode),
// no request slower than the deadline plus half a second, the right /healthz state, and the time
// the shared limit takes to come back once the path heals. The figures are printed at the end.

import {
  memcachedAvailable,
  spawnFaultProxy,
  startMemcached,
} from '@slidelimit/store-memcache/testing'
import type { Fault, FaultPath, Memcached } from '@slidelimit/store-memcache/testing'
import { afterAll, afterEach, describe, expect, it } from 'vitest'
import { expectLoggedOncePerChange, startServer } from './server.test-helpers.js'
import type { RunningServer } from './server.test-helpers.js'

const available = memcachedAvailable()
/** The default MEMCACHE_TIMEOUT_MS: the faults are met with the configuration users get. */
const DEADLINE_MS = 50
const BOUND_MS = DEADLINE_MS + 500
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const cleanups: (() => Promise<unknown>)[] = []
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()))
})

interface Report {
  fault: string
  answers: Record<string, number>
  slowestMs: number
  recoveryMs: number | undefined
}
const reports: Report[] = []
afterAll(() => {
  if (reports.length === 0) {
    return
  }
  const rows = reports.map(
    (r) =>
      `| ${r.fault} | ${Object.entries(r.answers)
        .map(([status, n]) => `${n} x ${status}`)
        .join(
          ', ',
        )} | ${r.slowestMs.toFixed(0)} | ${r.recoveryMs === undefined ? 'n/a' : r.recoveryMs.toFixed(0)} |`,
  )
  process.stdout.write(
    `\nFaults, end to end (deadline ${DEADLINE_MS} ms):\n| fault | answers | slowest ms | recovery ms |\n|---|---|---:|---:|\n${rows.join('\n')}\n`,
  )
})

async function memcached(options: Parameters<typeof startMemcached>[0] = {}): Promise<Memcached> {
  const started = await startMemcached(options)
  cleanups.push(() => started.stop())
  return started
}

/** A fault proxy in a process of its own: this process is busy sending the load. */
async function proxyFor(cache: Memcached): Promise<FaultPath> {
  const proxy = await spawnFaultProxy(cache.address)
  cleanups.push(() => proxy.close())
  return proxy
}

async function app(address: string, env: Record<string, string> = {}): Promise<RunningServer> {
  const server = await startServer({
    STORE_BACKEND: 'memcache',
    MEMCACHE_CONNECTION_STRING: address,
    TRUST_PROXY: '1',
    RATE_LIMIT: '1000',
    LOG_LEVEL: 'info',
    ...env,
  })
  cleanups.push(() => server.stop('SIGKILL'))
  return server
}

let clientSeq = 0

/** One request from `client`; its status and how long it took. */
async function request(
  server: RunningServer,
  client: string,
): Promise<{ status: number; ms: number }> {
  const started = performance.now()
  const res = await fetch(server.url, { headers: { 'x-forwarded-for': client } })
  await res.arrayBuffer()
  return { status: res.status, ms: performance.now() - started }
}

/** Requests from 4 lanes of distinct clients for `ms` milliseconds. */
async function drive(server: RunningServer, ms: number): Promise<{ status: number; ms: number }[]> {
  const until = performance.now() + ms
  const seen: { status: number; ms: number }[] = []
  await Promise.all(
    [0, 1, 2, 3].map(async (lane) => {
      while (performance.now() < until) {
        clientSeq++
        seen.push(await request(server, `10.${lane}.${(clientSeq >> 8) & 255}.${clientSeq & 255}`))
        await sleep(5)
      }
    }),
  )
  return seen
}

/** Milliseconds from now until a decision reaches memcached again (requests every 20 ms). */
async function recovery(
  server: RunningServer,
  cache: Memcached,
  since = performance.now(),
): Promise<number> {
  const base = await cache.operations()
  for (;;) {
    await request(server, `10.9.${(++clientSeq >> 8) & 255}.${clientSeq & 255}`)
    if ((await cache.operations()) > base) {
      return performance.now() - since
    }
    if (performance.now() - since > 10_000) {
      throw new Error(`no decision reached memcached within 10 s:\n${server.output()}`)
    }
    await sleep(20)
  }
}

async function healthState(server: RunningServer): Promise<{ status: number; state: unknown }> {
  const res = await fetch(`${server.url}/healthz`)
  const body = (await res.json()) as { store?: { state?: unknown } }
  return { status: res.status, state: body.store?.state }
}

/**
 * Waits until /healthz says the store is up. After a recovery it may still say down for one
 * back-off: a decision that missed its deadline on this loaded machine opens the breaker, and a
 * health check waits for the breaker's own probe (it never cuts a back-off short).
 */
async function healthy(server: RunningServer): Promise<void> {
  const started = performance.now()
  for (;;) {
    const { status, state } = await healthState(server)
    if (status === 200 && state === 'up') {
      return
    }
    if (performance.now() - started > 6000) {
      throw new Error(`/healthz still says ${String(state)} after 6 s:\n${server.output()}`)
    }
    await sleep(50)
  }
}

function tally(seen: { status: number }[]): Record<string, number> {
  const answers: Record<string, number> = {}
  for (const { status } of seen) {
    answers[status] = (answers[status] ?? 0) + 1
  }
  return answers
}

/** Checks the answers and the slowest request, and files the report. */
function check(
  fault: string,
  server: RunningServer,
  seen: { status: number; ms: number }[],
  recoveryMs: number | undefined,
  allowed = [200, 429],
): void {
  const answers = tally(seen)
  const slowestMs = Math.max(...seen.map((s) => s.ms))
  reports.push({ fault, answers, slowestMs, recoveryMs })
  expect(
    Object.keys(answers)
      .map(Number)
      .filter((status) => !allowed.includes(status)),
    server.output(),
  ).toEqual([])
  expect(slowestMs, `slowest request in "${fault}"`).toBeLessThan(BOUND_MS)
  expect(server.output()).not.toMatch(/"level":"error"/)
  expectLoggedOncePerChange(server.output())
}

/** A fault that lasts until healed: before, during (health down), healing, after. */
async function outage(
  fault: string,
  {
    start,
    heal,
    env = {},
    allowed,
  }: {
    start: (proxy: FaultPath) => Promise<void>
    heal: (proxy: FaultPath) => Promise<void>
    env?: Record<string, string>
    allowed?: number[]
  },
): Promise<RunningServer> {
  const cache = await memcached()
  const proxy = await proxyFor(cache)
  const server = await app(proxy.address, env)
  const seen = await drive(server, 200)
  await healthy(server)
  await start(proxy)
  seen.push(...(await drive(server, 1000)))
  expect((await healthState(server)).state).toBe('down')
  await server.waitForOutput(/memcached is down/)
  await heal(proxy)
  const recoveryMs = await recovery(server, cache)
  seen.push(...(await drive(server, 200)))
  await healthy(server)
  await server.waitForOutput(/memcached is back/)
  check(fault, server, seen, recoveryMs, allowed)
  return server
}

/** A fault that strikes once (the next reply): the breaker opens and closes by itself. */
async function strike(fault: string, set: Fault): Promise<void> {
  const cache = await memcached()
  const proxy = await proxyFor(cache)
  const server = await app(proxy.address)
  const seen = await drive(server, 200)
  const struck = performance.now()
  await proxy.set(set)
  seen.push(...(await drive(server, 300)))
  await server.waitForOutput(/memcached is down/)
  const recoveryMs = await recovery(server, cache, struck)
  seen.push(...(await drive(server, 200)))
  await healthy(server)
  check(fault, server, seen, recoveryMs)
}

describe.skipIf(!available)('the hello server under memcached faults', () => {
  it('a silent partition, then healing where only new connections work', async () => {
    const server = await outage('silent partition, healed for new connections', {
      start: (proxy) => proxy.set({ kind: 'silent' }),
      heal: (proxy) => proxy.set({ kind: 'none' }),
    })
    // Connections lost during the partition (each probe's, too) are logged once, not each.
    expect(expectLoggedOncePerChange(server.output())).toContain('restored')
  })

  it('connection refused, then listening again', async () => {
    await outage('connection refused', {
      start: (proxy) => proxy.set({ kind: 'refuse' }),
      heal: (proxy) => proxy.set({ kind: 'none' }),
    })
  })

  it('memcached slower than the deadline, then fast again', async () => {
    await outage('memcached slower than the deadline (300 ms)', {
      start: (proxy) => proxy.set({ kind: 'delay', ms: 300 }),
      heal: (proxy) => proxy.set({ kind: 'none' }),
    })
  })

  it('a silent partition in closed mode: 503 while it lasts, /healthz says down', async () => {
    await outage('silent partition, STORE_FAILURE_MODE=closed', {
      start: (proxy) => proxy.set({ kind: 'silent' }),
      heal: (proxy) => proxy.set({ kind: 'none' }),
      env: { STORE_FAILURE_MODE: 'closed' },
      allowed: [200, 429, 503],
    })
  })

  it('a reply cut in the middle of a batch', async () => {
    await strike('reply cut after 1 packet of a batch', { kind: 'cut', packets: 1 })
  })

  it('a connection reset in the middle of a batch', async () => {
    await strike('connection reset mid-batch (mid-packet)', { kind: 'reset', packets: 1, bytes: 9 })
  })

  it('memcached killed and restarted, its counters gone', async () => {
    const cache = await memcached()
    const server = await app(cache.address)
    const seen = await drive(server, 200)
    await cache.stop()
    seen.push(...(await drive(server, 1000)))
    expect((await healthState(server)).state).toBe('down')
    const again = await memcached(cache.port)
    const recoveryMs = await recovery(server, again)
    seen.push(...(await drive(server, 200)))
    await healthy(server)
    check('memcached killed, restarted empty', server, seen, recoveryMs)
  })

  it('out of memory (memcached -M, full), then room again', async () => {
    const cache = await memcached({ megabytes: 2, args: ['-M', '-I', '512k'] })
    const server = await app(cache.address)
    const seen = await drive(server, 200)
    await cache.fill()
    // A load balancer asks /healthz every 50 ms meanwhile.
    const checking = (async () => {
      const until = performance.now() + 1000
      while (performance.now() < until) {
        await fetch(`${server.url}/healthz`)
        await sleep(50)
      }
    })()
    seen.push(...(await drive(server, 1000)))
    await checking
    await server.waitForOutput(/memcached is down.*Out of memory/)
    // Its no-op probes pass while its creates fail: it may flap, but with a growing back-off
    // (250, 500, 1000 ms ... over this second), not every 250 ms, and health checks do not
    // cut the back-off short.
    expect(server.output().match(/memcached is down/g)?.length).toBeLessThanOrEqual(4)
    await cache.command('flush_all')
    const recoveryMs = await recovery(server, cache)
    seen.push(...(await drive(server, 200)))
    check('SERVER_ERROR out of memory (-M), then flush_all', server, seen, recoveryMs)
  })

  it('NOT_STORED on racing creates: sent again, decided by memcached, no failover', async () => {
    const cache = await memcached()
    const proxy = await proxyFor(cache)
    const server = await app(proxy.address, { LOG_LEVEL: 'debug', RATE_LIMIT: '5' })
    // The first request's two increments (fine and coarse) lose the race twice each: the third
    // attempt, the last the store makes, goes through.
    await proxy.set({ kind: 'not-stored', times: 4 })
    const client = '198.51.100.23'
    const minuteBefore = Math.floor(Date.now() / 60_000)
    const seen: { status: number; ms: number }[] = []
    for (let i = 0; i < 8; i++) {
      seen.push(await request(server, client))
    }
    const minuteAfter = Math.floor(Date.now() / 60_000)
    // One client, limit 5: exactly 5 admitted, all by memcached (a local decision would have
    // admitted more, from the fallback's own empty counts).
    expect(seen.map((s) => s.status)).toEqual([200, 200, 200, 200, 200, 429, 429, 429])
    await server.waitForOutput(/lost the race to create its counter and was sent again/)
    expect(server.output()).not.toMatch(/memcached is down|memcached connection lost|every time/)
    // memcached counted each admitted request once, in the client's coarse counters.
    const base = await sharedKeyBase(client)
    const minutes = [...new Set([minuteBefore, minuteAfter])]
    const reply = await cache.command(`get ${minutes.map((m) => `${base}${-1 - m}`).join(' ')}`)
    const values = [...reply.matchAll(/VALUE \S+ \d+ \d+\r\n(\d+)/g)].map((m) => Number(m[1]))
    expect(values.reduce((a, b) => a + b, 0)).toBe(5)
    check('NOT_STORED twice on each of 2 creates', server, seen, undefined)
  })

  it('a corrupt counter: only its requester decided locally, once; everyone else shared', async () => {
    for (const mode of ['open', 'closed']) {
      const cache = await memcached()
      const server = await app(cache.address, { STORE_FAILURE_MODE: mode, RATE_LIMIT: '3' })
      const victim = '203.0.113.66'
      const seen = [await request(server, victim)]
      // Every counter the victim could touch in the next few seconds holds text (the hourly
      // window has 60-second groups: its current and next group, its next seconds).
      const key = await sharedKeyBase(victim)
      const now = Math.floor(Date.now() / 1000)
      for (const slot of [
        now,
        now + 1,
        now + 2,
        -1 - Math.floor(now / 60),
        -2 - Math.floor(now / 60),
      ]) {
        await cache.command(`set ${key}${slot} 0 60 4\r\njunk`)
      }
      seen.push(await request(server, victim))
      // Bystanders: on the shared limit throughout (3 each, then 429), from memcached.
      const bystanders: number[] = []
      for (let i = 0; i < 4; i++) {
        bystanders.push((await request(server, '198.51.100.7')).status)
      }
      expect(bystanders).toEqual([200, 200, 200, 429])
      // The victim: that one request as the failure mode says; then memcached again.
      expect(seen[1]?.status).toBe(mode === 'open' ? 200 : 503)
      await server.waitForOutput(
        /deleted a memcached counter that held something other than a number/,
      )
      expect(server.output()).not.toMatch(/memcached is down|memcached connection lost/)
      check(
        `a corrupt counter (${mode} mode)`,
        server,
        seen,
        undefined,
        mode === 'open' ? [200, 429] : [200, 429, 503],
      )
    }
  })
})

/** The memcached key base of a client of the hello app's default policy. */
async function sharedKeyBase(client: string): Promise<string> {
  const { MemcacheStore } = await import('@slidelimit/store-memcache')
  const store = new MemcacheStore()
  const base = store.keyBase(`w3600b1:${client}`)
  await store.close()
  return base
}
