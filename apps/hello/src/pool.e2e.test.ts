// A pool of three memcached servers under two server processes that list them in different
// orders, one server partitioned and then healed. Checked from memcached's own data and stats:
// the requesters of the healthy servers never leave their shared limit, and the requesters of
// the partitioned server come back to it within their breaker's next probe plus one deadline.

import { MemcacheStore } from '@slidelimit/store-memcache'
import {
  memcachedAvailable,
  spawnFaultProxy,
  startMemcached,
} from '@slidelimit/store-memcache/testing'
import type { FaultPath, Memcached } from '@slidelimit/store-memcache/testing'
import { afterEach, describe, expect, it } from 'vitest'
import { startServer } from './server.test-helpers.js'
import type { RunningServer } from './server.test-helpers.js'

const available = memcachedAvailable()
const DEADLINE_MS = 50
/** The slowest answer allowed: the deadline, plus room for a shared machine. */
const BOUND_MS = DEADLINE_MS + 500
/** The hello app's key prefix for its default policy (100 per 3600 s, 1 s buckets). */
const POLICY = 'w3600b1:'
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const cleanups: (() => Promise<unknown>)[] = []
afterEach(async () => {
  await Promise.all(cleanups.splice(0).map((cleanup) => cleanup()))
})

interface Answer {
  status: number
  /** The `r` (remaining) of the RateLimit field. */
  remaining: number
  ms: number
  at: number
}

async function request(server: RunningServer, client: string): Promise<Answer> {
  const started = performance.now()
  const res = await fetch(server.url, { headers: { 'x-forwarded-for': client } })
  await res.arrayBuffer()
  const remaining = Number(/;r=(\d+);/.exec(res.headers.get('ratelimit') ?? '')?.[1] ?? NaN)
  return { status: res.status, remaining, ms: performance.now() - started, at: Date.now() }
}

interface ServerHealth {
  state: string
  retryInMs?: number
}

async function health(
  server: RunningServer,
  path = '/healthz',
): Promise<{
  status: number
  body: { store: { state: string; servers: Record<string, ServerHealth> } }
}> {
  const res = await fetch(`${server.url}${path}`)
  return { status: res.status, body: (await res.json()) as never }
}

/** Each requester's admitted count held by each server (fine counters summed), from memcached. */
async function heldBy(
  pool: Memcached[],
  bases: Map<string, string>,
): Promise<Map<string, Record<string, number>>> {
  const held = new Map<string, Record<string, number>>()
  for (const server of pool) {
    for (const [key, value] of await server.items('sl:')) {
      const colon = key.lastIndexOf(':')
      const client = bases.get(key.slice(0, colon + 1))
      if (client !== undefined && !key.slice(colon + 1).startsWith('-')) {
        const counts = held.get(client) ?? {}
        counts[server.address] = (counts[server.address] ?? 0) + Number(value)
        held.set(client, counts)
      }
    }
  }
  return held
}

/** Each server's count of counter operations, once it has stopped changing. */
async function settled(pool: Memcached[]): Promise<number[]> {
  let last = await Promise.all(pool.map((server) => server.operations()))
  for (;;) {
    await sleep(100)
    const now = await Promise.all(pool.map((server) => server.operations()))
    if (now.every((count, i) => count === last[i])) {
      return now
    }
    last = now
  }
}

describe.skipIf(!available)('the hello server on a pool of three memcached servers', () => {
  it('keeps the healthy servers shared through a partition of one, and returns to it in time', async () => {
    const pool = await Promise.all([0, 1, 2].map(() => startMemcached()))
    cleanups.push(() => Promise.all(pool.map((server) => server.stop())))
    const [a, b, c] = pool as [Memcached, Memcached, Memcached]
    const proxy: FaultPath = await spawnFaultProxy(c.address)
    cleanups.push(() => proxy.close())
    // The same three servers, listed in other orders; the third through the fault proxy.
    const lists = [
      `${a.address},${b.address},${proxy.address}`,
      `${proxy.address},${a.address},${b.address}`,
    ]
    const processes = await Promise.all(
      lists.map((list) =>
        startServer({
          STORE_BACKEND: 'memcache',
          MEMCACHE_CONNECTION_STRING: list,
          MEMCACHE_TIMEOUT_MS: String(DEADLINE_MS),
          TRUST_PROXY: '1',
          LOG_LEVEL: 'info',
        }),
      ),
    )
    cleanups.push(() => Promise.all(processes.map((server) => server.stop('SIGKILL'))))
    const [one, two] = processes as [RunningServer, RunningServer]

    // Where each client lives, as any process of the pool places it.
    const placement = new MemcacheStore({ servers: lists[0] })
    const serverOf = new Map<string, string>()
    const bases = new Map<string, string>()
    // Six clients on each healthy server, two on the one to be partitioned.
    const wanted = new Map([
      [a.address, 6],
      [b.address, 6],
      [proxy.address, 2],
    ])
    const clients = { healthy: [] as string[], partitioned: [] as string[] }
    for (let i = 1; [...wanted.values()].some((left) => left > 0); i++) {
      const client = `10.77.${i >> 8}.${i & 255}`
      const server = placement.shardOf(POLICY + client)
      const left = wanted.get(server) ?? 0
      if (left > 0) {
        wanted.set(server, left - 1)
        ;(server === proxy.address ? clients.partitioned : clients.healthy).push(client)
        serverOf.set(client, server)
        bases.set(placement.keyBase(POLICY + client), client)
      }
    }
    await placement.close()
    const [mine, theirs] = clients.partitioned as [string, string]
    const answers: Answer[] = []

    // Before: 30 requests each for the partitioned server's two clients, counted on it.
    for (let i = 0; i < 30; i++) {
      answers.push(await request(one, mine), await request(two, theirs))
    }
    expect(answers.every((answer) => answer.status === 200)).toBe(true)

    // Partition: nothing reaches the third server and nothing comes back. (Once the calls in
    // flight have landed: a decision may answer before its increments are acknowledged.)
    const before = await settled(pool)
    await proxy.set({ kind: 'silent' })
    // Each process finds out with its first call there, and opens that server's breaker only.
    for (const [server, client] of [
      [one, mine],
      [two, theirs],
    ] as const) {
      answers.push(await request(server, client))
      await server.waitForOutput(/memcached is down on one server/)
    }
    // Meanwhile: 150 requests from each healthy client, alternating between the processes, in
    // parallel, and 60 more from each partitioned client (decided locally).
    const admitted = new Map(clients.healthy.map((client) => [client, 0]))
    await Promise.all([
      ...clients.healthy.map(async (client) => {
        for (let i = 0; i < 150; i++) {
          const answer = await request(i % 2 === 0 ? one : two, client)
          answers.push(answer)
          if (answer.status === 200) {
            admitted.set(client, (admitted.get(client) ?? 0) + 1)
          }
        }
      }),
      ...(
        [
          [one, mine],
          [two, theirs],
        ] as const
      ).map(async ([server, client]) => {
        for (let i = 0; i < 59; i++) {
          answers.push(await request(server, client))
        }
      }),
    ])
    expect([...admitted.values()]).toEqual(clients.healthy.map(() => 100))
    // (Read before the items are: reading them is a get each.)
    const during = await settled(pool)
    // From memcached itself: each healthy client's 100 are on its own server, and nowhere else.
    const held = await heldBy(pool, bases)
    for (const client of clients.healthy) {
      expect(held.get(client), client).toEqual({ [serverOf.get(client) as string]: 100 })
    }
    // The healthy servers counted through the partition; the partitioned one saw nothing.
    expect((during[0] as number) - (before[0] as number)).toBeGreaterThan(0)
    expect((during[1] as number) - (before[1] as number)).toBeGreaterThan(0)
    expect(during[2]).toBe(before[2])
    for (const server of processes) {
      const { status, body } = await health(server, '/readyz')
      expect(status).toBe(200)
      expect(body.store.state).toBe('degraded')
      expect(body.store.servers[proxy.address]?.state).toBe('down')
      expect(body.store.servers[a.address]?.state).toBe('up')
      expect(body.store.servers[b.address]?.state).toBe('up')
      // Only the partitioned server's breaker ever opened.
      expect(server.output()).not.toMatch(
        new RegExp(`memcached is down.*"server":"(${a.address}|${b.address})"`),
      )
    }

    // Heal at a moment when neither process's next probe is less than 150 ms away (a probe
    // that fires just before the heal fails, and the next one comes a back-off later).
    let probes: number[]
    for (;;) {
      const retry = await Promise.all(
        processes.map(
          async (server) =>
            (await health(server)).body.store.servers[proxy.address]?.retryInMs ?? 0,
        ),
      )
      if (retry.every((ms) => ms >= 150)) {
        probes = retry.map((ms) => Date.now() + ms)
        break
      }
      await sleep(20)
    }
    const healedAt = Date.now()
    await proxy.set({ kind: 'none' })
    // Each partitioned client, through its process, every 10 ms: local counts left it at most
    // 40 requests (it has 60 local ones), the shared count at 69 (it has 30 shared ones).
    const back = await Promise.all(
      (
        [
          [one, mine],
          [two, theirs],
        ] as const
      ).map(async ([server, client]) => {
        for (;;) {
          const answer = await request(server, client)
          answers.push(answer)
          if (answer.status === 200 && answer.remaining > 40) {
            expect(answer.remaining).toBe(69)
            return answer.at
          }
          expect(Date.now() - healedAt, server.output()).toBeLessThan(10_000)
          await sleep(10)
        }
      }),
    )
    const lateMs = back.map((at, i) => at - Math.max(healedAt, probes[i] as number))
    process.stdout.write(
      `\nPool of 3, one partitioned then healed (deadline ${DEADLINE_MS} ms): back on the healed server ${back
        .map(
          (at, i) =>
            `${at - healedAt} ms after healing (next probe was due ${(probes[i] as number) - healedAt} ms after)`,
        )
        .join('; ')}\n`,
    )
    for (const ms of lateMs) {
      // Within the next probe plus one deadline, plus room for the two requests it takes to
      // see it (the first after the probe is due starts the probe and is decided locally).
      expect(ms, one.output()).toBeLessThanOrEqual(DEADLINE_MS + 100)
    }
    // From memcached: each partitioned client's 30 shared requests plus its first one since.
    const after = await heldBy(pool, bases)
    expect(after.get(mine)).toEqual({ [c.address]: 31 })
    expect(after.get(theirs)).toEqual({ [c.address]: 31 })

    expect(answers.filter((answer) => ![200, 429].includes(answer.status))).toEqual([])
    expect(Math.max(...answers.map((answer) => answer.ms))).toBeLessThan(BOUND_MS)
    for (const server of processes) {
      expect(server.output()).not.toMatch(/"level":"error"/)
      await server.waitForOutput(/memcached is back on one server/)
    }
  })
})
