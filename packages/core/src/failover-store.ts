// Failure handling around any store: a circuit breaker with a local fallback.
//
// While the primary store answers, every call goes to it. When a call fails (anything thrown or
// rejected, or a miss of the deadline), the breaker opens: calls go to the fallback store (in
// `open` mode: decisions are made by a local limiter) or are refused with a
// StoreUnavailableError (in `closed` mode). The primary is left alone for a back-off that
// doubles after every failed probe up to a ceiling, then probed with `ping()`; once it answers,
// calls go to it again. Each change of state is reported once, not per call.
//
// A StoreKeyError (the primary answers, but one key's data is unusable) is that key's problem:
// that one call is decided as the failure mode says, and the breaker stays closed.

import { ConfigError, StoreError, StoreKeyError, asStoreError } from './errors.js'
import type { SlotIncrement, Store } from './store.js'

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

export type StoreState = 'up' | 'down'

/** A change of state of the primary store. */
export interface StoreStateChange {
  state: StoreState
  /** What failed, when the state is `down`. */
  error?: unknown
  /** Milliseconds until the next probe, when the state is `down`. */
  retryInMs?: number
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
   * and after every failure within `maxBackoffMs` of a recovery. Defaults to `250`.
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
  #state: StoreState = 'up'
  /** Source of every epoch value, so that a newer one is always larger than all before it. */
  #epochClock = 0
  /** The epoch of the last switch between primary and fallback. */
  #epoch = 0
  /** Keys answered once by the fallback (their data was unusable) since the last switch. */
  readonly #keyEpochs = new Map<string, number>()
  #backoffMs: number
  /**
   * Whether the primary answered a call since it last came back (true from the start): one
   * that fails its first calls after a probe passed has not really come back.
   */
  #answeredSinceUp = true
  /** Records a primary answer, then passes its values on. */
  readonly #answered = (values: number[]): number[] => {
    this.#answeredSinceUp = true
    return values
  }
  /** Why the primary is down. */
  #lastError: unknown
  #nextProbeAt = 0
  #probing = false

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
    this.name = primary.name
    this.primary = primary
    this.fallback = fallback
    this.mode = mode
    this.#minBackoffMs = minBackoffMs
    this.#maxBackoffMs = maxBackoffMs
    this.#backoffMs = minBackoffMs
    this.#deadlineMs = deadlineMs
    this.#onStateChange = onStateChange
    this.#now = now
  }

  /** Whether the primary store is in use (`up`) or being backed off from (`down`). */
  get state(): StoreState {
    return this.#state
  }

  /**
   * Changes at every change of state, and for one key when a call for it was answered by the
   * fallback because its data was unusable: the counters answered from are another store's, so
   * limiters drop what they cached from the previous one.
   */
  epochOf(key: string): number {
    if (this.#keyEpochs.size === 0) {
      return this.#epoch
    }
    return Math.max(this.#epoch, this.#keyEpochs.get(key) ?? 0)
  }

  update(
    key: string,
    increments: readonly SlotIncrement[],
    reads: readonly number[],
    ttlSeconds: number,
  ): Promise<number[]> {
    if (this.#state === 'down') {
      this.#maybeProbe()
      return this.#instead(undefined, key, increments, reads, ttlSeconds)
    }
    let answer: Promise<number[]>
    try {
      answer = this.#withDeadline(this.primary.update(key, increments, reads, ttlSeconds))
    } catch (error) {
      return this.#failed(error, key, increments, reads, ttlSeconds)
    }
    return answer.then(this.#answered, (error: unknown) =>
      this.#failed(error, key, increments, reads, ttlSeconds),
    )
  }

  /**
   * Pings the primary, updating the state; rejects when it does not answer. While the primary
   * is down, a ping is the breaker's probe when one is due, and otherwise rejects at once with
   * the known state: a health check never cuts a back-off short.
   */
  async ping(): Promise<void> {
    if (this.#state === 'down') {
      const waitMs = this.#untilProbe()
      if (this.#probing || waitMs > 0) {
        throw new StoreError(
          this.name,
          `down, the next probe is due in ${Math.max(0, Math.ceil(waitMs))} ms`,
          { cause: this.#lastError },
        )
      }
      await this.#probe()
      return
    }
    try {
      await this.#withDeadline(this.primary.ping())
    } catch (error) {
      const failure = asStoreError(this.name, error)
      this.#markDown(failure)
      throw failure
    }
  }

  async close(): Promise<void> {
    await Promise.allSettled([this.primary, this.fallback].map(async (store) => store.close()))
  }

  /** A primary call failed: the key's own problem, or the primary's (the breaker opens). */
  #failed(
    error: unknown,
    key: string,
    increments: readonly SlotIncrement[],
    reads: readonly number[],
    ttlSeconds: number,
  ): Promise<number[]> {
    const failure = asStoreError(this.name, error)
    if (failure instanceof StoreKeyError) {
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
      this.#markDown(failure)
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

  #markDown(error: unknown): void {
    if (this.#state === 'down') {
      return
    }
    this.#state = 'down'
    this.#switched()
    this.#lastError = error
    const now = this.#now()
    // A primary that fails again before answering any call after a probe said it was back (a
    // probe cannot see every failure: memcached out of memory still answers a no-op) keeps
    // backing off further, instead of flapping at the shortest back-off.
    this.#backoffMs = this.#answeredSinceUp
      ? this.#minBackoffMs
      : Math.min(this.#backoffMs * 2, this.#maxBackoffMs)
    this.#nextProbeAt = now + this.#backoffMs
    this.#onStateChange({ state: 'down', error, retryInMs: this.#backoffMs })
  }

  #markUp(): void {
    if (this.#state === 'up') {
      return
    }
    this.#state = 'up'
    this.#switched()
    this.#answeredSinceUp = false
    this.#onStateChange({ state: 'up' })
  }

  /** A new epoch for every key: the store answered from has changed. */
  #switched(): void {
    this.#epoch = ++this.#epochClock
    this.#keyEpochs.clear()
  }

  #maybeProbe(): void {
    if (this.#probing || this.#untilProbe() > 0) {
      return
    }
    this.#probe().catch(() => undefined)
  }

  /**
   * Milliseconds until the next probe is due (0 or less: due). A clock that went back (the
   * wait is longer than the back-off) makes it due at once rather than in an hour.
   */
  #untilProbe(): number {
    const wait = this.#nextProbeAt - this.#now()
    if (wait > this.#backoffMs) {
      this.#nextProbeAt = this.#now()
      return 0
    }
    return wait
  }

  /** Pings the primary: up when it answers, else a longer back-off before the next probe. */
  async #probe(): Promise<void> {
    this.#probing = true
    try {
      // A probe always has a deadline: one that never settled would keep the breaker open.
      await this.#withDeadline(this.primary.ping(), this.#deadlineMs ?? this.#maxBackoffMs)
    } catch (error) {
      const failure = asStoreError(this.name, error)
      this.#lastError = failure
      this.#backoffMs = Math.min(this.#backoffMs * 2, this.#maxBackoffMs)
      this.#nextProbeAt = this.#now() + this.#backoffMs
      throw failure
    } finally {
      this.#probing = false
    }
    this.#markUp()
  }
}
