// One benchmark server process: Hono answering GET / with "Hello, world!", behind the limiter
// named by BENCH_SERVER. Every limiter keys requests by the x-client header, so every server
// sees the same clients.
//
//   BENCH_SERVER  one of servers.ts's SERVERS
//
// slidelimit runs as `limit.wrap(handler)` on the route (its fast path), and as `app.use`
// middleware, as the other limiters do: `app.use('/', ...)` (slidelimit-memory-middleware) and
// `app.use('/api/*', ...)` beside a route it does not cover (slidelimit-memory-use-api). Their
// baselines, noop and noop-api, are the same apps with a middleware that only awaits `next()`.
//   PORT, BENCH_LIMIT (per hour), BENCH_MEMCACHED (host:port)

import { serve } from '@hono/node-server'
import { FailoverStore, createLimiter } from '@slidelimit/core'
import { rateLimiter as slidelimit } from '@slidelimit/hono-middleware'
import { MemcacheStore } from '@slidelimit/store-memcache'
import { MemoryStore } from '@slidelimit/store-memory'
import { Hono } from 'hono'
import type { Context, Handler, MiddlewareHandler } from 'hono'
import { rateLimiter as honoRateLimiter } from 'hono-rate-limiter'
import Memcached from 'memcached'
import { RateLimiterMemcache, RateLimiterMemory, RateLimiterRes } from 'rate-limiter-flexible'
import type { RateLimiterAbstract } from 'rate-limiter-flexible'

import { SERVERS } from './servers.js'
import type { ServerKind } from './servers.js'

const WINDOW_SECONDS = 3600
const key = (c: Context): string => c.req.header('x-client') ?? 'anonymous'

/** rate-limiter-flexible as a small Hono middleware, as its docs suggest for other frameworks. */
function flexible(limiter: RateLimiterAbstract): MiddlewareHandler {
  return async (c, next) => {
    try {
      await limiter.consume(key(c))
    } catch (rejection) {
      if (rejection instanceof RateLimiterRes) {
        c.header('Retry-After', String(Math.ceil(rejection.msBeforeNext / 1000)))
        return c.text('Too Many Requests', 429)
      }
      // A store error: let the request through, as the others fail open.
    }
    await next()
    return undefined
  }
}

/** How a limiter joins the app: as `app.use` middleware, or wrapped around the route. */
type Mount = { middleware: MiddlewareHandler } | { wrap: (route: Handler) => Handler } | undefined

function limiterFor(kind: ServerKind, limit: number, memcached: string): Mount {
  switch (kind) {
    case 'bare':
      return undefined
    case 'noop':
    case 'noop-api':
      return {
        middleware: async (_c, next) => {
          await next()
        },
      }
    case 'slidelimit-memory':
    case 'slidelimit-memory-noheaders':
    case 'slidelimit-memory-middleware':
    case 'slidelimit-memory-use-api': {
      const limiter = slidelimit({
        store: new MemoryStore(),
        limit,
        windowSeconds: WINDOW_SECONDS,
        keyGenerator: key,
        headers: kind !== 'slidelimit-memory-noheaders',
      })
      return kind === 'slidelimit-memory-middleware' || kind === 'slidelimit-memory-use-api'
        ? { middleware: limiter }
        : { wrap: limiter.wrap }
    }
    case 'slidelimit-memcache': {
      const store = new FailoverStore({
        primary: new MemcacheStore({ servers: memcached, deadlineMs: 200 }),
        fallback: new MemoryStore(),
        onStateChange: ({ state }) => {
          process.stderr.write(`slidelimit-memcache: memcached is ${state}\n`)
        },
      })
      return {
        wrap: slidelimit({
          limiter: createLimiter({ store, limit, windowSeconds: WINDOW_SECONDS }),
          keyGenerator: key,
        }).wrap,
      }
    }
    case 'hono-rate-limiter':
      return {
        middleware: honoRateLimiter({
          windowMs: WINDOW_SECONDS * 1000,
          limit,
          standardHeaders: 'draft-7',
          keyGenerator: key,
        }),
      }
    case 'rlf-memory':
      return {
        middleware: flexible(new RateLimiterMemory({ points: limit, duration: WINDOW_SECONDS })),
      }
    case 'rlf-memcache':
      return {
        middleware: flexible(
          new RateLimiterMemcache({
            storeClient: new Memcached(memcached),
            points: limit,
            duration: WINDOW_SECONDS,
          }),
        ),
      }
  }
}

export function buildApp(kind: ServerKind, limit: number, memcached: string): Hono {
  const app = new Hono()
  const hello: Handler = (c) => c.text('Hello, world!')
  const mount = limiterFor(kind, limit, memcached)
  if (kind.endsWith('-api')) {
    // The middleware covers /api/* only; GET / is a second route it does not cover.
    if (mount !== undefined && 'middleware' in mount) {
      app.use('/api/*', mount.middleware)
    }
    app.get('/api/hello', hello)
    app.get('/', (c) => c.text('not limited'))
  } else if (mount === undefined) {
    app.get('/', hello)
  } else if ('middleware' in mount) {
    app.use('/', mount.middleware)
    app.get('/', hello)
  } else {
    app.get('/', mount.wrap(hello))
  }
  return app
}

function main(): void {
  const kind = process.env.BENCH_SERVER as ServerKind | undefined
  if (kind === undefined || !SERVERS.includes(kind)) {
    process.stderr.write(`BENCH_SERVER must be one of ${SERVERS.join(', ')}\n`)
    process.exit(2)
  }
  const limit = Number(process.env.BENCH_LIMIT ?? 1_000_000_000)
  const app = buildApp(kind, limit, process.env.BENCH_MEMCACHED ?? '127.0.0.1:11211')
  serve(
    { fetch: app.fetch, port: Number(process.env.PORT ?? 0), hostname: '127.0.0.1' },
    (info) => {
      process.stdout.write(`listening ${info.port}\n`)
    },
  )
  process.on('SIGTERM', () => process.exit(0))
}

main()
