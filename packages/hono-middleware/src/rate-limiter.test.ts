import { ConfigError, FailoverStore, StoreError, createLimiter } from '@slidelimit/core'
import type { Decision, SlidingWindowLimiter, Store } from '@slidelimit/core'
import { MemoryStore } from '@slidelimit/store-memory'
import { Hono } from 'hono'
import { describe, expect, it } from 'vitest'
import { rateLimiter } from './rate-limiter.js'
import type { RateLimiterOptions } from './options.js'

const T0 = 1_700_000_000_000

function appWith(options: Partial<RateLimiterOptions> = {}) {
  let t = T0
  const now = (): number => t
  const store = new MemoryStore({ now, sweepIntervalMs: 0 })
  const limiter = createLimiter({ store, now, limit: 3, windowSeconds: 60 })
  const app = new Hono()
  app.use(
    rateLimiter({ limiter, keyGenerator: (c) => c.req.header('x-key') ?? 'anon', ...options }),
  )
  app.get('/', (c) => c.text(`Hello, world! ${c.var.rateLimit.remaining} left`))
  return {
    app,
    get: (key = 'anon') => app.request('/', { headers: { 'x-key': key } }),
    advance: (ms: number) => {
      t += ms
    },
  }
}

describe('rateLimiter', () => {
  it('admits requests up to the limit and tells handlers what remains', async () => {
    const { get } = appWith()
    const texts = []
    for (let i = 0; i < 3; i++) {
      const res = await get()
      expect(res.status).toBe(200)
      texts.push(await res.text())
    }
    expect(texts).toEqual(['Hello, world! 2 left', 'Hello, world! 1 left', 'Hello, world! 0 left'])
  })

  it('denies the request over the limit with 429, the exact wait and Retry-After', async () => {
    const { get, advance } = appWith()
    await get()
    advance(20_000)
    await get()
    await get()
    advance(5_000)
    const res = await get()
    expect(res.status).toBe(429)
    expect(await res.text()).toBe('Rate limit exceeded. Try again in #35 seconds')
    expect(res.headers.get('Retry-After')).toBe('35')
    expect(res.headers.get('RateLimit')).toBe('"default";r=0;t=35')
    expect(res.headers.get('RateLimit-Policy')).toBe('"default";q=3;w=60')
  })

  it('sends the RateLimit fields on admitted responses, t never above Retry-After', async () => {
    const { get, advance } = appWith()
    const first = await get()
    expect(first.headers.get('RateLimit-Policy')).toBe('"default";q=3;w=60')
    expect(first.headers.get('RateLimit')).toBe('"default";r=2;t=60')
    expect(first.headers.get('Retry-After')).toBeNull()
    advance(59_500)
    await get()
    await get()
    const denied = await get()
    const t = Number(/t=(\d+)/.exec(denied.headers.get('RateLimit') ?? '')?.[1])
    expect(Number(denied.headers.get('Retry-After'))).toBeGreaterThanOrEqual(t)
    expect(t).toBe(1)
  })

  it('leaves the headers off when asked', async () => {
    const { get } = appWith({ headers: false })
    const res = await get()
    expect(res.headers.get('RateLimit')).toBeNull()
    expect(res.headers.get('RateLimit-Policy')).toBeNull()
  })

  it('names the policy in the headers', async () => {
    const { get } = appWith({ policyName: 'per-hour' })
    expect((await get()).headers.get('RateLimit')).toBe('"per-hour";r=2;t=60')
  })

  it('answers a denial with a custom handler', async () => {
    const { get } = appWith({
      handler: (c, info) => c.json({ error: 'slow down', retry: info.retryAfterSeconds }, 429),
    })
    for (let i = 0; i < 3; i++) {
      await get()
    }
    const res = await get()
    expect(res.status).toBe(429)
    expect(await res.json()).toEqual({ error: 'slow down', retry: 60 })
    expect(res.headers.get('Retry-After')).toBe('60')
  })

  it('keys by the connection address by default, IPv4-mapped IPv6 as IPv4', async () => {
    const store = new MemoryStore({ sweepIntervalMs: 0 })
    const app = new Hono()
    app.use(rateLimiter({ store, limit: 1, windowSeconds: 60 }))
    app.get('/', (c) => c.text(c.var.rateLimit.key))
    const from = (remoteAddress: string, xff?: string) =>
      app.request(
        '/',
        { headers: xff === undefined ? {} : { 'x-forwarded-for': xff } },
        { incoming: { socket: { remoteAddress } } },
      )
    const first = await from('::ffff:198.51.100.4', '1.2.3.4')
    expect(await first.text()).toBe('198.51.100.4')
    // The same client through another representation, and a forged header: still denied.
    expect((await from('198.51.100.4', '5.6.7.8')).status).toBe(429)
    expect((await from('198.51.100.5')).status).toBe(200)
    await store.close()
  })

  it('answers 503, never 500, when the store cannot decide', async () => {
    const broken: Store = {
      name: 'broken',
      update: () => Promise.reject(new StoreError('broken', 'connection refused')),
      ping: () => Promise.reject(new StoreError('broken', 'connection refused')),
      close: () => Promise.resolve(),
    }
    const store = new FailoverStore({
      primary: broken,
      fallback: new MemoryStore(),
      mode: 'closed',
    })
    const app = new Hono()
    app.use(rateLimiter({ store, keyGenerator: () => 'k' }))
    app.get('/', (c) => c.text('ok'))
    const res = await app.request('/')
    expect(res.status).toBe(503)
    expect(res.headers.get('Retry-After')).toBe('1')
    expect(await res.text()).toBe('Rate limiting is unavailable. Try again later.')

    const open = new Hono()
    const fallback = new MemoryStore({ sweepIntervalMs: 0 })
    open.use(
      rateLimiter({
        store: new FailoverStore({ primary: broken, fallback }),
        limit: 1,
        keyGenerator: () => 'k',
      }),
    )
    open.get('/', (c) => c.text('ok'))
    expect((await open.request('/')).status).toBe(200)
    expect((await open.request('/')).status).toBe(429)
  })

  it('refuses unknown or contradictory options with a ConfigError', () => {
    const store = new MemoryStore({ sweepIntervalMs: 0 })
    const limiter = createLimiter({ store })
    const bad: unknown[] = [
      {},
      { store, limitt: 5 },
      { store, limiter },
      { limiter, limit: 5 },
      { store, policyName: 'has "quotes"' },
      { store, headers: 'yes' },
      { store, keyGenerator: 'ip' },
      { store, limit: 0 },
      // eslint-disable-next-line no-sparse-arrays -- a hole in the list is a bad policy
      { store, policies: [{ limit: 1 }, , { limit: 2 }] },
      { store, policies: [{ limit: 1 }, null] },
      { store, policies: [[]] },
      null,
      [],
    ]
    for (const options of bad) {
      expect(() => rateLimiter(options as RateLimiterOptions)).toThrow(ConfigError)
    }
    const twice = {
      store,
      policies: [
        { name: 'a', limit: 1 },
        { name: 'a', limit: 2 },
      ],
    }
    expect(() => rateLimiter(twice)).toThrow(/different names/)
  })
})

describe('c.var.rateLimit', () => {
  const KEYS = [
    'allowed',
    'bucket',
    'id',
    'key',
    'limit',
    'policies',
    'policy',
    'remaining',
    'resetSeconds',
    'retryAfterSeconds',
    'windowSeconds',
  ]

  it('serialises to JSON with one policy, as plain data', async () => {
    const store = new MemoryStore({ sweepIntervalMs: 0 })
    const app = new Hono()
    const limit = rateLimiter({ store, limit: 2, windowSeconds: 60, keyGenerator: () => 'k' })
    app.get(
      '/wrap',
      limit.wrap((c) => c.json(c.var.rateLimit)),
    )
    app.use('/use', limit)
    app.get('/use', (c) => c.json(c.var.rateLimit))
    for (const path of ['/wrap', '/use']) {
      const res = await app.request(path)
      expect(res.status).toBe(200)
      const info = (await res.json()) as Record<string, unknown> & { policies: object[] }
      expect(Object.keys(info).sort()).toEqual(KEYS)
      expect(info.policies).toHaveLength(1)
      expect(Object.keys(info.policies[0] as object).sort()).toEqual(
        KEYS.filter((k) => k !== 'key' && k !== 'policies'),
      )
      expect(info.policies[0]).toMatchObject({ policy: 'default', limit: 2 })
    }
    await store.close()
  })

  it('serialises to JSON with several policies, in the same shape as with one', async () => {
    const store = new MemoryStore({ sweepIntervalMs: 0 })
    const app = new Hono()
    const limit = rateLimiter({
      store,
      policies: [
        { name: 'burst', limit: 1, windowSeconds: 1 },
        { name: 'hourly', limit: 5, windowSeconds: 3600 },
      ],
      keyGenerator: () => 'k',
      handler: (c, info) => c.json(info, 429),
    })
    app.get(
      '/',
      limit.wrap((c) => c.json(c.var.rateLimit)),
    )
    for (const status of [200, 429]) {
      const res = await app.request('/')
      expect(res.status).toBe(status)
      const info = (await res.json()) as Record<string, unknown> & { policies: object[] }
      expect(Object.keys(info).sort()).toEqual(KEYS)
      expect(info.policies.map((p) => Object.keys(p).sort())).toEqual([
        KEYS.filter((k) => k !== 'key' && k !== 'policies'),
        KEYS.filter((k) => k !== 'key' && k !== 'policies'),
      ])
    }
    await store.close()
  })

  it('serialises a denial with one policy through a JSON handler', async () => {
    const store = new MemoryStore({ sweepIntervalMs: 0 })
    const app = new Hono()
    app.use(
      rateLimiter({
        store,
        limit: 1,
        keyGenerator: () => 'k',
        handler: (c, info) => c.json(info, 429),
      }),
    )
    app.get('/', (c) => c.text('ok'))
    await app.request('/')
    const res = await app.request('/')
    expect(res.status).toBe(429)
    expect(await res.json()).toMatchObject({ allowed: false, policies: [{ allowed: false }] })
    await store.close()
  })
})

describe('two copies of @slidelimit/core', () => {
  /** A limiter as another copy of core makes it: not this copy's class, but branded. */
  function foreignLimiter(decide: (id: string) => Promise<Decision>) {
    return {
      [Symbol.for('slidelimit.limiter')]: true,
      limit: 3,
      windowSeconds: 60,
      bucketSeconds: 1,
      store: new MemoryStore({ sweepIntervalMs: 0 }),
      prefix: 'other:',
      decide,
      refund: () => Promise.resolve(),
    } as unknown as SlidingWindowLimiter
  }

  it("accepts another copy's limiter, as limiter and as a policy's", async () => {
    const real = createLimiter({ store: new MemoryStore({ sweepIntervalMs: 0 }), limit: 3 })
    const limiter = foreignLimiter((id) => Promise.resolve(real.decide(id)))
    const app = new Hono()
    app.get(
      '/one',
      rateLimiter({ limiter, keyGenerator: () => 'k' }).wrap((c) => c.text('ok')),
    )
    app.get(
      '/several',
      rateLimiter({ policies: [{ limiter }], keyGenerator: () => 'k' }).wrap((c) => c.text('ok')),
    )
    expect((await app.request('/one')).status).toBe(200)
    expect((await app.request('/several')).headers.get('RateLimit')).toMatch(/r=1;t=/)
    expect(() => rateLimiter({ limiter: {} } as unknown as RateLimiterOptions)).toThrow(ConfigError)
  })

  it("answers 503, not 500, for another copy's store error (known by its code)", async () => {
    class OtherStoreError extends Error {
      readonly code = 'ERR_SLIDELIMIT_STORE_UNAVAILABLE'
    }
    const limiter = foreignLimiter(() => Promise.reject(new OtherStoreError('down')))
    const app = new Hono()
    app.use(rateLimiter({ limiter, keyGenerator: () => 'k' }))
    app.get('/', (c) => c.text('ok'))
    const res = await app.request('/')
    expect(res.status).toBe(503)
    expect(res.headers.get('Retry-After')).toBe('1')
    // Anything else is the app's error, as before.
    const broken = new Hono()
    broken.use(
      rateLimiter({
        limiter: foreignLimiter(() => Promise.reject(new TypeError('bug'))),
        keyGenerator: () => 'k',
      }),
    )
    broken.get('/', (c) => c.text('ok'))
    broken.onError((error, c) => c.text(error.message, 500))
    const failed = await broken.request('/')
    expect([failed.status, await failed.text()]).toEqual([500, 'bug'])
  })
})
