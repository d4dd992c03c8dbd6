// End to end: who the client is, against the built server over real HTTP. Spoofed forwarding
// headers, trusted proxies by count and by address, hostile headers, IPv6 prefixes and
// IPv4-mapped addresses.

import { afterEach, describe, expect, it } from 'vitest'
import { startServer } from './server.test-helpers.js'
import type { RunningServer } from './server.test-helpers.js'

const running: RunningServer[] = []

afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.stop('SIGKILL')))
})

async function start(env: Record<string, string>): Promise<RunningServer> {
  const server = await startServer({ RATE_LIMIT: '1', ...env })
  running.push(server)
  return server
}

function get(url: string, headers: Record<string, string> = {}): Promise<Response> {
  return fetch(url, { headers })
}

describe('client identity', () => {
  it('with no TRUST_PROXY, a client cannot choose its key with forwarding headers', async () => {
    const server = await start({})
    expect((await get(server.url, { 'x-forwarded-for': '1.1.1.1' })).status).toBe(200)
    expect((await get(server.url, { 'x-forwarded-for': '2.2.2.2' })).status).toBe(429)
    expect((await get(server.url, { forwarded: 'for=3.3.3.3' })).status).toBe(429)
  })

  it('with TRUST_PROXY as addresses, takes the nearest untrusted address', async () => {
    // The test client (127.0.0.1) is the trusted proxy, as is 10.1.2.3 behind it.
    const server = await start({ TRUST_PROXY: '127.0.0.1,10.0.0.0/8' })
    const via = (xff: string) => get(server.url, { 'x-forwarded-for': xff })
    expect((await via('203.0.113.9, 10.1.2.3')).status).toBe(200)
    // The same client with a forged entry on the left: still the same key, still limited.
    const spoofed = await via('6.6.6.6, 203.0.113.9, 10.1.2.3')
    expect(spoofed.status).toBe(429)
    expect((await via('198.51.100.7')).status).toBe(200)
  })

  it('ignores forwarding headers from a connection that is not a trusted proxy', async () => {
    const server = await start({ TRUST_PROXY: '10.0.0.0/8' })
    expect((await get(server.url, { 'x-forwarded-for': '1.1.1.1' })).status).toBe(200)
    expect((await get(server.url, { 'x-forwarded-for': '2.2.2.2' })).status).toBe(429)
  })

  it('reads Forwarded (RFC 7239) when TRUST_PROXY_HEADER says so', async () => {
    const server = await start({ TRUST_PROXY: '1', TRUST_PROXY_HEADER: 'forwarded' })
    const via = (value: string) => get(server.url, { forwarded: value })
    expect((await via('for=192.0.2.60;proto=http;by=203.0.113.43')).status).toBe(200)
    expect((await via('for="[2001:db8:cafe::17]:4711"')).status).toBe(200)
    expect((await via('for=unknown, for=192.0.2.60')).status).toBe(429)
    // X-Forwarded-For is not the configured header: it counts for nothing.
    expect((await get(server.url, { 'x-forwarded-for': '5.5.5.5' })).status).toBe(200)
    expect((await get(server.url, { 'x-forwarded-for': '6.6.6.6' })).status).toBe(429)
  })

  it('keys a client behind trusted proxies by what they wrote, whatever it put to the left', async () => {
    // Two proxies: the test client (the nearest) and 10.0.0.2, which saw 198.51.100.20.
    const server = await start({ TRUST_PROXY: '2' })
    const left = [
      'x'.repeat(9000),
      Array.from({ length: 700 }, (_, i) => `10.0.${i >> 8}.${i & 255}`).join(','),
      '1.1.1.1, \u00ff\u00fe',
      '999.1.1.1, "unterminated',
      ', , ,',
    ]
    const statuses = []
    for (const value of left) {
      const xff = `${value}, 198.51.100.20, 10.0.0.2`
      statuses.push((await get(server.url, { 'x-forwarded-for': xff })).status)
    }
    // One client, one key: the first passes, the rest share its (exhausted) limit.
    expect(statuses).toEqual([200, 429, 429, 429, 429])
  })

  it('answers headers the trusted proxies could not have written from the socket address, never 500, and logs them at debug', async () => {
    const server = await start({ TRUST_PROXY: '2', LOG_LEVEL: 'debug' })
    const hostile = ['x'.repeat(9000), '1.1.1.1, \u00ff\u00fe', '999.1.1.1, 1.2.3.4', ', , ,']
    const statuses = []
    for (const value of hostile) {
      statuses.push((await get(server.url, { 'x-forwarded-for': value })).status)
    }
    // All from the socket address: the first passes, the rest share its (exhausted) limit.
    expect(statuses).toEqual([200, 429, 429, 429])
    await server.waitForOutput(/"msg":"ignored x-forwarded-for: no client address in it"/)
    await server.waitForOutput(/is not an IP address/)
    // Past Node's own header limit (16 KiB) the answer is 431, still not 500.
    expect((await get(server.url, { 'x-forwarded-for': 'y'.repeat(20_000) })).status).toBe(431)
  })

  it('keys IPv6 clients by their /56 and IPv4-mapped clients by their IPv4 address', async () => {
    const server = await start({ TRUST_PROXY: '1', RATE_LIMIT: '2' })
    const from = (xff: string) => get(server.url, { 'x-forwarded-for': xff })
    // Two addresses in 2001:db8:abcd:1200::/56 share one limit of 2...
    expect((await from('2001:db8:abcd:1201::1')).status).toBe(200)
    expect((await from('2001:db8:abcd:12ff:ffff::2')).status).toBe(200)
    expect((await from('2001:db8:abcd:1200::3')).status).toBe(429)
    // ...a neighbouring /56 has its own.
    expect((await from('2001:db8:abcd:1300::1')).status).toBe(200)
    // ::ffff:198.51.100.1 and 198.51.100.1 are one client.
    expect((await from('::ffff:198.51.100.1')).status).toBe(200)
    expect((await from('198.51.100.1')).status).toBe(200)
    expect((await from('::ffff:c633:6401')).status).toBe(429)
  })

  it('keys real IPv6 and IPv4-mapped connections on a dual-stack listener', async () => {
    const server = await start({ HOST: '::', RATE_LIMIT: '1', IPV6_SUBNET: '128' })
    const v6 = server.url.replace('127.0.0.1', '[::1]')
    expect((await get(v6)).status).toBe(200)
    expect((await get(v6)).status).toBe(429)
    // 127.0.0.1 reaches the :: listener as ::ffff:127.0.0.1, and is keyed as 127.0.0.1.
    const v4 = await get(server.url)
    expect(v4.status).toBe(200)
    // The access log line is written as the answer goes out; wait for it to arrive here.
    await server.waitForOutput(/"client":"127\.0\.0\.1"/)
    expect(server.output()).toContain('"client":"::1"')
  })

  it('applies a second policy from RATE_LIMIT_BURST, one header item each', async () => {
    const server = await start({ RATE_LIMIT: '100', RATE_LIMIT_BURST: '2/5' })
    const first = await get(server.url)
    expect(first.headers.get('ratelimit-policy')).toBe('"default";q=100;w=3600, "burst";q=2;w=5')
    expect(first.headers.get('ratelimit')).toMatch(/^"default";r=99;t=\d+, "burst";r=1;t=\d+$/)
    expect((await get(server.url)).status).toBe(200)
    const denied = await get(server.url)
    expect(denied.status).toBe(429)
    const retry = Number(denied.headers.get('retry-after'))
    expect(retry).toBeGreaterThanOrEqual(1)
    expect(retry).toBeLessThanOrEqual(5)
    // The hourly policy took its count back: 98 left, not 97.
    expect(denied.headers.get('ratelimit')).toMatch(/^"default";r=98;t=\d+, "burst";r=0;t=\d+$/)
  })
})
