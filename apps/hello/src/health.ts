// What /healthz and /readyz report: the state the store already knows, refreshed in the
// background at most once per interval, so that a health request never calls memcached. Each
// refresh pings the memcached servers that are up (and probes the ones that are down, when
// their breaker's probe is due), then reads `evictions` from their stats and logs it when it
// grows (at most once a minute per server): an evicted counter is a requester whose limit
// started over.

import type { FailoverStore, PoolState } from '@slidelimit/core'
import type { Logger } from './logger.js'

/** Seconds a server's start time (its clock minus its uptime) may wobble between two reads. */
const RESTART_TOLERANCE_SECONDS = 2

/** Milliseconds between two eviction lines of one server. */
const EVICTION_LOG_INTERVAL_MS = 60_000

/** One memcached server, as /healthz shows it. */
export interface ServerHealth {
  state: 'up' | 'down'
  /** Why it is down. */
  error?: string
  /** Milliseconds until its breaker probes it again, when it is down. */
  retryInMs?: number
  /** Counters memcached evicted since it started, from its last stats read. */
  evictions?: number
}

/** The body of /healthz and /readyz. */
export interface HealthReport {
  /** Always `ok`: the process serves (liveness). */
  status: 'ok'
  /** Whether the instance can decide requests (readiness); /readyz answers 503 when not. */
  ready: boolean
  /** Why it is not ready. */
  reason?: string
  store: {
    backend: 'memory' | 'memcache'
    /** `up`: every server in use; `degraded`: some servers down; `down`: all down. */
    state: PoolState
    failureMode?: 'open' | 'closed'
    servers?: Record<string, ServerHealth>
  }
}

/** What the monitor needs of the memcached store. */
export interface StatsSource {
  stats(server: string): Promise<Record<string, Record<string, string>>>
}

export interface HealthOptions {
  logger: Logger
  /** The clock, in milliseconds. Defaults to `Date.now`. */
  now?: () => number
  /** The memcached pool behind its breakers; none for the memory store. */
  memcache?: { failover: FailoverStore; stats: StatsSource }
  /** Milliseconds between two refreshes. Defaults to 1000. */
  intervalMs?: number
}

/** Keeps the health report current in the background. */
export class Health {
  readonly #logger: Logger
  readonly #memcache: HealthOptions['memcache']
  readonly #intervalMs: number
  /** What each server's last stats read said: evictions, and which run of memcached. */
  readonly #seen = new Map<string, { evictions: number; pid: string; startedAt: number }>()
  /** Per server: evictions seen but not logged yet, and when the last line was logged. */
  readonly #unlogged = new Map<string, { evicted: number; loggedAt: number }>()
  readonly #now: () => number
  #timer: NodeJS.Timeout | undefined
  #refreshing: Promise<void> | undefined
  /** Whether a refresh has finished: before it, the breakers have not met memcached yet. */
  #checked = false
  #stopping = false

  constructor({ logger, memcache, intervalMs = 1000, now = Date.now }: HealthOptions) {
    this.#logger = logger
    this.#now = now
    this.#memcache = memcache
    this.#intervalMs = intervalMs
  }

  /** Refreshes now, then every interval, until {@link stop}. */
  start(): void {
    if (this.#memcache === undefined || this.#timer !== undefined) {
      return
    }
    void this.refresh()
    this.#timer = setInterval(() => void this.refresh(), this.#intervalMs)
    this.#timer.unref()
  }

  /** The instance is shutting down: not ready any more, and no more refreshes. */
  stop(): void {
    this.#stopping = true
    clearInterval(this.#timer)
  }

  /** One refresh: pings (or probes) the servers, then reads evictions of those that are up. */
  refresh(): Promise<void> {
    this.#refreshing ??= this.#refresh().finally(() => {
      this.#refreshing = undefined
    })
    return this.#refreshing
  }

  report(): HealthReport {
    const memcache = this.#memcache
    if (memcache === undefined) {
      return {
        status: 'ok',
        ready: !this.#stopping,
        ...(this.#stopping && { reason: 'shutting down' }),
        store: { backend: 'memory', state: 'up' },
      }
    }
    const { failover } = memcache
    const state = failover.state
    const servers: Record<string, ServerHealth> = {}
    for (const { shard, ...status } of failover.shardStates()) {
      const evictions = this.#seen.get(shard)?.evictions
      servers[shard] = { ...status, ...(evictions !== undefined && { evictions }) }
    }
    // With some servers down, their requesters are decided as the failure mode says (local
    // limits, or 503 in closed mode) on every instance alike: another instance would not do
    // better, so the instance stays ready. Closed mode with every server down can only refuse.
    let reason: string | undefined
    if (this.#stopping) {
      reason = 'shutting down'
    } else if (failover.mode === 'closed' && !this.#checked) {
      reason = 'checking memcached (STORE_FAILURE_MODE=closed)'
    } else if (failover.mode === 'closed' && state === 'down') {
      reason = 'every memcached server is down and STORE_FAILURE_MODE=closed'
    }
    return {
      status: 'ok',
      ready: reason === undefined,
      ...(reason !== undefined && { reason }),
      store: { backend: 'memcache', state, failureMode: failover.mode, servers },
    }
  }

  async #refresh(): Promise<void> {
    const memcache = this.#memcache
    if (memcache === undefined || this.#stopping) {
      return
    }
    // Failures are the breakers' business (and logged by them); the report reads their state.
    await memcache.failover.ping().catch(() => undefined)
    const up = memcache.failover.shardStates().filter(({ state }) => state === 'up')
    await Promise.all(
      up.map(async ({ shard }) => {
        try {
          this.#sawStats(shard, (await memcache.stats.stats(shard))[shard] ?? {})
        } catch {
          // A server that does not answer its stats is reported by the next ping.
        }
      }),
    )
    this.#checked = true
  }

  /** Notes a server's evictions; logs their growth, at most once a minute per server. */
  #sawStats(server: string, stats: Record<string, string>): void {
    const evictions = Number(stats.evictions)
    if (!Number.isSafeInteger(evictions)) {
      return
    }
    // Which run of memcached this is: its pid, and when it started by its own clock (in a
    // container the pid may be the same after a restart).
    const seen = {
      evictions,
      pid: stats.pid ?? '',
      startedAt: Number(stats.time) - Number(stats.uptime),
    }
    const before = this.#seen.get(server)
    this.#seen.set(server, seen)
    let grown = 0
    if (before !== undefined) {
      // A restarted memcached counts from 0 again; without pid and times, a count that went
      // down says so.
      const restarted =
        seen.pid !== before.pid ||
        Math.abs(seen.startedAt - before.startedAt) > RESTART_TOLERANCE_SECONDS ||
        evictions < before.evictions
      grown = restarted ? evictions : evictions - before.evictions
    }
    // The first read is the baseline: evictions from before this process started are on
    // /healthz, and were logged by the processes that saw them happen.
    const now = this.#now()
    const unlogged = this.#unlogged.get(server) ?? { evicted: 0, loggedAt: -Infinity }
    unlogged.evicted += grown
    this.#unlogged.set(server, unlogged)
    // Checked at every read, so that the end of a spray is logged within a minute too.
    if (unlogged.evicted > 0 && now - unlogged.loggedAt >= EVICTION_LOG_INTERVAL_MS) {
      this.#logger.warn(
        'memcached evicted counters for lack of memory: the limits of their requesters started over (give it more memory, see docs/memcached.md on sizing)',
        { server, evicted: unlogged.evicted, evictions },
      )
      unlogged.evicted = 0
      unlogged.loggedAt = now
    }
  }
}
