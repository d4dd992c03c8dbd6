import { createServer } from 'node:http'
import { describe, expect, it } from 'vitest'
import { loadConfig } from './config.js'
import {
  DEFAULT_MAX_CONNECTIONS,
  connectionCeiling,
  httpServerOptions,
  maxConnections,
  openFileLimit,
} from './server-options.js'

const LIMITS = `Limit                     Soft Limit           Hard Limit           Units
Max processes             62987                62987                processes
Max open files            20000                1048576              files
`

describe('server options', () => {
  it('reads the soft open-file limit, and nothing where it cannot', () => {
    expect(openFileLimit(() => LIMITS)).toBe(20_000)
    expect(openFileLimit(() => LIMITS.replace('20000', 'unlimited'))).toBeUndefined()
    expect(
      openFileLimit(() => {
        throw new Error('ENOENT')
      }),
    ).toBeUndefined()
  })

  it('caps connections at 10,000 or 90% of the open-file limit, whichever is lower', () => {
    expect(maxConnections({ maxConnections: undefined }, 1_048_576)).toBe(DEFAULT_MAX_CONNECTIONS)
    expect(maxConnections({ maxConnections: undefined }, 1024)).toBe(921)
    expect(maxConnections({ maxConnections: undefined }, undefined)).toBe(DEFAULT_MAX_CONNECTIONS)
    expect(maxConnections({ maxConnections: 50_000 }, 1024)).toBe(50_000)
    expect(connectionCeiling(1024)).toBe(921)
  })

  it('gives Node production timeouts it accepts, checked at least once a second', () => {
    const options = httpServerOptions(loadConfig({}))
    expect(options).toEqual({
      headersTimeout: 15_000,
      requestTimeout: 30_000,
      keepAliveTimeout: 65_000,
      connectionsCheckingInterval: 1000,
    })
    const server = createServer(options)
    expect(server.headersTimeout).toBe(15_000)
    expect(server.keepAliveTimeout).toBe(65_000)
    expect(httpServerOptions(loadConfig({ HEADERS_TIMEOUT_MS: '1000' }))).toMatchObject({
      connectionsCheckingInterval: 250,
    })
  })
})
