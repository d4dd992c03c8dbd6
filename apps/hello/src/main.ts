// The server process: configuration, store, app, HTTP server, and a graceful shutdown on
// SIGTERM / SIGINT (stop accepting, finish in-flight requests, close the store, exit 0).

import { serve } from '@hono/node-server'
import { createLimiter } from '@slidelimit/core'
import type { Store } from '@slidelimit/core'
import { MemoryStore } from '@slidelimit/store-memory'
import { createApp } from './app.js'
import { EnvError, loadConfig } from './config.js'
import type { Config } from './config.js'
import { createLogger } from './logger.js'

/** Milliseconds in-flight requests get to finish after a shutdown signal. */
const DRAIN_TIMEOUT_MS = 10_000

function startupFailure(message: string): never {
  process.stderr.write(`slidelimit hello: ${message}\n`)
  process.exit(1)
}

function createStore(config: Config): Store {
  if (config.storeBackend === 'memcache') {
    startupFailure(
      'STORE_BACKEND=memcache is not available yet in this version; use STORE_BACKEND=memory',
    )
  }
  return new MemoryStore()
}

let config: Config
try {
  config = loadConfig()
} catch (err) {
  if (err instanceof EnvError) {
    startupFailure(err.message)
  }
  throw err
}

const logger = createLogger(config.logLevel)
const store = createStore(config)
const limiter = createLimiter({
  store,
  limit: config.rateLimit,
  windowSeconds: config.windowSeconds,
  bucketSeconds: config.bucketSeconds,
})
const app = createApp({ config, limiter, store, logger })

const server = serve({ fetch: app.fetch, port: config.port, hostname: config.host }, (info) => {
  logger.info('listening', {
    address: info.address,
    port: info.port,
    store: config.storeBackend,
    limit: config.rateLimit,
    windowSeconds: config.windowSeconds,
    bucketSeconds: config.bucketSeconds,
  })
})

server.on('error', (err: NodeJS.ErrnoException) => {
  startupFailure(`cannot listen on ${config.host}:${config.port}: ${err.code ?? err.message}`)
})

let stopping = false
function shutdown(signal: NodeJS.Signals): void {
  if (stopping) {
    return
  }
  stopping = true
  logger.info('shutting down', { signal })
  const force = setTimeout(() => {
    logger.warn('in-flight requests did not finish in time; exiting', { ms: DRAIN_TIMEOUT_MS })
    process.exit(1)
  }, DRAIN_TIMEOUT_MS)
  force.unref()
  server.close(() => {
    store
      .close()
      .catch((err: unknown) => {
        logger.warn('closing the store failed', { error: String(err) })
      })
      .finally(() => {
        logger.info('stopped')
        process.exit(0)
      })
  })
}

process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)
