// The hello app: GET / behind the rate limiter, GET /healthz outside it, and access logs.

import { FailoverStore } from '@slidelimit/core'
import type { SlidingWindowLimiter, Store } from '@slidelimit/core'
import { rateLimiter } from '@slidelimit/hono-middleware'
import type { RateLimitInfo } from '@slidelimit/hono-middleware'
import { Hono } from 'hono'
import type { Config } from './config.js'
import type { Logger } from './logger.js'

export interface AppParts {
  config: Config
  /** The policies on GET /: the main one, then the burst one when configured. */
  policies: { name: string; limiter: SlidingWindowLimiter }[]
  store: Store
  logger: Logger
}

/** Milliseconds /healthz waits for the store to answer a ping. */
const HEALTH_TIMEOUT_MS = 500

function withTimeout(promise: Promise<void>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`no answer within ${ms} ms`))
    }, ms)
  })
  return Promise.race([promise, timeout]).finally(() => {
    clearTimeout(timer)
  })
}

export function createApp({ config, policies, store, logger }: AppParts): Hono {
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

  app.get('/healthz', async (c) => {
    let state: 'up' | 'down' = 'up'
    let error: string | undefined
    try {
      await withTimeout(store.ping(), HEALTH_TIMEOUT_MS)
    } catch (err) {
      state = 'down'
      error = err instanceof Error ? err.message : String(err)
    }
    return c.json({
      status: 'ok',
      store: {
        backend: config.storeBackend,
        state,
        ...(store instanceof FailoverStore && { failureMode: store.mode }),
        ...(error !== undefined && { error }),
      },
    })
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
