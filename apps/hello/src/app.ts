// The hello app: GET / behind the rate limiter; GET /healthz (liveness) and GET /readyz
// (readiness) outside it; access logs.

import type { SlidingWindowLimiter } from '@slidelimit/core'
import { rateLimiter } from '@slidelimit/hono-middleware'
import type { RateLimitInfo } from '@slidelimit/hono-middleware'
import { Hono } from 'hono'
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

export function createApp({ config, policies, health, logger }: AppParts): Hono {
  const app = new Hono()

  if (logger.enabled('info')) {
    app.use(async (c, next) => {
      const start = performance.now()
      await next()
      logger.info('request', {
        method: c.req.method,
        path: c.req.path,
        status: c.res.status,
        ms: Math.round((performance.now() - start) * 100) / 100,
        // Unset on routes outside the limiter, such as /healthz.
        client: (c.var.rateLimit as RateLimitInfo | undefined)?.key,
      })
    })
  }

  // Neither calls memcached: both report what the store already knows (health.ts).
  app.get('/healthz', (c) => c.json(health.report()))
  app.get('/readyz', (c) => {
    const report = health.report()
    return c.json(report, report.ready ? 200 : 503)
  })

  const limit = rateLimiter({
    ...(policies.length === 1
      ? { limiter: (policies[0] as AppParts['policies'][number]).limiter }
      : { policies }),
    trustProxy: config.trustProxy,
    proxyHeader: config.proxyHeader,
    ipv6Subnet: config.ipv6Subnet,
    logger,
  })
  // Wrapped around the handler (not app.use): the limiter's fastest path.
  app.get(
    '/',
    limit.wrap((c) => c.text('Hello, world!')),
  )

  app.onError((err, c) => {
    logger.error('unhandled error', { path: c.req.path, error: err.message })
    return c.text('Internal Server Error', 500)
  })

  return app
}
