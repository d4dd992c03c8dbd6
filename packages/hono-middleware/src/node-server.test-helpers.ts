// The middleware served by a given version of @hono/node-server, through its light responses
// (node-server.ts) and through the public path, with what a client receives checked over HTTP.
// Each version is tested in a file of its own: serving replaces the global Response class.

import type { AddressInfo } from 'node:net'
import type { Server } from 'node:http'
import { MemoryStore } from '@slidelimit/store-memory'
import { Hono } from 'hono'
import { expect, it } from 'vitest'
import { withFields } from './fields.js'
import { lightPartsState } from './node-server.js'
import { rateLimiter } from './rate-limiter.js'

/** The global Response before any server replaced it (undici's). */
const GlobalResponse = globalThis.Response

type Serve = (options: { fetch: Hono['fetch']; port: number; hostname: string }) => unknown

function start(serve: Serve, app: Hono): Promise<{ url: string; close: () => Promise<void> }> {
  return new Promise((resolve) => {
    const server = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }) as Server
    server.once('listening', () => {
      const { port } = server.address() as AddressInfo
      resolve({
        url: `http://127.0.0.1:${port}`,
        close: () =>
          new Promise((done) => {
            server.closeAllConnections()
            server.close(() => {
              done()
            })
          }),
      })
    })
  })
}

/** Every kind of response a route can give, behind `app.use('/api/*', rateLimiter(...))`. */
function appWithRoutes(): Hono {
  const app = new Hono()
  app.use(
    '/api/*',
    // A limit per route, so that each route is seen admitted twice, then denied.
    rateLimiter({
      store: new MemoryStore(),
      limit: 2,
      windowSeconds: 60,
      keyGenerator: (c) => c.req.path,
    }),
  )
  app.get('/api/text', (c) => c.text('hello'))
  app.get('/api/json', (c) => c.json({ ok: true }))
  app.get('/api/custom', (c) => c.text('custom', 201, { 'x-custom': 'kept' }))
  app.get('/api/header', (c) => {
    c.header('x-set', 'by c.header')
    return c.text('with a Headers object')
  })
  app.get('/api/redirect', (c) => c.redirect('/elsewhere'))
  app.get('/api/immutable', () => GlobalResponse.redirect('http://127.0.0.1/moved', 302))
  app.get('/api/stream', () => {
    const body = new ReadableStream({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('streamed'))
        controller.close()
      },
    })
    return new Response(body, { headers: { 'content-type': 'text/x-stream' } })
  })
  app.get('/api/undici', () => new GlobalResponse('from undici'))
  app.get('/open', (c) => c.text('not limited'))
  return app
}

const ROUTES: [path: string, status: number, body: string, headers: Record<string, string>][] = [
  ['/api/text', 200, 'hello', { 'content-type': 'text/plain; charset=UTF-8' }],
  ['/api/json', 200, '{"ok":true}', { 'content-type': 'application/json' }],
  ['/api/custom', 201, 'custom', { 'x-custom': 'kept' }],
  ['/api/header', 200, 'with a Headers object', { 'x-set': 'by c.header' }],
  ['/api/redirect', 302, '', { location: '/elsewhere' }],
  ['/api/immutable', 302, '', { location: 'http://127.0.0.1/moved' }],
  ['/api/stream', 200, 'streamed', { 'content-type': 'text/x-stream' }],
  ['/api/undici', 200, 'from undici', {}],
]

/** The tests, for the `serve` of one version of @hono/node-server. */
export function servesThrough(serve: Serve): void {
  it('adds the fields to every kind of response, light or not, and keeps the route’s own', async () => {
    const server = await start(serve, appWithRoutes())
    try {
      for (const [path, status, body, headers] of ROUTES) {
        for (const remaining of [1, 0]) {
          const res = await fetch(server.url + path, { redirect: 'manual' })
          expect(res.status, path).toBe(status)
          expect(await res.text(), path).toBe(body)
          expect(res.headers.get('ratelimit-policy'), path).toBe('"default";q=2;w=60')
          expect(res.headers.get('ratelimit'), path).toMatch(
            new RegExp(`^"default";r=${remaining};t=\\d+$`),
          )
          for (const [name, value] of Object.entries(headers)) {
            expect(res.headers.get(name), `${path} ${name}`).toBe(value)
          }
        }
        const denied = await fetch(server.url + path, { redirect: 'manual' })
        expect(denied.status, path).toBe(429)
        expect(denied.headers.get('retry-after'), path).toMatch(/^\d+$/)
        expect(denied.headers.get('ratelimit'), path).toMatch(/^"default";r=0;t=\d+$/)
      }
      const open = await fetch(`${server.url}/open`)
      expect(await open.text()).toBe('not limited')
      expect(open.headers.get('ratelimit')).toBeNull()
    } finally {
      await server.close()
    }
  })

  it('uses the light path for the responses this version makes', async () => {
    const server = await start(serve, appWithRoutes())
    try {
      await fetch(`${server.url}/api/text`)
      // The server replaced the global Response with its light class.
      expect(globalThis.Response).not.toBe(GlobalResponse)
      expect(lightPartsState(new Response('x'))).toBe('found')
    } finally {
      await server.close()
    }
  })

  it('falls back to the public path for a class whose cache has another shape, and stops looking', () => {
    const cache = Symbol('cache')
    class Odd extends GlobalResponse {
      [cache] = { status: 200 }
    }
    const odd = new Odd('odd')
    const res = withFields(odd, { RateLimit: '"default";r=1;t=60' })
    expect(res.headers.get('ratelimit')).toBe('"default";r=1;t=60')
    expect(odd[cache]).toEqual({ status: 200 })
    expect(lightPartsState(new Odd('again'))).toBe('given up')
  })
}
