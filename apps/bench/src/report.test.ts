import { describe, expect, it } from 'vitest'
import { readFileSync } from 'node:fs'
import { parseAutocannon, parseWrk, wrkScript } from './load.js'
import {
  impliedRatio,
  median,
  memcachedOps,
  memoryTable,
  profileTable,
  quantile,
  summarise,
  table,
} from './report.js'
import type { Measurement } from './report.js'

// Recorded from `wrk -t1 -c64 -d5s --latency -s hot.lua http://127.0.0.1:40123/`.
const WRK_OUTPUT = `Running 5s test @ http://127.0.0.1:40123/
  1 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.71ms    1.02ms  23.66ms   91.20%
    Req/Sec    13.61k   812.05    14.39k    88.00%
  Latency Distribution
     50%    4.52ms
     75%    4.88ms
     90%    5.37ms
     99%    8.94ms
  67716 requests in 5.00s, 10.20MB read
  Non-2xx or 3xx responses: 67715
Requests/sec:  13539.18
Transfer/sec:      2.04MB
`

describe('parseWrk', () => {
  it('reads req/s, the p99 in ms, the request count and non-2xx answers', () => {
    expect(parseWrk(WRK_OUTPUT)).toEqual({
      rps: 13539.18,
      p99Ms: 8.94,
      requests: 67716,
      non2xx: 67715,
    })
  })

  it('converts microsecond and second latencies', () => {
    expect(parseWrk(WRK_OUTPUT.replace('8.94ms', '940.00us')).p99Ms).toBeCloseTo(0.94)
    expect(parseWrk(WRK_OUTPUT.replace('8.94ms', '1.20s')).p99Ms).toBe(1200)
  })

  it('refuses output it cannot read', () => {
    expect(() => parseWrk('unable to connect to 127.0.0.1:1 Connection refused')).toThrow(
      /cannot parse/,
    )
  })
})

describe('wrkScript', () => {
  it('sends every client to the path of the URL wrk is given, not to /', () => {
    const many = readFileSync(wrkScript(10_000), 'utf8')
    expect(many).toContain('wrk.format("GET", nil,')
    expect(many).toContain('% 10000')
    expect(readFileSync(wrkScript(1), 'utf8')).not.toContain('wrk.format')
  })
})

describe('parseAutocannon', () => {
  it('reads the JSON line of autocannon-load', () => {
    expect(parseAutocannon('noise\n{"rps":100.5,"p99Ms":3,"requests":500,"non2xx":2}\n')).toEqual({
      rps: 100.5,
      p99Ms: 3,
      requests: 500,
      non2xx: 2,
    })
    expect(() => parseAutocannon('{}')).toThrow(/cannot parse/)
  })
})

describe('summarise and table', () => {
  const m = (
    server: string,
    round: number,
    rps: number,
    extra: Partial<Measurement> = {},
  ): Measurement => ({
    scenario: 'hot client',
    server,
    round,
    rps,
    p99Ms: rps / 1000,
    requests: rps * 5,
    non2xx: 0,
    ...extra,
  })

  it('pairs each server with bare Hono round by round and takes medians', () => {
    const rows = summarise([
      m('bare', 0, 1000),
      m('x', 0, 900),
      m('bare', 1, 2000),
      m('x', 1, 1000),
      m('bare', 2, 1000),
      m('x', 2, 800, { memcachedOpsPerRequest: 3 }),
    ])
    const x = rows.find((r) => r.server === 'x')
    expect(x).toMatchObject({
      medianRps: 900,
      baseline: 'bare',
      ratio: 0.8,
      ratioMin: 0.5,
      ratioMax: 0.9,
      memcachedOpsPerRequest: 3,
    })
    expect(x?.ratioQ1).toBeCloseTo(0.65, 10)
    expect(x?.ratioQ3).toBeCloseTo(0.85, 10)
    expect(rows.find((r) => r.server === 'bare')?.ratio).toBe(1)
  })

  it('prints one Markdown row per scenario and server', () => {
    const text = table(summarise([m('bare', 0, 1000), m('x', 0, 900, { non2xx: 4500 })]))
    expect(text.split('\n')).toEqual([
      '| scenario | server | req/s (median) | p99 ms | baseline | x baseline (median) | IQR | min-max | non-2xx | memcached ops/req |',
      '| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |',
      '| hot client | bare | 1000 | 1.00 | bare | 1.00 | 1.00-1.00 | 1.00-1.00 | 0% |  |',
      '| hot client | x | 900 | 0.90 | bare | 0.90 | 0.90-0.90 | 0.90-0.90 | 100% |  |',
    ])
    expect(
      memoryTable([
        { limiter: 'a', requesters: 10, heapBytesPerRequester: 300, rssBytesPerRequester: 900 },
      ]),
    ).toContain('| a | 10 | 1 | 300 | 900 |')
  })

  it('pairs a server with its own baseline when told to', () => {
    const rows = summarise(
      [m('bare', 0, 1000), m('noop', 0, 800), m('use', 0, 720), m('other', 0, 500)],
      (server) => (server === 'use' ? 'noop' : 'bare'),
    )
    expect(rows.find((r) => r.server === 'use')).toMatchObject({ baseline: 'noop', ratio: 0.9 })
    expect(rows.find((r) => r.server === 'other')).toMatchObject({ baseline: 'bare', ratio: 0.5 })
  })

  it('takes quartiles between ranks', () => {
    expect(quantile([1, 2, 3, 4, 5], 0.25)).toBe(2)
    expect(quantile([4, 1, 3, 2], 0.75)).toBe(3.25)
    expect(quantile([7], 0.25)).toBe(7)
  })

  it('takes medians of odd and even counts', () => {
    expect(median([3, 1, 2])).toBe(2)
    expect(median([4, 1, 2, 3])).toBe(2.5)
  })
})

describe('memcachedOps', () => {
  it('counts gets, sets, increments and the items increments created', () => {
    const before = { cmd_get: 10, cmd_set: 1, incr_hits: 5, incr_misses: 0, total_items: 3 }
    const after = { cmd_get: 30, cmd_set: 2, incr_hits: 9, incr_misses: 0, total_items: 7 }
    // 20 gets + 1 set + 4 increments + (4 new items - 1 by the set)
    expect(memcachedOps(before, after)).toBe(28)
  })
})

describe('profileTable', () => {
  it('sets each slidelimit server beside its baseline, with the ratio the shares imply', () => {
    const base = {
      scenario: 'hot',
      server: 'noop',
      slidelimit: 0,
      headers: 0.02,
      gc: 0.04,
      busyMs: 1,
    }
    const row = { ...base, server: 'slidelimit-memory-middleware', slidelimit: 0.05, headers: 0.03 }
    // Time per request: the baseline's 0.94 of its busy time is the rest; the server's is 0.88.
    expect(impliedRatio(row, base)).toBeCloseTo(0.88 / 0.94)
    const text = profileTable([base, row], () => 'noop')
    expect(text).toContain(
      '| hot | slidelimit-memory-middleware | 5.0% | 3.0% | 4.0% | noop | 2.0% | 4.0% | 0.94 |',
    )
    expect(text).not.toContain('| hot | noop |')
  })
})
