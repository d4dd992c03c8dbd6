// Failure handling around any store: a circuit breaker per shard, with a local fallback.
//
// While the primary store answers, every call goes to it. When a call fails (anything thrown or
// rejected, or a miss of the deadline), the breaker opens: calls go to the fallback store (in
// `open` mode: decisions are made by a local limiter) or are refused with a
// StoreUnavailableError (in `closed` mode). The primary is left alone for a back-off that
// doubles after every failed probe up to a ceiling, then probed with `ping()`; once it answers,
// calls go to it again. Each change of state is reported once, not per call.
//
// A primary spread over several servers (a store with `shards` and `shardOf`, such as a pool of
// memcached servers) gets one breaker per shard: when one server fails, only the keys it holds
// leave the shared counters, and the other shards' keys never notice.
//
// A StoreKeyError (the primary answers, but one key's data is unusable) is that key's problem:
// that one call is decided as the failure mode says, and the breaker stays closed.

import { ConfigError, StoreError, StoreKeyError, asStoreError, unsupported } from './errors.js'
import type { SlotIncrement, Store, StoreCell } from './store.js'

/** The primary store is failing and the failure mode is `closed`. */
export class StoreUnavailableError extends StoreError {
  constructor(store: string, options?: { cause?: unknown }) {
    super(
      store,
      'unavailable, refusing requests (failure mode closed)',
      options,
      'ERR_SLIDELIMIT_STORE_UNAVAILABLE',
    )
  }
}

/** The state of one shard of the primary: in use (`up`) or being backed off from (`down`). */
export type StoreState = 'up' | 'down'

/** The state of the whole primary: every shard up, some down (`degraded`), or all down. */
export type PoolState = 'up' | 'degraded' | 'down'

/** A change of state of one shard of the primary store. */
export interface StoreStateChange {
  state: StoreState
  /** The shard that changed (e.g. a memcached server); undefined for a store of one shard. */
  shard: string | undefined
  /** What failed, when the state is `down`. */
  error?: unknown
  /** Milliseconds until the next probe, when the state is `down`. */
  retryInMs?: number
  /** Shards down after this change, and the number of shards. */
  down: number
  shards: number
}

/** What the breaker of one shard knows (see {@link FailoverStore.shardStates}). */
export interface ShardStatus {
  /** The shard's name, or the primary store's name for a store of one shard. */
  shard: string
  state: StoreState
  /** Why the shard is down, when it is. */
  error?: string
  /** Milliseconds until its next probe, when it is down. */
  retryInMs?: number
}

/** One shard's circuit breaker. */
class Breaker {
  state: StoreState = 'up'
  /** The epoch of the last switch of this shard between primary and fallback. */
  epoch = 0
  backoffMs: number
  /**
   * Whether the primary answered a call for this shard since it last came back (true from the
   * start): one that fails its first calls after a probe passed has not really come back.
   */
  answeredSinceUp = true
  /** When the shard last came back (after a probe passed). */
  upAt = -Infinity
  /** Records a primary answer, then passes its values on. */
  readonly answered = (values: number[]): number[] => {
    this.answeredSinceUp = true
    return values
  }
  /** Why the shard is down. */
  lastError: unknown
  nextProbeAt = 0
  probing = false

  constructor(
    /** The name passed to the primary's `ping`; undefined for a store without shards. */
    readonly shard: string | undefined,
    backoffMs: number,
  ) {
    this.backoffMs = backoffMs
  }
}

/** Keys whose one-call detour to the fallback is remembered (for {@link FailoverStore.epochOf}). */
const KEY_EPOCHS = 10_000

/** Options of {@link FailoverStore}. */
export interface FailoverStoreOptions {
  /** The shared store, e.g. memcached. */
  primary: Store
  /** Used while the primary is down in `open` mode, e.g. an in-memory store. */
  fallback: Store
  /**
   * `open`: decide with the fallback while the primary is down. `closed`: refuse with a
   * StoreUnavailableError. Defaults to `"open"`.
   */
  mode?: 'open' | 'closed'
  /**
   * The first back-off after a failure, in milliseconds; it doubles after every failed probe,
   * and after a failure within `maxBackoffMs` of a recovery that came before the primary
   * answered any call. Defaults to `250`.
   */
  minBackoffMs?: number
  /** The longest back-off between two probes, in milliseconds. Defaults to `5000`. */
  maxBackoffMs?: number
  /**
   * A deadline for primary calls, in milliseconds, for primaries without their own.
   * Defaults to none (the primary's own deadline applies).
   */
  deadlineMs?: number
  /** Called once per change of state. Defaults to doing nothing. */
  onStateChange?: (change: StoreStateChange) => void
  /** The clock, in milliseconds. Defaults to `Date.now`. */
  now?: () => number
}

/**
 * A Store that uses `primary` while it answers and `fallback` (or refusal) while it does not.
 *
 * @example
 * ```ts
 * const store = new FailoverStore({
 *   primary: new MemcacheStore({ servers: 'cache:11211' }),
 *   fallback: new MemoryStore(),
 *   onStateChange: ({ state }) => console.warn(`memcached is ${state}`),
 * })
 * ```
 */
export class FailoverStore implements Store {
  readonly name: string
  readonly primary: Store
  readonly fallback: Store
  readonly mode: 'open' | 'closed'
  readonly #minBackoffMs: number
  readonly #maxBackoffMs: number
  readonly #deadlineMs: number | undefined
  readonly #onStateChange: (change: StoreStateChange) => void
  readonly #now: () => number
  /** The breaker of a primary of one shard; undefined when there are several. */
  readonly #single: Breaker | undefined
  /** Every breaker, by shard name (the primary's name for a store of one shard). */
  readonly #breakers = new Map<string, Breaker>()
  /** Source of every epoch value, so that a newer one is always larger than all before it. */
  #epochClock = 0
  /** Keys answered once by the fallback (their data was unusable), with the epoch then. */
  readonly #keyEpochs = new Map<string, number>()

  constructor({
    primary,
    fallback,
    mode = 'open',
    minBackoffMs = 250,
    maxBackoffMs = 5000,
    deadlineMs,
    onStateChange = () => undefined,
    now = Date.now,
  }: FailoverStoreOptions) {
    for (const [option, store] of [
      ['primary', primary],
      ['fallback', fallback],
    ] as const) {
      if (typeof (store as Partial<Store> | undefined)?.update !== 'function') {
        throw new ConfigError(option, store, 'a Store')
      }
    }
    // Checked at run time too: JavaScript callers and configuration files are not type-checked.
    if (!(['open', 'closed'] as unknown[]).includes(mode)) {
      throw new ConfigError('mode', mode, '"open" or "closed"')
    }
    if (!Number.isFinite(minBackoffMs) || minBackoffMs <= 0) {
      throw new ConfigError('minBackoffMs', minBackoffMs, 'milliseconds above 0')
    }
    if (!Number.isFinite(maxBackoffMs) || maxBackoffMs < minBackoffMs) {
      throw new ConfigError('maxBackoffMs', maxBackoffMs, `milliseconds of at least minBackoffMs`)
    }
    if (deadlineMs !== undefined && (!Number.isFinite(deadlineMs) || deadlineMs <= 0)) {
      throw new ConfigError('deadlineMs', deadlineMs, 'milliseconds above 0')
    }
    const shards: unknown = primary.shards
    if (
      shards !== undefined &&
      !(
        Array.isArray(shards) &&
        shards.length > 0 &&
        shards.every((shard) => typeof shard === 'string') &&
        new Set(shards).size === shards.length &&
        (shards.length === 1 || typeof primary.shardOf === 'function')
      )
    ) {
      throw new ConfigError(
        'primary',
        primary,
        'a Store whose shards are distinct names, with shardOf when there are several',
      )
    }
    this.name = primary.name
    this.primary = primary
    this.fallback = fallback
    this.mode = mode
    this.#minBackoffMs = minBackoffMs
    this.#maxBackoffMs = maxBackoffMs
    this.#deadlineMs = deadlineMs
    this.#onStateChange = onStateChange
    this.#now = now
    const names = primary.shards
    if (names === undefined || names.length === 1) {
      this.#single = new Breaker(names?.[0], minBackoffMs)
      this.#breakers.set(names?.[0] ?? primary.name, this.#single)
    } else {
      for (const shard of names) {
        this.#breakers.set(shard, new Breaker(shard, minBackoffMs))
      }
    }
  }

  /** `up` while every shard of the primary is in use, `down` while none is, else `degraded`. */
  get state(): PoolState {
    let down = 0
    for (const breaker of this.#breakers.values()) {
      if (breaker.state === 'down') {
        down++
      }
    }
    return down === 0 ? 'up' : down === this.#breakers.size ? 'down' : 'degraded'
  }

  /** What each shard's breaker knows, in the primary's order of shards. No call is made. */
  shardStates(): ShardStatus[] {
    const now = this.#now()
    return [...this.#breakers].map(([shard, breaker]) =>
      breaker.state === 'up'
        ? { shard, state: 'up' }
        : {
            shard,
            state: 'down',
            error: describeError(breaker.lastError),
            retryInMs: Math.max(0, Math.ceil(breaker.nextProbeAt - now)),
          },
    )
  }

  /**
   * Changes whenever the shard holding `key` switches between primary and fallback, and for
   * one key when a call for it was answered by the fallback because its data was unusable: the
   * counters answered from are another store's, so limiters drop what they cached before.
   * Asked while the key's shard is down, it starts that shard's probe when one is due.
   */
  epochOf(key: string): number {
    let breaker = this.#single
    if (breaker === undefined) {
      try {
        breaker = this.#breakerOf(key)
      } catch {
        // A key the primary cannot place is answered by the fallback, call by call.
        return this.#keyEpochs.get(key) ?? 0
      }
    }
    if (breaker.state === 'down') {
      // Limiters ask this even when they decide from what they cached (a requester they know
      // is blocked): so a due probe is made for a shard whose every requester is blocked
      // locally, and those requesters see the shared counts again as soon as it is back.
      this.#maybeProbe(breaker)
    }
    if (this.#keyEpochs.size === 0) {
      return breaker.epoch
    }
    return Math.max(breaker.epoch, this.#keyEpochs.get(key) ?? 0)
  }

  /** `cell` goes to the primary only (see StoreCell: one store per cell). */
  update(
    key: string,
    increments: readonly SlotIncrement[],
    reads: readonly number[],
    ttlSeconds: number,
    cell?: StoreCell,
  ): Promise<number[]> {
    let breaker = this.#single
    let answer: Promise<number[]>
    try {
      breaker ??= this.#breakerOf(key)
      if (breaker.state === 'down') {
        this.#maybeProbe(breaker)
        return this.#instead(undefined, key, increments, reads, ttlSeconds)
      }
      answer = this.#withDeadline(this.primary.update(key, increments, reads, ttlSeconds, cell))
    } catch (error) {
      return this.#failed(breaker, error, key, increments, reads, ttlSeconds)
    }
    const shard = breaker
    return answer.then(shard.answered, (error: unknown) =>
      this.#failed(shard, error, key, increments, reads, ttlSeconds),
    )
  }

  /**
   * Removes the counters of `key` from the primary and from the fallback (which holds them
   * while the key's shard is down), both at once. Rejects when either fails or has no `remove`,
   * and when the key's shard is down (nothing is sent to it then): the counters in the primary
   * may still be there. A primary that fails is a failure of the key's shard, as in `update`.
   */
  async remove(key: string, slots: readonly number[]): Promise<void> {
    const [primary, fallback] = await Promise.allSettled([
      this.#removeFromPrimary(key, slots),
      removeFrom(this.fallback, key, slots),
    ])
    if (primary.status === 'rejected') {
      throw primary.reason
    }
    if (fallback.status === 'rejected') {
      throw asStoreError(this.fallback.name, fallback.reason)
    }
  }

  async #removeFromPrimary(key: string, slots: readonly number[]): Promise<void> {
    let breaker = this.#single
    try {
      breaker ??= this.#breakerOf(key)
    } catch (error) {
      throw asStoreError(this.name, error)
    }
    if (breaker.state === 'down') {
      this.#maybeProbe(breaker)
      throw new StoreError(
        this.name,
        `${breaker.shard === undefined ? '' : `${breaker.shard} `}down, the counters of the key are not removed from it`,
        { cause: breaker.lastError },
      )
    }
    try {
      await this.#withDeadline(removeFrom(this.primary, key, slots))
    } catch (error) {
      const failure = asStoreError(this.name, error)
      if (!(failure instanceof StoreKeyError) && failure.code !== UNSUPPORTED) {
        this.#markDown(breaker, failure)
      }
      throw failure
    }
    breaker.answeredSinceUp = true
  }

  /**
   * Pings the primary (only `shard`, when given), updating the state of each shard; rejects
   * when a shard does not answer or is down. While a shard is down, a ping is its breaker's
   * probe when one is due, and otherwise reports the known state: a health check never cuts a
   * back-off short.
   */
  async ping(shard?: string): Promise<void> {
    let breakers: Breaker[]
    if (shard === undefined) {
      breakers = [...this.#breakers.values()]
    } else {
      const breaker = this.#breakers.get(shard)
      if (breaker === undefined) {
        throw new StoreError(this.name, `has no shard named ${JSON.stringify(shard)}`)
      }
      breakers = [breaker]
    }
    const results = await Promise.allSettled(breakers.map((breaker) => this.#pingOne(breaker)))
    const failed = results.flatMap((result, i) =>
      result.status === 'rejected'
        ? [{ shard: breakers[i]?.shard, error: result.reason as StoreError }]
        : [],
    )
    const first = failed[0]
    if (first === undefined) {
      return
    }
    if (failed.length === 1 && this.#single !== undefined) {
      throw first.error
    }
    throw new StoreError(
      this.name,
      `${failed.length} of ${this.#breakers.size} shards failing: ${failed
        .map(({ shard: name, error }) => `${name ?? this.name} (${error.message})`)
        .join('; ')}`,
      { cause: first.error },
    )
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.primary, this.fallback].map(async (store) => store.close()))
  }

  /** The breaker of the shard holding `key` (only called with several shards). */
  #breakerOf(key: string): Breaker {
    const shard = (this.primary.shardOf as (key: string) => string).call(this.primary, key)
    const breaker = this.#breakers.get(shard)
    if (breaker === undefined) {
      throw new StoreError(this.name, `placed a key on an unknown shard ${JSON.stringify(shard)}`)
    }
    return breaker
  }

  async #pingOne(breaker: Breaker): Promise<void> {
    if (breaker.state === 'down') {
      const waitMs = this.#untilProbe(breaker)
      if (breaker.probing || waitMs > 0) {
        throw new StoreError(
          this.name,
          `${breaker.shard === undefined ? '' : `${breaker.shard} `}down, the next probe is due in ${Math.max(0, Math.ceil(waitMs))} ms`,
          { cause: breaker.lastError },
        )
      }
      await this.#probe(breaker)
      return
    }
    try {
      await this.#withDeadline(this.primary.ping(breaker.shard))
    } catch (error) {
      const failure = asStoreError(this.name, error)
      this.#markDown(breaker, failure)
      throw failure
    }
  }

  /**
   * A primary call failed: the key's own problem, or its shard's (that breaker opens). Without
   * a breaker (the primary could not say where the key lives), only this call is given up.
   */
  #failed(
    breaker: Breaker | undefined,
    error: unknown,
    key: string,
    increments: readonly SlotIncrement[],
    reads: readonly number[],
    ttlSeconds: number,
  ): Promise<number[]> {
    const failure = asStoreError(this.name, error)
    if (failure instanceof StoreKeyError || breaker === undefined) {
      // Whatever limiters cached for this key came with a call that is now answered elsewhere.
      if (this.#keyEpochs.size >= KEY_EPOCHS) {
        for (const oldest of this.#keyEpochs.keys()) {
          this.#keyEpochs.delete(oldest)
          break
        }
      }
      this.#keyEpochs.delete(key)
      this.#keyEpochs.set(key, ++this.#epochClock)
    } else {
      this.#markDown(breaker, failure)
    }
    return this.#instead(failure, key, increments, reads, ttlSeconds)
  }

  #instead(
    error: StoreError | undefined,
    key: string,
    increments: readonly SlotIncrement[],
    reads: readonly number[],
    ttlSeconds: number,
  ): Promise<number[]> {
    if (this.mode === 'closed') {
      return Promise.reject(
        new StoreUnavailableError(this.name, error === undefined ? undefined : { cause: error }),
      )
    }
    try {
      return this.fallback
        .update(key, increments, reads, ttlSeconds)
        .catch((fallbackError: unknown) => {
          throw asStoreError(this.fallback.name, fallbackError)
        })
    } catch (fallbackError) {
      return Promise.reject(asStoreError(this.fallback.name, fallbackError))
    }
  }

  /**
   * The primary's answer, or a StoreError after `deadlineMs`. A deadline that fires first gives
   * the replies that already arrived one more turn of the event loop (timers run before socket
   * reads), so that a process busy with its own work does not mistake that for an outage.
   */
  #withDeadline<T>(promise: Promise<T>, ms = this.#deadlineMs): Promise<T> {
    if (ms === undefined) {
      return promise
    }
    return new Promise<T>((resolve, reject) => {
      let settled = false
      const timer = setTimeout(() => {
        setImmediate(() => {
          if (!settled) {
            settled = true
            reject(new StoreError(this.name, `no answer within the ${ms} ms deadline`))
          }
        })
      }, ms)
      promise.then(
        (value) => {
          settled = true
          clearTimeout(timer)
          resolve(value)
        },
        (error: unknown) => {
          settled = true
          clearTimeout(timer)
          reject(asStoreError(this.name, error))
        },
      )
    })
  }

  #markDown(breaker: Breaker, error: unknown): void {
    if (breaker.state === 'down') {
      return
    }
    breaker.state = 'down'
    breaker.epoch = ++this.#epochClock
    breaker.lastError = error
    // A shard that fails again soon after a probe said it was back, before answering any call
    // (a probe cannot see every failure: memcached out of memory still answers a no-op), keeps
    // backing off further instead of flapping at the shortest back-off. One that came back
    // long ago starts over, even if no call came for it meanwhile.
    const now = this.#now()
    breaker.backoffMs =
      !breaker.answeredSinceUp && now - breaker.upAt < this.#maxBackoffMs
        ? Math.min(breaker.backoffMs * 2, this.#maxBackoffMs)
        : this.#minBackoffMs
    breaker.nextProbeAt = now + breaker.backoffMs
    this.#report(breaker, { error, retryInMs: breaker.backoffMs })
  }

  #markUp(breaker: Breaker): void {
    if (breaker.state === 'up') {
      return
    }
    breaker.state = 'up'
    breaker.epoch = ++this.#epochClock
    breaker.answeredSinceUp = false
    breaker.upAt = this.#now()
    this.#report(breaker, {})
  }

  /** Reports a change of one shard's state once, with how many shards are down now. */
  #report(breaker: Breaker, detail: Pick<StoreStateChange, 'error' | 'retryInMs'>): void {
    let down = 0
    for (const each of this.#breakers.values()) {
      if (each.state === 'down') {
        down++
      }
    }
    this.#onStateChange({
      state: breaker.state,
      shard: breaker.shard,
      ...detail,
      down,
      shards: this.#breakers.size,
    })
  }

  #maybeProbe(breaker: Breaker): void {
    if (breaker.probing || this.#untilProbe(breaker) > 0) {
      return
    }
    this.#probe(breaker).catch(() => undefined)
  }

  /**
   * Milliseconds until the shard's next probe is due (0 or less: due). A clock that went back
   * (the wait is longer than the back-off) makes it due at once rather than in an hour.
   */
  #untilProbe(breaker: Breaker): number {
    const wait = breaker.nextProbeAt - this.#now()
    if (wait > breaker.backoffMs) {
      breaker.nextProbeAt = this.#now()
      return 0
    }
    return wait
  }

  /** Pings the shard: up when it answers, else a longer back-off before the next probe. */
  async #probe(breaker: Breaker): Promise<void> {
    breaker.probing = true
    try {
      // A probe always has a deadline: one that never settled would keep the breaker open.
      await this.#withDeadline(
        this.primary.ping(breaker.shard),
        this.#deadlineMs ?? this.#maxBackoffMs,
      )
    } catch (error) {
      const failure = asStoreError(this.name, error)
      breaker.lastError = failure
      breaker.backoffMs = Math.min(breaker.backoffMs * 2, this.#maxBackoffMs)
      breaker.nextProbeAt = this.#now() + breaker.backoffMs
      throw failure
    } finally {
      breaker.probing = false
    }
    this.#markUp(breaker)
  }
}

const UNSUPPORTED = 'ERR_SLIDELIMIT_STORE_UNSUPPORTED'

/** `store.remove`, with whatever it throws as a rejection; a store without it rejects. */
function removeFrom(store: Store, key: string, slots: readonly number[]): Promise<void> {
  if (typeof store.remove !== 'function') {
    return Promise.reject(unsupported(store.name, 'remove'))
  }
  try {
    return store.remove(key, slots)
  } catch (error) {
    return Promise.reject(asStoreError(store.name, error))
  }
}

function describeError(error: unknown): string {
  return error instanceof Error ? error.message : String(error)
}
