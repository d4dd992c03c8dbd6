import { hash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { formatServer, parseConnectionString } from './connection-string.js'
import { ServerRing } from './ring.js'

interface Pool {
  servers: string[]
  /** The index in `servers` of the server libmemcached put each key on. */
  placement: number[]
}

/** Captured from libmemcached by scripts/capture-ring-fixtures.py. */
const fixtures = JSON.parse(
  readFileSync(new URL('./ring.fixtures.json', import.meta.url), 'utf8'),
) as { pools: Record<string, Pool> & Record<'three' | 'four', Pool> }

/** The keys of the fixtures, as scripts/capture-ring-fixtures.py makes them. */
const keys = Array.from({ length: 600 }, (_, i) => `sl:${hash('sha1', String(i), 'base64url')}:`)

function placement(servers: readonly string[]): string[] {
  const ring = new ServerRing(
    parseConnectionString(servers.join(',')).map((address) => ({
      address,
      name: formatServer(address),
    })),
  )
  return keys.map((key) => ring.serverOf(key))
}

describe('ServerRing', () => {
  for (const [name, pool] of Object.entries(fixtures.pools)) {
    it(`places keys where libmemcached's ketama does (${name} servers)`, () => {
      const expected = pool.placement.map((index) => pool.servers[index])
      expect(placement(pool.servers)).toEqual(expected)
    })
  }

  it('places keys by the set of servers, whatever order they are listed in', () => {
    const servers = fixtures.pools.four.servers
    const listed = placement(servers)
    expect(placement([...servers].reverse())).toEqual(listed)
    expect(placement([servers[2], servers[0], servers[3], servers[1]] as string[])).toEqual(listed)
  })

  it('moves about a quarter of the keys when a fourth server joins three', () => {
    const three = placement(fixtures.pools.three.servers)
    const four = placement(fixtures.pools.four.servers)
    const moved = three.filter((server, i) => server !== four[i]).length
    // Ketama moves only the keys the new server takes over, about 1/4 of them.
    expect(
      four.filter((server, i) => server !== three[i]).every((s) => s === '127.0.0.1:21104'),
    ).toBe(true)
    expect(moved / keys.length).toBeGreaterThan(0.15)
    expect(moved / keys.length).toBeLessThan(1 / 3)
  })

  it('puts every key on the only server of a pool of one', () => {
    expect(new Set(placement(['cache:11211']))).toEqual(new Set(['cache:11211']))
  })
})
