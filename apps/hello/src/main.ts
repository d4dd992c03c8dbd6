// The server process: configuration, store, app, HTTP server, and a graceful shutdown on
// SIGTERM / SIGINT (stop accepting, finish in-flight requests, close the store, exit 0).

import { serve } from '@hono/node-server'
import { FailoverStore, createLimiter } from '@slidelimit/core'
import type { Store } from '@slidelimit/core'
import { MemcacheStore } from '@slidelimit/store-memcache'
import type { MemcacheEvent } from '@slidelimit/store-memcache'
import { MemoryStore } from '@slidelimit/store-memory'
import { createApp } from './app.js'
import { Health } from './health.js'
import { EnvError, bucketWarning, loadConfig } from './config.js'
import type { Config } from './config.js'
import { createLogger } from './logger.js'
import type { Logger } from './logger.js'
import {
  connectionCeiling,
  httpServerOptions,
  maxConnections,
  openFileLimit,
} from './server-options.js'

/** Milliseconds in-flight requests get to finish after a shutdown signal. */
const DRAIN_TIMEOUT_MS = 10_000

function startupFailure(message: string): never {
  process.stderr.write(`slidelimit hello: ${message}\n`)
  process.exit(1)
}

/** One log line per change of a connection, per corrupt counter; create races at debug. */
function logMemcacheEvent(logger: Logger, event: MemcacheEvent): void {
  switch (event.type) {
    case 'up':
      logger.info(event.restored ? 'memcached connection restored' : 'memcached connection up', {
        server: event.server,
      })
      break
    case 'down':
      logger.warn('memcached connection lost', { server: event.server, error: event.error })
      break
    case 'corrupt-counter':
      logger.warn(
        'deleted a memcached counter that held something other than a number: its requester was decided as STORE_FAILURE_MODE says, once',
        { server: event.server, counter: event.counter, key: event.key },
      )
      break
    case 'create-race':
      if (event.resent) {
        logger.debug('an increment lost the race to create its counter and was sent again', {
          server: event.server,
          counter: event.counter,
        })
      } else {
        logger.warn(
          'an increment lost the race to create its counter every time it was sent: its requester was decided as STORE_FAILURE_MODE says, once',
          { server: event.server, counter: event.counter },
        )
      }
  }
}

function createStore(config: Config, logger: Logger): { store: Store; health: Health } {
  if (config.storeBackend === 'memory') {
    return { store: new MemoryStore(), health: new Health({ logger }) }
  }
  const primary = new MemcacheStore({
    servers: config.memcacheServers.join(','),
    deadlineMs: config.memcacheTimeoutMs,
    onEvent: (event) => {
      logMemcacheEvent(logger, event)
    },
  })
  const failover = new FailoverStore({
    primary,
    fallback: new MemoryStore(),
    mode: config.failureMode,
    onStateChange: ({ state, shard, error, retryInMs, down, shards }) => {
      // One breaker per server: only the requesters of a server that is down leave the
      // shared limits.
      const where = shards === 1 ? '' : ' on one server'
      const whose = shards === 1 ? '' : ' the requesters it holds'
      if (state === 'down') {
        logger.warn(
          config.failureMode === 'open'
            ? `memcached is down${where}: deciding${whose} with local in-memory limits`
            : `memcached is down${where}: answering 503${shards === 1 ? '' : ' to the requesters it holds'} (STORE_FAILURE_MODE=closed)`,
          {
            server: shard,
            error: error instanceof Error ? error.message : String(error),
            retryInMs,
            serversDown: `${down} of ${shards}`,
          },
        )
      } else {
        logger.info(
          `memcached is back${where}:${shards === 1 ? ' using the shared limits again' : `${whose} use the shared limits again`}`,
          { server: shard, serversDown: `${down} of ${shards}` },
        )
      }
    },
  })
  return { store: failover, health: new Health({ logger, memcache: { failover, stats: primary } }) }
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
const coarse = bucketWarning(config)
if (coarse !== undefined) {
  logger.warn(coarse, { windowSeconds: config.windowSeconds, bucketSeconds: config.bucketSeconds })
}
let parts: ReturnType<typeof createStore>
try {
  parts = createStore(config, logger)
} catch (err) {
  // The configuration passed loadConfig; a store that still refuses it says why in one line.
  if ((err as { code?: unknown } | null)?.code === 'ERR_SLIDELIMIT_CONFIG') {
    startupFailure((err as Error).message)
  }
  throw err
}
const { store, health } = parts
const policies = [
  {
    name: 'default',
    limiter: createLimiter({
      store,
      limit: config.rateLimit,
      windowSeconds: config.windowSeconds,
      bucketSeconds: config.bucketSeconds,
    }),
  },
]
if (config.burst !== undefined) {
  policies.push({
    name: 'burst',
    limiter: createLimiter({
      store,
      limit: config.burst.limit,
      windowSeconds: config.burst.windowSeconds,
      prefix: `burst:w${config.burst.windowSeconds}b1:`,
    }),
  })
}
const app = createApp({ config, policies, health, logger })

const fileLimit = openFileLimit()
const connectionCap = maxConnections(config, fileLimit)
const ceiling = connectionCeiling(fileLimit)
if (ceiling !== undefined && connectionCap > ceiling) {
  logger.warn(
    'MAX_CONNECTIONS leaves less than a tenth of the open-file limit free: a flood of connections can leave none for memcached or new clients',
    { maxConnections: connectionCap, openFileLimit: fileLimit },
  )
}
const server = serve(
  {
    fetch: app.fetch,
    port: config.port,
    hostname: config.host,
    serverOptions: httpServerOptions(config),
  },
  (info) => {
    logger.info('listening', {
      address: info.address,
      port: info.port,
      store: config.storeBackend,
      limit: config.rateLimit,
      windowSeconds: config.windowSeconds,
      bucketSeconds: config.bucketSeconds,
      ...(config.storeBackend === 'memcache' && {
        memcache: config.memcacheServers,
        failureMode: config.failureMode,
      }),
      headersTimeoutMs: config.headersTimeoutMs,
      requestTimeoutMs: config.requestTimeoutMs,
      keepAliveTimeoutMs: config.keepAliveTimeoutMs,
      maxConnections: connectionCap,
    })
    // Says at once whether the shared store answers (failures are logged by the store), then
    // keeps /healthz and /readyz current.
    health.start()
  },
)
// Connections past the cap are closed as they arrive.
server.maxConnections = connectionCap

server.on('error', (err: NodeJS.ErrnoException) => {
  // The logger writes asynchronously: what it holds is written before the process exits.
  void logger.close().then(() => {
    startupFailure(`cannot listen on ${config.host}:${config.port}: ${err.code ?? err.message}`)
  })
})

let stopping = false
function shutdown(signal: NodeJS.Signals): void {
  if (stopping) {
    return
  }
  stopping = true
  // /readyz answers 503 from now on, on connections that are still open.
  health.stop()
  logger.info('shutting down', { signal })
  const force = setTimeout(() => {
    logger.warn('in-flight requests did not finish in time; exiting', { ms: DRAIN_TIMEOUT_MS })
    void logger.close().then(() => process.exit(1))
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
        void logger.close().then(() => process.exit(0))
      })
  })
}

process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)
