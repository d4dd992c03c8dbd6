// A pool of memcached servers: placement by the set of servers, limits shared by processes that
// list them in any order, few requesters moved when a server joins, and one server at a time.
// Checked against what memcached itself holds, not what the store believes.

import { ConfigError, StoreError, createLimiter } from '@slidelimit/core'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { MemcacheStore } from './memcache-store.js'
import { freePort, memcachedAvailable, startMemcached } from './testing/memcached.js'
import type { Memcached } from './testing/memcached.js'

const available = memcachedAvailable()

describe.skipIf(!available)('MemcacheStore on a pool of servers', () => {
  let pool: Memcached[]

  beforeAll(async () => {
    pool = await Promise.all([0, 1, 2, 3].map(() => startMemcached()))
  })

  afterAll(async () => {
    await Promise.all(pool.map((server) => server.stop()))
  })

  /** The first `count` servers' addresses. */
  const servers = (count: number): string[] => pool.slice(0, count).map((s) => s.address)

  /** The fine counters (slots >= 0) of every requester, summed, by server, from memcached. */
  async function countsByServer(prefix: string): Promise<Map<string, Map<string, number>>> {
    const byServer = new Map<string, Map<string, number>>()
    for (const server of pool) {
      const counts = new Map<string, number>()
      for (const [key, value] of await server.items(prefix)) {
        const colon = key.lastIndexOf(':')
        if (!key.slice(colon + 1).startsWith('-')) {
          const base = key.slice(0, colon + 1)
          counts.set(base, (counts.get(base) ?? 0) + Number(value))
        }
      }
      byServer.set(server.address, counts)
    }
    return byServer
  }

  it('shares every limit between two processes that list the same servers in other orders', async () => {
    const [a, b, c] = servers(3) as [string, string, string]
    const prefix = 'order:'
    const one = new MemcacheStore({ servers: `${a},${b},${c}`, prefix, deadlineMs: 2000 })
    const two = new MemcacheStore({ servers: `${c},${a},${b}`, prefix, deadlineMs: 2000 })
    const limiters = [one, two].map((store) =>
      createLimiter({ store, limit: 100, windowSeconds: 3600 }),
    )
    // Requesters on every server: seven each.
    const requesters: string[] = []
    const perServer = new Map<string, number>()
    for (let i = 0; requesters.length < 21; i++) {
      const server = one.shardOf(`w3600b1:10.0.${i >> 8}.${i & 255}`)
      if ((perServer.get(server) ?? 0) < 7) {
        perServer.set(server, (perServer.get(server) ?? 0) + 1)
        requesters.push(`10.0.${i >> 8}.${i & 255}`)
      }
    }
    const admitted = new Map(requesters.map((id) => [id, 0]))
    // 200 requests per requester, alternating between the two processes.
    for (let round = 0; round < 200; round++) {
      const decisions = await Promise.all(
        requesters.map((id) => (limiters[round % 2] as (typeof limiters)[number]).consume(id)),
      )
      decisions.forEach((decision, i) => {
        if (decision.allowed) {
          const id = requesters[i] as string
          admitted.set(id, (admitted.get(id) ?? 0) + 1)
        }
      })
    }
    expect([...admitted.values()]).toEqual(requesters.map(() => 100))
    // memcached holds each requester's 100 on exactly one server, the one both stores name.
    const byServer = await countsByServer(prefix)
    for (const id of requesters) {
      const key = (limiters[0] as (typeof limiters)[number]).prefix + id
      expect(two.shardOf(key)).toBe(one.shardOf(key))
      const base = one.keyBase(key)
      const holders = [...byServer].filter(([, counts]) => counts.has(base))
      expect(holders.map(([server]) => server)).toEqual([one.shardOf(key)])
      expect(holders[0]?.[1].get(base)).toBe(100)
    }
    await Promise.all([one.close(), two.close()])
  })

  it('moves about a quarter of the requesters, all to the new server, when a fourth server joins', async () => {
    const prefix = 'grow:'
    const three = new MemcacheStore({ servers: servers(3).join(','), prefix, deadlineMs: 2000 })
    const four = new MemcacheStore({ servers: servers(4).join(','), prefix, deadlineMs: 2000 })
    const before = createLimiter({ store: three, limit: 100, windowSeconds: 3600 })
    const after = createLimiter({ store: four, limit: 100, windowSeconds: 3600 })
    const requesters = Array.from({ length: 600 }, (_, i) => `user-${i}`)
    await Promise.all(requesters.map((id) => before.consume(id)))
    // A requester that kept its server still has its first request counted: 98 left, not 99.
    const remaining = await Promise.all(
      requesters.map(async (id) => (await after.consume(id)).remaining),
    )
    const moved = remaining.filter((left) => left === 99).length
    expect(remaining.filter((left) => left !== 98 && left !== 99)).toEqual([])
    // The new server's share of the ring is 1/4 on average; with 160 points per server and
    // these servers' random ports it ranges over about 0.19-0.34 for 600 requesters (1,000
    // random port sets), so "about a third" is asserted as 0.36, four standard deviations up.
    expect(moved / requesters.length).toBeGreaterThan(0.1)
    expect(moved / requesters.length).toBeLessThanOrEqual(0.36)
    // The new server holds exactly the moved requesters, each with the one request since.
    const onNew = (await countsByServer(prefix)).get(pool[3]?.address ?? '')
    expect(onNew?.size).toBe(moved)
    expect([...(onNew?.values() ?? [])].every((count) => count === 1)).toBe(true)
    await Promise.all([three.close(), four.close()])
  })

  it('pings one server at a time, and says which of them does not answer', async () => {
    const dead = `127.0.0.1:${String(await freePort())}`
    const [alive] = servers(1) as [string]
    const store = new MemcacheStore({ servers: `${alive},${dead}`, deadlineMs: 200 })
    expect(store.shards).toEqual([alive, dead])
    await store.ping(alive)
    await expect(store.ping(dead)).rejects.toBeInstanceOf(StoreError)
    await expect(store.ping()).rejects.toBeInstanceOf(StoreError)
    await expect(store.ping('elsewhere:11211')).rejects.toThrow(/has no server "elsewhere:11211"/)
    await store.close()
  })

  it('refuses a server listed twice, however its name is spelled', () => {
    expect(() => new MemcacheStore({ servers: 'cache:11211, cache:11211' })).toThrow(ConfigError)
    expect(() => new MemcacheStore({ servers: 'CACHE:11211,cache:11211' })).toThrow(
      /cache:11211 is listed twice/,
    )
    expect(() => new MemcacheStore({ servers: '[::1]:11211,[0:0::1]:11211' })).toThrow(
      /\[::1\]:11211 is listed twice/,
    )
    expect(() => new MemcacheStore({ servers: 'a:1,b:1,a:1' })).toThrow(/a:1 is listed twice/)
    expect(() => new MemcacheStore({ servers: '10.0.0.5:1,[::ffff:10.0.0.5]:1' })).toThrow(
      /10\.0\.0\.5:1 is listed twice/,
    )
    expect(() => new MemcacheStore({ servers: '127.1:11211' })).toThrow(ConfigError)
  })

  it('refuses two IPv6 servers that libmemcached would hash under one name', () => {
    expect(() => new MemcacheStore({ servers: '[::1]:2000,[::1:2000]:11211' })).toThrow(
      /\[::1\]:2000 and \[::1:2000\]:11211 are both "::1:2000"/,
    )
  })

  it('places requesters the same way whatever the case of the host names', () => {
    const upper = new MemcacheStore({ servers: 'CACHE-A:11211,Cache-B:11211,cache-c:11211' })
    const lower = new MemcacheStore({ servers: 'cache-c:11211,cache-a:11211,cache-b:11211' })
    expect(upper.shards).toEqual(['cache-a:11211', 'cache-b:11211', 'cache-c:11211'])
    for (let i = 0; i < 200; i++) {
      expect(upper.shardOf(`user-${i}`)).toBe(lower.shardOf(`user-${i}`))
    }
    void upper.close()
    void lower.close()
  })
})
