import { describe, expect, it } from 'vitest'
import { storeTraffic, trafficTable } from './store-traffic.js'

describe('storeTraffic', () => {
  it('counts two increments a decision for a steady client, and the cold read first', async () => {
    const row = await storeTraffic({ clients: 1, intervalMs: [1000, 1000], hours: 2 })
    expect(row.decisions).toBe(3600)
    expect(row.firstOps).toBeGreaterThan(100)
    expect(row.firstOps).toBeLessThanOrEqual(121)
    expect(row.opsPerDecision).toBeGreaterThan(2)
    expect(row.opsPerDecision).toBeLessThan(3.5)
    expect(trafficTable([row])).toContain('| 1 | 1000-1000 | 3600 |')
  })

  it('charges sparse clients more per decision, and repeats exactly', async () => {
    const options = { clients: 5, intervalMs: [60_000, 90_000] as const, hours: 3 }
    const sparse = await storeTraffic(options)
    const busy = await storeTraffic({ clients: 5, intervalMs: [500, 800], hours: 3 })
    expect(sparse.opsPerDecision).toBeGreaterThan(busy.opsPerDecision * 3)
    expect(await storeTraffic(options)).toEqual(sparse)
  })
})
