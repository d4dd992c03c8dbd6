// The options people look for coming from express-rate-limit: message and statusCode, the
// context variable's name, and a limit that depends on the request.

import { ConfigError, StoreError, createLimiter } from '@slidelimit/core'
import { MemoryStore } from '@slidelimit/store-memory'
import { Hono } from 'hono'
import { describe, expect, it } from 'vitest'
import { rateLimiter } from './rate-limiter.js'
import type { RateLimitInfo } from './rate-limiter.js'
import type { RateLimiterOptions } from './options.js'

function denied(options: Partial<RateLimiterOptions>) {
  // A fixed clock: the two requests must fall in one bucket, however slow the machine.
  const now = () => 1_700_000_000_000
  const store = new MemoryStore({ sweepIntervalMs: 0, now })
  const limiter = createLimiter({ store, limit: 1, now })
  const app = new Hono()
  app.get(
    '/',
    rateLimiter({ limiter, keyGenerator: () => 'k', ...options }).wrap((c) => c.text('ok')),
  )
  return async () => {
    await app.request('/')
    return app.request('/')
  }
}

describe('message and statusCode', () => {
  it('answers a denial with a string message as text', async () => {
    const res = await denied({ message: 'Too many requests, please try again later.' })()
    expect(res.status).toBe(429)
    expect(await res.text()).toBe('Too many requests, please try again later.')
    expect(res.headers.get('Retry-After')).toBe('3600')
  })

  it('answers a denial with an object message as JSON, with the status asked for', async () => {
    const res = await denied({ message: { error: 'slow down' }, statusCode: 503 })()
    expect(res.status).toBe(503)
    expect(await res.json()).toEqual({ error: 'slow down' })
    expect(res.headers.get('RateLimit')).toBe('"default";r=0;t=3600')
  })

  it('builds the message from the context and the decision, also asynchronously', async () => {
    const sync = await denied({
      message: (c, info) => ({ path: c.req.path, wait: info.retryAfterSeconds }),
    })()
    expect(await sync.json()).toEqual({ path: '/', wait: 3600 })
    const later = await denied({
      message: (_c, info) => Promise.resolve(`wait ${info.retryAfterSeconds}s`),
      statusCode: 420,
    })()
    expect([later.status, await later.text()]).toEqual([420, 'wait 3600s'])
  })

  it('keeps the default text with only a status code', async () => {
    const res = await denied({ statusCode: 503 })()
    expect([res.status, await res.text()]).toEqual([
      503,
      'Rate limit exceeded. Try again in #3600 seconds',
    ])
  })

  it('refuses a bad status, a bad message, or either beside handler', () => {
    const store = new MemoryStore({ sweepIntervalMs: 0 })
    const handler = () => new Response('no', { status: 429 })
    for (const [options, name] of [
      [{ statusCode: 200 }, /statusCode/],
      [{ statusCode: 429.5 }, /statusCode/],
      [{ message: 42 }, /message/],
      [{ message: 'x', handler }, /message/],
      [{ statusCode: 503, handler }, /statusCode/],
      [{ contextVariable: '' }, /contextVariable/],
    ] as const) {
      const make = () => rateLimiter({ store, ...(options as Partial<RateLimiterOptions>) })
      expect(make).toThrow(ConfigError)
      expect(make).toThrow(name)
    }
  })
})

describe('contextVariable', () => {
  it('sets each of two limiters on a route on its own variable', async () => {
    const store = new MemoryStore({ sweepIntervalMs: 0 })
    const app = new Hono<{ Variables: { burstLimit: RateLimitInfo } }>()
    app.use(rateLimiter({ store, limit: 5, windowSeconds: 3600, keyGenerator: () => 'k' }))
    app.use(
      rateLimiter({
        store,
        limit: 2,
        windowSeconds: 1,
        keyGenerator: () => 'k',
        contextVariable: 'burstLimit',
        headers: false,
      }),
    )
    app.get('/', (c) =>
      c.json({ hourly: c.var.rateLimit.remaining, burst: c.var.burstLimit.remaining }),
    )
    expect(await (await app.request('/')).json()).toEqual({ hourly: 4, burst: 1 })
  })
})

describe('limit as a function of the request', () => {
  function tiers(limiterGiven: boolean) {
    let t = 1_700_000_000_000
    const now = () => t
    const store = new MemoryStore({ now, sweepIntervalMs: 0 })
    const limit = (c: { req: { header: (name: string) => string | undefined } }) =>
      c.req.header('x-plan') === 'pro' ? 5 : 2
    const app = new Hono()
    app.get(
      '/',
      rateLimiter(
        limiterGiven
          ? { limiter: createLimiter({ store, now, windowSeconds: 60 }), limit }
          : { store, windowSeconds: 60, limit: (c) => Promise.resolve(limit(c)) },
      ).wrap((c) => c.text('ok')),
    )
    return {
      get: (plan: string, user: string) =>
        app.request(
          '/',
          { headers: { 'x-plan': plan, 'x-forwarded-for': user } },
          {
            incoming: { socket: { remoteAddress: user } },
          },
        ),
      advance: (ms: number) => {
        t += ms
      },
    }
  }

  it.each([true, false])(
    'admits each request under its own limit, headers showing it (limiter given: %s)',
    async (limiterGiven) => {
      const { get } = tiers(limiterGiven)
      const free = [await get('free', '192.0.2.1'), await get('free', '192.0.2.1')]
      expect(free.map((r) => r.status)).toEqual([200, 200])
      const third = await get('free', '192.0.2.1')
      expect(third.status).toBe(429)
      expect(third.headers.get('RateLimit-Policy')).toBe('"default";q=2;w=60')
      expect(third.headers.get('RateLimit')).toBe('"default";r=0;t=60')
      // The same counters under a raised limit: two counted, three left.
      const pro = await get('pro', '192.0.2.1')
      expect(pro.status).toBe(200)
      expect(pro.headers.get('RateLimit-Policy')).toBe('"default";q=5;w=60')
      expect(pro.headers.get('RateLimit')).toBe('"default";r=2;t=60')
    },
  )
})

describe('callbacks', () => {
  it('are called as plain functions: no `this` (never the middleware own configuration)', async () => {
    const seen: Record<string, unknown> = {}
    const app = new Hono()
    app.use(
      '/a/*',
      rateLimiter({
        store: new MemoryStore({ sweepIntervalMs: 0 }),
        limit: 1,
        keyGenerator(this: unknown) {
          seen.keyGenerator = this
          return 'k'
        },
        skip(this: unknown) {
          seen.skip = this
          return false
        },
        handler(this: unknown, c) {
          seen.handler = this
          return c.text('no', 429)
        },
      }),
    )
    app.use(
      '/b/*',
      rateLimiter({
        keyGenerator: () => 'k',
        store: {
          name: 'down',
          update: () => Promise.reject(new StoreError('down', 'boom')),
          ping: () => Promise.resolve(),
          close: () => Promise.resolve(),
        },
        unavailableHandler(this: unknown, c) {
          seen.unavailableHandler = this
          return c.text('down', 503)
        },
      }),
    )
    app.get('*', (c) => c.text('ok'))
    await app.request('/a/x')
    expect((await app.request('/a/x')).status).toBe(429)
    expect((await app.request('/b/x')).status).toBe(503)
    expect(seen).toEqual({
      keyGenerator: undefined,
      skip: undefined,
      handler: undefined,
      unavailableHandler: undefined,
    })
    expect(Object.keys(seen)).toHaveLength(4)
  })
})
