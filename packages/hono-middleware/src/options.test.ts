// Every middleware option through app.request(): policies, skip, refund, header styles, wrap,
// client identity, and the ConfigErrors for unknown or contradictory options.

import { ConfigError, createLimiter } from '@slidelimit/core'
import { MemoryStore } from '@slidelimit/store-memory'
import { Hono } from 'hono'
import type { Context } from 'hono'
import type { ConnInfo } from 'hono/conninfo'
import ipaddr from 'ipaddr.js'
import { describe, expect, it } from 'vitest'
import { ClientAddressError, clientAddress } from './client-address.js'
import type { ClientAddressOptions } from './client-address.js'
import { rateLimiter } from './rate-limiter.js'
import type { RateLimiterOptions } from './options.js'

const T0 = 1_700_000_000_000

function clock() {
  let t = T0
  return {
    now: () => t,
    advance: (ms: number) => {
      t += ms
    },
  }
}

const byKey = (c: Context): string => c.req.header('x-key') ?? 'anon'

function build(options: Partial<RateLimiterOptions>, mount: 'use' | 'wrap' = 'use') {
  const { now, advance } = clock()
  const store = new MemoryStore({ now, sweepIntervalMs: 0 })
  const limit = rateLimiter({
    limiter: createLimiter({ store, now, limit: 3, windowSeconds: 60 }),
    keyGenerator: byKey,
    ...options,
  })
  const app = new Hono()
  const route = (c: Context) =>
    c.req.query('fail') === undefined ? c.text('ok') : c.text('broken', 500)
  if (mount === 'use') {
    app.use('/', limit)
    app.get('/', route)
  } else {
    app.get('/', limit.wrap(route))
  }
  return {
    app,
    advance,
    get: (path = '/', key = 'anon') => app.request(path, { headers: { 'x-key': key } }),
  }
}

describe.each(['use', 'wrap'] as const)('rateLimiter mounted with %s', (mount) => {
  it('limits and sends draft-10 fields', async () => {
    const { get } = build({}, mount)
    const res = await get()
    expect(res.headers.get('RateLimit')).toBe('"default";r=2;t=60')
    await get()
    await get()
    const denied = await get()
    expect(denied.status).toBe(429)
    expect(denied.headers.get('Retry-After')).toBe('60')
    expect(denied.headers.get('RateLimit-Policy')).toBe('"default";q=3;w=60')
  })

  it('sends draft-6 fields (separate Limit, Remaining, Reset) when asked', async () => {
    const { get } = build({ headers: 'draft-6' }, mount)
    const res = await get()
    expect(res.headers.get('RateLimit-Limit')).toBe('3')
    expect(res.headers.get('RateLimit-Remaining')).toBe('2')
    expect(res.headers.get('RateLimit-Reset')).toBe('60')
    expect(res.headers.get('RateLimit-Policy')).toBe('3;w=60')
    expect(res.headers.get('RateLimit')).toBeNull()
  })

  it('sends the combined draft-7 RateLimit field when asked, as express-rate-limit does', async () => {
    const { get } = build({ headers: 'draft-7' }, mount)
    const res = await get()
    expect(res.headers.get('RateLimit')).toBe('limit=3, remaining=2, reset=60')
    expect(res.headers.get('RateLimit-Policy')).toBe('3;w=60')
    expect(res.headers.get('RateLimit-Limit')).toBeNull()
    expect(res.headers.get('RateLimit-Remaining')).toBeNull()
    await get()
    await get()
    const denied = await get()
    expect(denied.headers.get('RateLimit')).toBe('limit=3, remaining=0, reset=60')
    expect(denied.headers.get('Retry-After')).toBe('60')
  })

  it('sends draft-8 named items when asked', async () => {
    const { get } = build({ headers: 'draft-8' }, mount)
    const res = await get()
    expect(res.headers.get('RateLimit-Policy')).toBe('"default";q=3;w=60')
    expect(res.headers.get('RateLimit')).toBe('"default";r=2;t=60')
    expect(res.headers.get('RateLimit-Limit')).toBeNull()
  })

  it('sends no fields with headers "none", but still Retry-After on a denial', async () => {
    const { get } = build({ headers: 'none' }, mount)
    for (let i = 0; i < 3; i++) {
      const res = await get()
      expect([...res.headers.keys()].filter((k) => k.startsWith('ratelimit'))).toEqual([])
    }
    expect((await get()).headers.get('Retry-After')).toBe('60')
  })

  it('skips requests skip() picks, without counting them', async () => {
    const { get } = build({ skip: (c) => c.req.header('x-key') === 'internal' }, mount)
    for (let i = 0; i < 10; i++) {
      const res = await get('/', 'internal')
      expect(res.status).toBe(200)
      expect(res.headers.get('RateLimit')).toBeNull()
    }
    expect((await get('/', 'other')).headers.get('RateLimit')).toBe('"default";r=2;t=60')
  })

  it('accepts an async skip() and an async keyGenerator', async () => {
    const { get } = build(
      {
        skip: (c) => Promise.resolve(c.req.header('x-key') === 'internal'),
        keyGenerator: (c) => Promise.resolve(`user:${c.req.header('x-key') ?? ''}`),
      },
      mount,
    )
    expect((await get('/', 'internal')).headers.get('RateLimit')).toBeNull()
    expect((await get('/', 'a')).headers.get('RateLimit')).toBe('"default";r=2;t=60')
  })

  it('refunds requests refund() picks, e.g. failed responses', async () => {
    const { get } = build({ refund: (_c, res) => res.status >= 400 }, mount)
    for (let i = 0; i < 5; i++) {
      expect((await get('/?fail=1')).status).toBe(500)
    }
    // The failures were taken back: the full quota is left.
    expect((await get()).headers.get('RateLimit')).toBe('"default";r=2;t=60')
  })

  it('answers a denial with a custom handler, fields already set', async () => {
    const { get } = build(
      { handler: (c, info) => c.json({ wait: info.retryAfterSeconds, policy: info.policy }, 429) },
      mount,
    )
    for (let i = 0; i < 3; i++) {
      await get()
    }
    const res = await get()
    expect(await res.json()).toEqual({ wait: 60, policy: 'default' })
    expect(res.headers.get('RateLimit')).toBe('"default";r=0;t=60')
    expect(res.headers.get('Content-Type')).toMatch(/application\/json/)
  })
})

describe('several policies', () => {
  function twoPolicies() {
    const { now, advance } = clock()
    const store = new MemoryStore({ now, sweepIntervalMs: 0 })
    const app = new Hono()
    const limit = rateLimiter({
      store,
      policies: [
        {
          name: 'burst',
          limiter: createLimiter({ store, now, limit: 2, windowSeconds: 1, prefix: 'b:' }),
        },
        { name: 'hourly', limiter: createLimiter({ store, now, limit: 5, windowSeconds: 3600 }) },
      ],
      keyGenerator: byKey,
    })
    app.get(
      '/',
      limit.wrap((c) => c.json(c.var.rateLimit)),
    )
    return { app, advance, get: () => app.request('/', { headers: { 'x-key': 'k' } }) }
  }

  it('admits only when every policy admits, one header item each', async () => {
    const { get, advance } = twoPolicies()
    const first = await get()
    expect(first.headers.get('RateLimit-Policy')).toBe('"burst";q=2;w=1, "hourly";q=5;w=3600')
    expect(first.headers.get('RateLimit')).toBe('"burst";r=1;t=1, "hourly";r=4;t=3600')
    await get()
    const denied = await get()
    expect(denied.status).toBe(429)
    expect(denied.headers.get('Retry-After')).toBe('1')
    // The hourly policy took its count back.
    expect(denied.headers.get('RateLimit')).toBe('"burst";r=0;t=1, "hourly";r=3;t=3600')
    for (let i = 0; i < 3; i++) {
      advance(1000)
      expect((await get()).status).toBe(200)
    }
    advance(1000)
    // Hourly is spent (5 admitted); Retry-After is the longest wait of the denying policies.
    const hourly = await get()
    expect(hourly.status).toBe(429)
    expect(Number(hourly.headers.get('Retry-After'))).toBeGreaterThan(3500)
  })

  it('tells handlers every policy, and the binding one on c.var.rateLimit', async () => {
    const { get } = twoPolicies()
    const info = (await (await get()).json()) as {
      policy: string
      remaining: number
      policies: { policy: string; remaining: number }[]
    }
    expect(info.policy).toBe('burst')
    expect(info.remaining).toBe(1)
    expect(info.policies.map((p) => [p.policy, p.remaining])).toEqual([
      ['burst', 1],
      ['hourly', 4],
    ])
  })

  it('answers several denying policies with the longest wait in Retry-After', async () => {
    for (const order of [
      ['short', 'long'],
      ['long', 'short'],
    ]) {
      const { now, advance } = clock()
      const store = new MemoryStore({ now, sweepIntervalMs: 0 })
      const windows: Record<string, number> = { short: 10, long: 60 }
      const app = new Hono()
      app.get(
        '/',
        rateLimiter({
          policies: order.map((name) => ({
            name,
            limiter: createLimiter({
              store,
              now,
              limit: 1,
              windowSeconds: windows[name],
              prefix: `${name}:`,
            }),
          })),
          keyGenerator: () => 'k',
          handler: (c, info) => c.json(info, 429),
        }).wrap((c) => c.text('ok')),
      )
      expect((await app.request('/')).status).toBe(200)
      advance(2000)
      const denied = await app.request('/')
      expect(denied.status).toBe(429)
      // Both deny: the short one frees up in 8 s, the long one in 58 s.
      expect(denied.headers.get('Retry-After'), order.join()).toBe('58')
      const info = (await denied.json()) as {
        policy: string
        retryAfterSeconds: number
        policies: { policy: string; allowed: boolean; retryAfterSeconds: number }[]
      }
      expect([info.policy, info.retryAfterSeconds]).toEqual(['long', 58])
      expect(info.policies.map((p) => [p.policy, p.allowed, p.retryAfterSeconds])).toEqual(
        order.map((name) => [name, false, name === 'long' ? 58 : 8]),
      )
      await store.close()
    }
  })

  it('builds limiters on the store that never share counters', async () => {
    const store = new MemoryStore({ sweepIntervalMs: 0 })
    const app = new Hono()
    app.get(
      '/',
      rateLimiter({
        store,
        policies: [
          { name: 'a', limit: 1, windowSeconds: 60 },
          { name: 'b', limit: 2, windowSeconds: 60 },
        ],
        keyGenerator: () => 'k',
      }).wrap((c) => c.text('ok')),
    )
    const res = await app.request('/')
    expect(res.headers.get('RateLimit')).toBe('"a";r=0;t=60, "b";r=1;t=60')
    await store.close()
  })
})

describe('client identity (default key)', () => {
  const appFor = (options: Partial<RateLimiterOptions>) => {
    const app = new Hono()
    app.get(
      '/',
      rateLimiter({ store: new MemoryStore({ sweepIntervalMs: 0 }), limit: 100, ...options }).wrap(
        (c) => c.text(c.var.rateLimit.key),
      ),
    )
    return async (remoteAddress: string, headers: Record<string, string> = {}) => {
      // A wrapped route on a synchronous store answers without a promise.
      const res = await app.request('/', { headers }, { incoming: { socket: { remoteAddress } } })
      return res.text()
    }
  }

  it('groups IPv6 by /56 by default, or by the prefix asked for', async () => {
    expect(await appFor({})('2001:db8:abcd:12ff::1')).toBe('2001:db8:abcd:1200::/56')
    expect(await appFor({ ipv6Subnet: 64 })('2001:db8:abcd:12ff::1')).toBe(
      '2001:db8:abcd:12ff::/64',
    )
    expect(await appFor({ ipv6Subnet: false })('2001:db8::1')).toBe('2001:db8::1')
    expect(await appFor({})('::ffff:192.0.2.1')).toBe('192.0.2.1')
  })

  it('trusts forwarding headers by hops, by address, or not at all', async () => {
    const xff = { 'x-forwarded-for': '6.6.6.6, 203.0.113.5, 10.0.0.2' }
    expect(await appFor({})('10.0.0.1', xff)).toBe('10.0.0.1')
    expect(await appFor({ trustProxy: 1 })('10.0.0.1', xff)).toBe('10.0.0.2')
    expect(await appFor({ trustProxy: 2 })('10.0.0.1', xff)).toBe('203.0.113.5')
    expect(await appFor({ trustProxy: ['10.0.0.0/8'] })('10.0.0.1', xff)).toBe('203.0.113.5')
    expect(await appFor({ trustProxy: '10.0.0.1' })('10.0.0.1', xff)).toBe('10.0.0.2')
    expect(await appFor({ trustProxy: ['10.0.0.0/8'] })('192.0.2.9', xff)).toBe('192.0.2.9')
  })

  it('reads RFC 7239 Forwarded when told to', async () => {
    const get = appFor({ trustProxy: 1, proxyHeader: 'forwarded' })
    expect(await get('10.0.0.1', { forwarded: 'for=192.0.2.60;proto=https' })).toBe('192.0.2.60')
    expect(await get('10.0.0.1', { forwarded: 'for="[2001:db8::17]:4711"' })).toBe('2001:db8::/56')
    expect(await get('10.0.0.1', { forwarded: 'for=_hidden' })).toBe('10.0.0.1')
    expect(await get('10.0.0.1', { forwarded: 'proto=http' })).toBe('10.0.0.1')
  })

  it('keeps a client behind a trusted proxy on its key, whatever it writes to the left', async () => {
    const byHops = appFor({ trustProxy: 1 })
    const byList = appFor({ trustProxy: ['10.0.0.0/8'] })
    const junk = [
      Array.from({ length: 65 }, (_, i) => `junk${i}`).join(', '),
      Array.from({ length: 700 }, (_, i) => `10.0.${i >> 8}.${i & 255}`).join(','),
      'x'.repeat(9000),
      `${'x'.repeat(20_000)}, 1.1.1.1`,
      '1.1.1.1, \u00ff\u00fe, "unterminated',
      ', , ,',
    ]
    for (const left of junk) {
      const xff = { 'x-forwarded-for': `${left}, 203.0.113.9` }
      expect(await byHops('10.0.0.1', xff), left.slice(0, 20)).toBe('203.0.113.9')
      const viaTwo = { 'x-forwarded-for': `${left}, 203.0.113.9, 10.0.0.2` }
      expect(await byList('10.0.0.1', viaTwo), left.slice(0, 20)).toBe('203.0.113.9')
    }
  })

  it('ignores malformed Forwarded elements that the client wrote to the left', async () => {
    const get = appFor({ trustProxy: 2, proxyHeader: 'forwarded' })
    const right = 'for=203.0.113.9;proto=https, for="[2001:db8::2]:443"'
    for (const left of ['proto=http', 'for="unterminated', 'for=;;;', 'junk'.repeat(3000)]) {
      expect(await get('10.0.0.1', { forwarded: `${left}, ${right}` }), left.slice(0, 20)).toBe(
        '203.0.113.9',
      )
    }
  })

  it('reads a megabyte header only at its right end', async () => {
    const get = appFor({ trustProxy: 1 })
    const huge = `${'1.2.3.4,'.repeat(131_072)} 203.0.113.9`
    expect(await get('10.0.0.1', { 'x-forwarded-for': huge })).toBe('203.0.113.9')
    // Every trusted entry through the bound: the leftmost entry read counts.
    const list = appFor({ trustProxy: ['10.0.0.0/8'] })
    const trustedOnly = Array.from({ length: 100 }, (_, i) => `10.0.1.${i}`).join(', ')
    expect(await list('10.0.0.1', { 'x-forwarded-for': trustedOnly })).toBe('10.0.1.36')
  })

  it('logs an ignored header at debug level', async () => {
    const lines: string[] = []
    const get = appFor({ trustProxy: 1, logger: { debug: (message) => lines.push(message) } })
    expect(await get('10.0.0.1', { 'x-forwarded-for': 'garbage' })).toBe('10.0.0.1')
    expect(lines).toEqual(['ignored x-forwarded-for: entry 1 from the right is not an IP address'])
  })

  it('refuses a trusted range that covers every address of a family, as it refuses true', () => {
    const refusal = (trustProxy: ClientAddressOptions['trustProxy']): string => {
      try {
        clientAddress({ trustProxy })
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError)
        return (error as ConfigError).message.replace(/got .*, expected/, 'got X, expected')
      }
      return 'accepted'
    }
    const asTrue = refusal(true)
    expect(asTrue).toMatch(/would trust any client/)
    for (const everything of [
      '0.0.0.0/0',
      '::/0',
      '::ffff:0:0/96',
      '::ffff:0.0.0.0/96',
      ['10.0.0.0/8', '0.0.0.0/0'],
      '192.168.0.0/16, ::/0',
    ]) {
      expect(refusal(everything), String(everything)).toBe(asTrue)
    }
    // Wide, but not everything: accepted.
    for (const wide of ['0.0.0.0/1', '128.0.0.0/1', '::/1', '::ffff:0:0/97']) {
      expect(refusal(wide), wide).toBe('accepted')
    }
  })

  it('refuses trusted ranges that together cover every address of a family, as it refuses true', () => {
    const refusal = (trustProxy: ClientAddressOptions['trustProxy']): string => {
      try {
        clientAddress({ trustProxy })
      } catch (error) {
        expect(error).toBeInstanceOf(ConfigError)
        return (error as ConfigError).message.replace(/got .*, expected/, 'got X, expected')
      }
      return 'accepted'
    }
    const asTrue = refusal(true)
    // Every IPv6 address but the IPv4-mapped block ::ffff:0:0/96, whose addresses are read as
    // IPv4: the sibling of each prefix of ::ffff:0:0/96, 96 ranges.
    const mapped = 0xffffn << 32n
    const allButMapped: string[] = []
    for (let bits = 1n; bits <= 96n; bits++) {
      const sibling = (mapped ^ (1n << (128n - bits))) & ~((1n << (128n - bits)) - 1n)
      const bytes = Array.from({ length: 16 }, (_, i) =>
        Number((sibling >> BigInt(120 - 8 * i)) & 0xffn),
      )
      allButMapped.push(`${ipaddr.fromByteArray(bytes).toString()}/${bits}`)
    }
    for (const everything of [
      '0.0.0.0/1,128.0.0.0/1',
      ['128.0.0.0/1', '0.0.0.0/1'],
      // Every IPv4 address, mapped.
      '::ffff:0.0.0.0/97,::ffff:128.0.0.0/97',
      // Mapped and plain IPv4 ranges count together; host bits set, overlaps and duplicates.
      '::ffff:0.0.0.0/97, 128.0.0.1/2, 192.0.0.0/2, 10.0.0.0/8, 10.0.0.0/8',
      '::/1,8000::/1',
      ['8000::/1', '::/2', '4000::/2', '2001:db8::/32'],
      allButMapped,
    ]) {
      expect(refusal(everything), String(everything)).toBe(asTrue)
    }
    // Nearly everything, but not quite: accepted.
    for (const nearly of [
      '0.0.0.0/1,128.0.0.0/2',
      '0.0.0.0/1,128.0.0.0/2,192.0.0.0/3,224.0.0.0/4,240.0.0.0/5,248.0.0.0/6',
      '::ffff:0.0.0.0/97,::ffff:128.0.0.0/98',
      '::/1,8000::/2',
      // IPv6 ranges never trust IPv4 clients, nor IPv4 ranges IPv6 ones.
      '0.0.0.0/1,::ffff:0:0/97,::/1',
      allButMapped.slice(0, -1),
    ]) {
      expect(refusal(nearly), String(nearly)).toBe('accepted')
    }
  })

  it('keys one address alike however it is written: zones dropped, embedded IPv4 normalised', async () => {
    const exact = appFor({ ipv6Subnet: 128 })
    expect(await exact('fe80::1%eth0')).toBe('fe80::1')
    expect(await exact('fe80::1%eth1')).toBe('fe80::1')
    expect(await exact('FE80:0:0:0:0:0:0:1%2')).toBe('fe80::1')
    expect(await exact('::1.2.3.4')).toBe(await exact('::0:1.2.3.4'))
    expect(await exact('::1.2.3.4')).toBe('::102:304')
    expect(await exact('::ffff:1.2.3.4')).toBe('1.2.3.4')
    // The same through a trusted forwarding header.
    const forwarded = appFor({ ipv6Subnet: 128, trustProxy: 1 })
    const via = (xff: string) => forwarded('10.0.0.1', { 'x-forwarded-for': xff })
    expect(await via('fe80::1%eth0')).toBe('fe80::1')
    expect(await via('fe80::1%eth1')).toBe('fe80::1')
    expect(await via('::1.2.3.4')).toBe(await via('::0:1.2.3.4'))
    expect(await via('0:0:0:0:0:0:1.2.3.4')).toBe('::102:304')
  })

  it('refuses bad trust settings', () => {
    for (const trustProxy of [true, -1, 33, 'nonsense', ['10.0.0.0/99'], []]) {
      expect(() => clientAddress({ trustProxy })).toThrow(ConfigError)
    }
  })
})

describe('the default key outside Node', () => {
  const appWith = (options: Partial<RateLimiterOptions>, mount: 'use' | 'wrap') => {
    const store = new MemoryStore({ sweepIntervalMs: 0 })
    const limit = rateLimiter({ store, limit: 1, ...options })
    const app = new Hono()
    const errors: unknown[] = []
    app.onError((error, c) => {
      errors.push(error)
      return c.text(error.message, 500)
    })
    const route = (c: Context) => c.text(c.var.rateLimit.key)
    if (mount === 'use') {
      app.use(limit)
      app.get('/', route)
    } else {
      app.get('/', limit.wrap(route))
    }
    return { app, errors }
  }

  it.each(['use', 'wrap'] as const)(
    'fails clearly, never one shared key, with no socket and no getConnInfo (%s)',
    async (mount) => {
      const { app, errors } = appWith({}, mount)
      // app.request() without env: no Node bindings, as on Bun, Deno or a worker.
      const first = await app.request('/')
      const second = await app.request('/')
      expect([first.status, second.status]).toEqual([500, 500])
      expect(errors[0]).toBeInstanceOf(ClientAddressError)
      expect((errors[0] as ClientAddressError).code).toBe('ERR_SLIDELIMIT_NO_CLIENT_ADDRESS')
      expect(await first.text()).toMatch(/getConnInfo .* or a keyGenerator/)
    },
  )

  it.each(['use', 'wrap'] as const)(
    "keys by the runtime's getConnInfo, as on Node (%s)",
    async (mount) => {
      const getConnInfo = (c: Context): ConnInfo => ({
        remote: { address: c.req.header('x-test-peer') ?? '', addressType: undefined },
      })
      const { app, errors } = appWith({ getConnInfo }, mount)
      const from = (peer: string, xff?: string) =>
        app.request('/', {
          headers: {
            'x-test-peer': peer,
            ...(xff === undefined ? {} : { 'x-forwarded-for': xff }),
          },
        })
      const first = await from('2001:db8:abcd:12ff::1')
      expect([first.status, await first.text()]).toEqual([200, '2001:db8:abcd:1200::/56'])
      expect((await from('2001:db8:abcd:1201::9')).status).toBe(429)
      expect(await (await from('::ffff:192.0.2.1', '6.6.6.6')).text()).toBe('192.0.2.1')
      // No address from the runtime either: a clear failure.
      expect((await from('')).status).toBe(500)
      expect(errors).toHaveLength(1)
    },
  )

  it('applies trusted proxies to the address getConnInfo gives', async () => {
    const getConnInfo = (): ConnInfo => ({ remote: { address: '10.0.0.1', addressType: 'IPv4' } })
    const { app } = appWith({ getConnInfo, trustProxy: ['10.0.0.0/8'] }, 'wrap')
    const res = await app.request('/', { headers: { 'x-forwarded-for': '203.0.113.9, 10.0.0.2' } })
    expect(await res.text()).toBe('203.0.113.9')
  })
})

describe('ConfigError on unknown or contradictory options', () => {
  it('names the option', () => {
    const store = new MemoryStore({ sweepIntervalMs: 0 })
    const limiter = createLimiter({ store })
    const bad: [unknown, RegExp][] = [
      [{ store, limt: 5 }, /limt/],
      [{ store, headers: 'draft-9' }, /headers/],
      [{ store, headers: 'draft-11' }, /headers/],
      [{ store, skip: 'yes' }, /skip/],
      [{ store, refund: 1 }, /refund/],
      [{ store, keyGenerator: byKey, trustProxy: 1 }, /trustProxy/],
      [{ store, policies: [] }, /policies/],
      [{ store, policies: [{ limit: 1 }], limit: 5 }, /limit/],
      [{ store, policies: [{ name: 'a' }, { name: 'a' }] }, /policies/],
      [{ policies: [{ limiter }, { limiter }] }, /policies/],
      [{ store, policies: [{ limiter, limit: 2 }] }, /limit/],
      [{ store, policies: [{ lim: 2 }] }, /lim/],
      [{ store, ipv6Subnet: 0 }, /ipv6Subnet/],
      [{ store, proxyHeader: 'x-real-ip' }, /proxyHeader/],
      [{ store, logger: {} }, /logger/],
      [{ store, getConnInfo: 'bun' }, /getConnInfo/],
      [{ store, keyGenerator: byKey, getConnInfo: () => ({ remote: {} }) }, /getConnInfo/],
    ]
    for (const [options, message] of bad) {
      expect(() => rateLimiter(options as RateLimiterOptions), JSON.stringify(options)).toThrow(
        ConfigError,
      )
      expect(() => rateLimiter(options as RateLimiterOptions)).toThrow(message)
    }
  })
})
