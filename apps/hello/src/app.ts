// The hello app: GET / behind the rate limiter; GET /healthz (liveness) and GET /readyz
// (readiness) outside it; access logs.

import type { SlidingWindowLimiter } from '@slidelimit/core'
import { rateLimiter } from '@slidelimit/hono-middleware'
import type { RateLimitInfo } from '@slidelimit/hono-middleware'
import { Hono } from 'hono'
import type { Context, MiddlewareHandler, Next } from 'hono'
import type { Config } from './config.js'
import type { Health } from './health.js'
import type { Logger } from './logger.js'

export interface AppParts {
  config: Config
  /** The policies on GET /: the main one, then the burst one when configured. */
  policies: { name: string; limiter: SlidingWindowLimiter }[]
  /** What /healthz and /readyz report, kept current in the background. */
  health: Health
  logger: Logger
}

type Handler = (c: Context, next: Next) => Response | Promise<Response>

export function createApp({ config, policies, health, logger }: AppParts): Hono {
  const app = new Hono()
  const logging = logger.enabled('info')

  const line = (c: Context, status: number, start: number): void => {
    logger.request(
      c.req.method,
      c.req.path,
      status,
      Math.round((performance.now() - start) * 100) / 100,
      // Unset on routes outside the limiter, such as /healthz.
      (c.get('rateLimit') as RateLimitInfo | undefined)?.key,
    )
  }

  /**
   * The route's handler, logging one access line per answer when LOG_LEVEL is info or below.
   * A wrapper around each handler rather than a middleware of its own: another middleware on
   * every route costs about a fifth of the throughput, this costs a call.
   */
  const logged = (handler: Handler): Handler => {
    if (!logging) {
      return handler
    }
    return (c, next) => {
      const start = performance.now()
      const res = handler(c, next)
      if (res instanceof Response) {
        line(c, res.status, start)
        return res
      }
      return res.then((r) => {
        line(c, r.status, start)
        return r
      })
    }
  }

  /**
   * The same for a middleware: its line shows the answer it or the route gave, or a 500 when it
   * throws (onError answers that).
   */
  const loggedMiddleware = (middleware: MiddlewareHandler): MiddlewareHandler => {
    if (!logging) {
      return middleware
    }
    return async (c, next) => {
      const start = performance.now()
      let res: Response | undefined
      try {
        res = (await middleware(c, next)) ?? undefined
      } catch (error) {
        line(c, 500, start)
        throw error
      }
      line(c, (res ?? c.res).status, start)
      return res
    }
  }

  // Neither calls memcached: both report what the store already knows (health.ts).
  app.get(
    '/healthz',
    logged((c) => c.json(health.report())),
  )
  app.get(
    '/readyz',
    logged((c) => {
      const report = health.report()
      return c.json(report, report.ready ? 200 : 503)
    }),
  )

  const limit = rateLimiter({
    ...(policies.length === 1
      ? { limiter: (policies[0] as AppParts['policies'][number]).limiter }
      : { policies }),
    trustProxy: config.trustProxy,
    proxyHeader: config.proxyHeader,
    ipv6Subnet: config.ipv6Subnet,
    logger,
  })
  // As the README recommends, as middleware (the form every Hono middleware takes), here on the
  // one route it limits, GET / (and HEAD): other methods on / and the health checks are not
  // counted.
  app.get('/', loggedMiddleware(limit), (c) => c.text('Hello, world!'))

  const notFound = logged((c) => c.text('404 Not Found', 404))
  app.notFound((c) => notFound(c, () => Promise.resolve()))

  app.onError((err, c) => {
    logger.error('unhandled error', { path: c.req.path, error: err.message })
    return c.text('Internal Server Error', 500)
  })

  return app
}
