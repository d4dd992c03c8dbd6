// End to end: the built server as a process, real HTTP over loopback.

import { afterEach, describe, expect, it } from 'vitest'
import { runToExit, startServer } from './server.test-helpers.js'
import type { RunningServer } from './server.test-helpers.js'

const running: RunningServer[] = []

afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop('SIGKILL')))
})

async function start(env: Record<string, string> = {}): Promise<RunningServer> {
  const server = await startServer(env)
  running.push(server)
  return server
}

describe('the hello server', () => {
  it('says hello 100 times, then answers 429 with the exact wait and the RateLimit fields', async () => {
    const server = await start()
    for (let i = 0; i < 100; i++) {
      const res = await fetch(`${server.url}/`)
      expect(res.status).toBe(200)
      expect(await res.text()).toBe('Hello, world!')
      expect(res.headers.get('ratelimit')).toMatch(
        new RegExp(`^"default";r=${99 - i};t=(3600|3599)$`),
      )
    }
    const res = await fetch(`${server.url}/`)
    expect(res.status).toBe(429)
    const body = await res.text()
    const match = /^Rate limit exceeded\. Try again in #(\d+) seconds$/.exec(body)
    expect(match).not.toBeNull()
    const seconds = Number(match?.[1])
    expect(seconds).toBeGreaterThanOrEqual(3590)
    expect(seconds).toBeLessThanOrEqual(3600)
    expect(res.headers.get('retry-after')).toBe(String(seconds))
    expect(res.headers.get('ratelimit')).toBe(`"default";r=0;t=${seconds}`)
    expect(res.headers.get('ratelimit-policy')).toBe('"default";q=100;w=3600')
    // /healthz is outside the limit.
    const health = await fetch(`${server.url}/healthz`)
    expect(health.status).toBe(200)
    expect(await health.json()).toEqual({
      status: 'ok',
      ready: true,
      store: { backend: 'memory', state: 'up' },
    })
    const ready = await fetch(`${server.url}/readyz`)
    expect(ready.status).toBe(200)
  })

  it('follows RATE_LIMIT and RATE_WINDOW_SECONDS', async () => {
    const server = await start({ RATE_LIMIT: '2', RATE_WINDOW_SECONDS: '60' })
    expect((await fetch(server.url)).status).toBe(200)
    expect((await fetch(server.url)).status).toBe(200)
    const denied = await fetch(server.url)
    expect(denied.status).toBe(429)
    expect(denied.headers.get('ratelimit-policy')).toBe('"default";q=2;w=60')
  })

  it('warns at start when the bucket is a large part of the window, and not otherwise', async () => {
    const fixed = await start({ RATE_WINDOW_SECONDS: '60', RATE_BUCKET_SECONDS: '60' })
    await fixed.waitForOutput(
      /"level":"warn".*"msg":"RATE_BUCKET_SECONDS equals RATE_WINDOW_SECONDS \(60\): this is a fixed window/,
    )
    const fine = await start({ RATE_WINDOW_SECONDS: '60', RATE_BUCKET_SECONDS: '6' })
    expect((await fetch(fine.url)).status).toBe(200)
    expect(fine.output()).not.toMatch(/RATE_BUCKET_SECONDS/)
  })

  it('ignores X-Forwarded-For unless TRUST_PROXY is set', async () => {
    const direct = await start({ RATE_LIMIT: '1' })
    expect((await fetch(direct.url, { headers: { 'x-forwarded-for': '1.1.1.1' } })).status).toBe(
      200,
    )
    expect((await fetch(direct.url, { headers: { 'x-forwarded-for': '2.2.2.2' } })).status).toBe(
      429,
    )

    const proxied = await start({ RATE_LIMIT: '1', TRUST_PROXY: '1' })
    const from = (xff: string) => fetch(proxied.url, { headers: { 'x-forwarded-for': xff } })
    expect((await from('9.9.9.9, 1.1.1.1')).status).toBe(200)
    expect((await from('8.8.8.8, 2.2.2.2')).status).toBe(200)
    // The client is the rightmost entry with one proxy: a forged left entry changes nothing.
    expect((await from('7.7.7.7, 1.1.1.1')).status).toBe(429)
    // Garbage falls back to the connection address, and never answers 500.
    expect((await from('not-an-ip')).status).toBe(200)
    expect((await from('x'.repeat(10_000))).status).toBe(429)
  })

  it('drains and exits 0 on SIGTERM and SIGINT', async () => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) {
      const server = await start()
      expect((await fetch(server.url)).status).toBe(200)
      expect(await server.stop(signal)).toBe(0)
      expect(server.output()).toContain('"msg":"stopped"')
    }
  })

  it.each([
    ['PORT', 'http', 'PORT="http": expected a whole number from 0 to 65535'],
    ['RATE_LIMIT', '0', 'RATE_LIMIT="0": expected a whole number from 1'],
    ['RATE_WINDOW_SECONDS', '1h', 'RATE_WINDOW_SECONDS="1h"'],
    ['STORE_BACKEND', 'redis', 'STORE_BACKEND="redis": expected one of memory, memcache'],
    ['STORE_FAILURE_MODE', 'maybe', 'STORE_FAILURE_MODE="maybe": expected one of open, closed'],
    ['MEMCACHE_CONNECTION_STRING', 'localhost', 'MEMCACHE_CONNECTION_STRING="localhost"'],
    [
      'MEMCACHE_CONNECTION_STRING',
      'cache:11211,CACHE:11211',
      'expected each server once (cache:11211 is listed twice)',
    ],
    ['TRUST_PROXY', 'yes please', 'TRUST_PROXY="yes please"'],
    ['LOG_LEVEL', 'loud', 'LOG_LEVEL="loud"'],
  ])('refuses %s=%s at start with one line naming it', async (name, value, message) => {
    const result = await runToExit({ [name]: value })
    expect(result.code).toBe(1)
    expect(result.stderr).toContain(message)
    expect(result.stderr.trim().split('\n')).toHaveLength(1)
    expect(result.stdout).toBe('')
  })
})
