import { createLimiter } from '@slidelimit/core'
import type { SlidingWindowLimiter } from '@slidelimit/core'
import { MemoryStore } from '@slidelimit/store-memory'
import { describe, expect, it } from 'vitest'
import { createApp } from './app.js'
import { loadConfig } from './config.js'
import { Health } from './health.js'
import type { Logger } from './logger.js'

/** A logger that keeps the access lines and errors it is given. */
function recording(): { logger: Logger; lines: unknown[][] } {
  const lines: unknown[][] = []
  const logger: Logger = {
    level: 'info',
    enabled: () => true,
    debug: () => undefined,
    info: () => undefined,
    warn: () => undefined,
    error: (msg) => {
      lines.push(['error', msg])
    },
    request: (method, path, status, _ms, client) => {
      lines.push([method, path, status, client])
    },
    close: () => Promise.resolve(),
  }
  return { logger, lines }
}

function appWith(limiter: SlidingWindowLimiter): {
  request: (method: string) => Promise<Response>
  lines: unknown[][]
} {
  const { logger, lines } = recording()
  const app = createApp({
    config: loadConfig({ LOG_LEVEL: 'info' }),
    policies: [{ name: 'default', limiter }],
    health: new Health({ logger }),
    logger,
  })
  const env = { incoming: { socket: { remoteAddress: '203.0.113.9' } } }
  return { request: async (method) => app.request('/', { method }, env), lines }
}

describe('the hello app', () => {
  it('limits GET / only: other methods on / are 404, uncounted, with one access line each', async () => {
    const { request, lines } = appWith(createLimiter({ store: new MemoryStore(), limit: 3 }))
    for (const method of ['POST', 'PUT', 'DELETE', 'OPTIONS', 'POST']) {
      const res = await request(method)
      expect(res.status).toBe(404)
      expect(res.headers.get('ratelimit')).toBeNull()
    }
    expect(lines).toEqual(
      ['POST', 'PUT', 'DELETE', 'OPTIONS', 'POST'].map((m) => [m, '/', 404, undefined]),
    )
    lines.length = 0
    const statuses = []
    for (let i = 0; i < 4; i++) {
      statuses.push((await request('GET')).status)
    }
    expect(statuses).toEqual([200, 200, 200, 429])
    expect(lines).toEqual(statuses.map((s) => ['GET', '/', s, '203.0.113.9']))
  })

  it('writes the access line of a 500 thrown inside the limiter', async () => {
    const limiter = createLimiter({ store: new MemoryStore(), limit: 3 })
    limiter.decide = () => {
      throw new TypeError('boom')
    }
    const { request, lines } = appWith(limiter)
    expect((await request('GET')).status).toBe(500)
    expect(lines).toEqual([
      ['GET', '/', 500, undefined],
      ['error', 'unhandled error'],
    ])
  })
})
