import { describe, expect, it } from 'vitest'
import { EnvError, bucketWarning, loadConfig, parseServers } from './config.js'

describe('loadConfig', () => {
  it('runs on defaults alone', () => {
    expect(loadConfig({})).toEqual({
      port: 5000,
      host: '0.0.0.0',
      storeBackend: 'memory',
      memcacheServers: ['127.0.0.1:11211'],
      memcacheTimeoutMs: 50,
      rateLimit: 100,
      windowSeconds: 3600,
      bucketSeconds: 1,
      failureMode: 'open',
      trustProxy: 0,
      proxyHeader: 'x-forwarded-for',
      ipv6Subnet: 56,
      burst: undefined,
      logLevel: 'info',
      headersTimeoutMs: 15_000,
      requestTimeoutMs: 30_000,
      keepAliveTimeoutMs: 65_000,
      maxConnections: undefined,
    })
  })

  it('reads every variable', () => {
    const config = loadConfig({
      PORT: '8080',
      HOST: '127.0.0.1',
      STORE_BACKEND: 'memcache',
      MEMCACHE_CONNECTION_STRING: 'cache-a:11211, [::1]:11212',
      RATE_LIMIT: '10',
      RATE_WINDOW_SECONDS: '60',
      RATE_BUCKET_SECONDS: '5',
      STORE_FAILURE_MODE: 'closed',
      TRUST_PROXY: '2',
      TRUST_PROXY_HEADER: 'Forwarded',
      IPV6_SUBNET: '64',
      RATE_LIMIT_BURST: '5/2',
      LOG_LEVEL: 'warn',
      HEADERS_TIMEOUT_MS: '5000',
      REQUEST_TIMEOUT_MS: '20000',
      KEEP_ALIVE_TIMEOUT_MS: '75000',
      MAX_CONNECTIONS: '2000',
    })
    expect(config).toMatchObject({
      port: 8080,
      host: '127.0.0.1',
      storeBackend: 'memcache',
      memcacheServers: ['cache-a:11211', '[::1]:11212'],
      rateLimit: 10,
      windowSeconds: 60,
      bucketSeconds: 5,
      failureMode: 'closed',
      trustProxy: 2,
      proxyHeader: 'forwarded',
      ipv6Subnet: 64,
      burst: { limit: 5, windowSeconds: 2 },
      logLevel: 'warn',
      headersTimeoutMs: 5000,
      requestTimeoutMs: 20_000,
      keepAliveTimeoutMs: 75_000,
      maxConnections: 2000,
    })
  })

  it('refuses server timeouts and a connection cap out of range', () => {
    for (const [variable, value] of [
      ['HEADERS_TIMEOUT_MS', '0'],
      ['HEADERS_TIMEOUT_MS', '600001'],
      ['HEADERS_TIMEOUT_MS', '1.5'],
      ['REQUEST_TIMEOUT_MS', '99'],
      ['REQUEST_TIMEOUT_MS', '3600001'],
      ['KEEP_ALIVE_TIMEOUT_MS', '0'],
      ['KEEP_ALIVE_TIMEOUT_MS', 'forever'],
      ['MAX_CONNECTIONS', '0'],
      ['MAX_CONNECTIONS', '1000001'],
      ['MAX_CONNECTIONS', '-5'],
    ] as const) {
      expect(() => loadConfig({ [variable]: value }), `${variable}=${value}`).toThrow(
        new RegExp(`^Invalid ${variable}=`),
      )
    }
  })

  it('refuses a request timeout shorter than the headers timeout, as Node would', () => {
    expect(() => loadConfig({ HEADERS_TIMEOUT_MS: '20000', REQUEST_TIMEOUT_MS: '10000' })).toThrow(
      'Invalid REQUEST_TIMEOUT_MS="10000": expected a whole number from HEADERS_TIMEOUT_MS (20000) to 3600000',
    )
  })

  it('lengthens the default request timeout to a longer headers timeout', () => {
    expect(loadConfig({ HEADERS_TIMEOUT_MS: '45000' })).toMatchObject({
      headersTimeoutMs: 45_000,
      requestTimeoutMs: 45_000,
    })
  })

  it('treats TRUST_PROXY=false as off', () => {
    expect(loadConfig({ TRUST_PROXY: 'false' }).trustProxy).toBe(0)
  })

  it('reads TRUST_PROXY as proxy addresses and CIDR ranges', () => {
    expect(loadConfig({ TRUST_PROXY: '10.0.0.0/8, 192.168.1.5,2001:db8::/32' }).trustProxy).toEqual(
      ['10.0.0.0/8', '192.168.1.5', '2001:db8::/32'],
    )
    for (const bad of [
      '10.0.0.0/33',
      'proxy.internal',
      '10.0.0.1,,',
      '33',
      'true',
      '0.0.0.0/0',
      '::/0',
      '::ffff:0:0/96',
      '10.0.0.0/8,0.0.0.0/0',
      '0.0.0.0/1,128.0.0.0/1',
    ]) {
      expect(() => loadConfig({ TRUST_PROXY: bad })).toThrow(/^Invalid TRUST_PROXY=/)
    }
    // A range covering every address trusts any client, as true would: the same refusal.
    const expected = (raw: string) => {
      try {
        loadConfig({ TRUST_PROXY: raw })
      } catch (error) {
        return (error as Error).message.replace(JSON.stringify(raw), 'X')
      }
      return 'accepted'
    }
    expect(expected('0.0.0.0/0')).toBe(expected('true'))
  })

  it('refuses a burst policy that is not LIMIT/SECONDS inside the window', () => {
    for (const bad of ['10', '10/0', '0/1', '10/3600', 'ten/1', '10/1/1']) {
      expect(() => loadConfig({ RATE_LIMIT_BURST: bad })).toThrow(/^Invalid RATE_LIMIT_BURST=/)
    }
    expect(() => loadConfig({ IPV6_SUBNET: '129' })).toThrow(/^Invalid IPV6_SUBNET="129"/)
    expect(() => loadConfig({ TRUST_PROXY_HEADER: 'x-real-ip' })).toThrow(/TRUST_PROXY_HEADER/)
  })

  it('names the variable, the value and what is allowed', () => {
    expect(() => loadConfig({ RATE_BUCKET_SECONDS: '7' })).toThrow(
      'Invalid RATE_BUCKET_SECONDS="7": expected a divisor of RATE_WINDOW_SECONDS (3600)',
    )
    expect(() => loadConfig({ PORT: '70000' })).toThrow(EnvError)
    expect(() => loadConfig({ HOST: 'bad host!' })).toThrow(/HOST/)
    // One host name rule with MEMCACHE_CONNECTION_STRING: underscores pass (container names),
    // digits and dots that are no IPv4 address do not.
    expect(loadConfig({ HOST: 'app_1.internal' }).host).toBe('app_1.internal')
    expect(() => loadConfig({ HOST: '127.1' })).toThrow(/HOST/)
    expect(() => loadConfig({ RATE_LIMIT: '-5' })).toThrow(/RATE_LIMIT="-5"/)
  })

  it('warns when the bucket is more than a tenth of the window, and says a fixed window when equal', () => {
    expect(bucketWarning(loadConfig({}))).toBeUndefined()
    expect(bucketWarning(loadConfig({ RATE_BUCKET_SECONDS: '360' }))).toBeUndefined()
    expect(bucketWarning(loadConfig({ RATE_BUCKET_SECONDS: '600' }))).toBe(
      'RATE_BUCKET_SECONDS=600 is more than a tenth of RATE_WINDOW_SECONDS=3600: a request leaves the window between 3000 and 3600 s after it was made',
    )
    expect(
      bucketWarning(loadConfig({ RATE_WINDOW_SECONDS: '60', RATE_BUCKET_SECONDS: '60' })),
    ).toMatch(/^RATE_BUCKET_SECONDS equals RATE_WINDOW_SECONDS \(60\): this is a fixed window/)
  })

  it('shows a long bad value shortened, so the line still says what is allowed', () => {
    const value = 'x'.repeat(100_000)
    let message = ''
    try {
      loadConfig({ RATE_LIMIT: value })
    } catch (error) {
      message = (error as Error).message
    }
    expect(message).toBe(
      `Invalid RATE_LIMIT="${'x'.repeat(60)}"... (100000 characters): expected a whole number from 1 to 1000000000`,
    )
  })

  it('refuses a memcached server listed twice, however it is spelled', () => {
    expect(() =>
      loadConfig({ MEMCACHE_CONNECTION_STRING: 'cache:11211,[::1]:11211,[0:0::1]:11211' }),
    ).toThrow(
      'Invalid MEMCACHE_CONNECTION_STRING="cache:11211,[::1]:11211,[0:0::1]:11211": expected each server once ([::1]:11211 is listed twice)',
    )
  })
})

describe('parseServers', () => {
  it('accepts host:port lists and refuses anything else', () => {
    expect(parseServers('127.0.0.1:11211')).toEqual(['127.0.0.1:11211'])
    expect(parseServers('a:1,b.example:2')).toEqual(['a:1', 'b.example:2'])
    for (const bad of [
      '',
      'host',
      'host:',
      ':11211',
      'host:0',
      'host:99999',
      'a:1,,b:2',
      '::1:11211',
      'ho st:1',
    ]) {
      expect(parseServers(bad)).toBeUndefined()
    }
  })
})
