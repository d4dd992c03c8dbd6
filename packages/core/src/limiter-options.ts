// The options of a limiter and of one decision, and the decision a request gets.

import { ConfigError } from './errors.js'
import type { Store } from './store.js'

/** Options of {@link createLimiter}. */
export interface LimiterOptions {
  /** The counters, shared by every process that should share the limit. */
  store: Store
  /** Requests admitted per window. Defaults to `100`. */
  limit?: number
  /** The length of the rolling window in seconds. Defaults to `3600`. */
  windowSeconds?: number
  /**
   * The length of one bucket in seconds; must divide `windowSeconds`. Requests in one bucket
   * leave the window together. Defaults to `1`.
   */
  bucketSeconds?: number
  /** The clock, in milliseconds since the epoch. Defaults to `Date.now`. */
  now?: () => number
  /**
   * Prepended to every requester key in the store, so that limiters with other windows never
   * share counters. Defaults to `w<windowSeconds>b<bucketSeconds>:`.
   */
  prefix?: string
  /**
   * Milliseconds after the end of a bucket during which another process may still count in it:
   * more than the clock skew between the processes sharing the store. Older counters are
   * cached and not read again. Defaults to `2000`.
   */
  graceMs?: number
  /**
   * Requesters whose settled counters and denials this limiter keeps in memory; the least
   * recently seen are dropped first, and requesters idle for a whole window are dropped as
   * others arrive. `0` turns the cache off: every decision reads its whole window.
   *
   * Other processes sharing the store may reset a requester or refund its settled requests.
   * Cached counts can then only be too high, so only denials can be wrong, and they are bounded:
   * a denial is decided on cached counts read at most 5 s before (older ones are read again
   * first) and remembered until its retry time but at most 5 s after those counts were read,
   * so a reset or refund elsewhere reaches this limiter's decisions within 5 s. Cached counts
   * are also read again every 10 minutes, which bounds how long `remaining` on admitted
   * decisions lags. The cost: an active requester's whole window is read every 10 minutes
   * (119 counters for an hour of one-second buckets); a requester that keeps asking while
   * blocked costs one such read every 5 s instead of no store traffic until its retry time.
   * Defaults to `100000`.
   */
  cacheSize?: number
}

/** Options of one decision ({@link SlidingWindowLimiter.decide}). */
export interface DecideOptions {
  /**
   * The limit for this request (for instance by the requester's plan): a whole number of at
   * least 1. The counters do not depend on it, so requests under different limits share one
   * exact window. A denial remembered under one limit is reused only under the same limit.
   * When processes sharing the store admit one requester under a higher limit than another
   * process denied it under, that process's remembered wait may be too short (never an
   * admission too many) until it checks the store again, within 5 s. Defaults to the
   * limiter's `limit`.
   */
  limit?: number
}

/** The outcome of one request. */
export interface Decision {
  /** Whether the request is admitted (and counted). */
  readonly allowed: boolean
  /** The limit per window that applied (the request's own, or the limiter's). */
  readonly limit: number
  /** The window in seconds. */
  readonly windowSeconds: number
  /** Requests that would still be admitted right now, after this one. */
  readonly remaining: number
  /**
   * Whole seconds until one more request would be admitted: 0 while `remaining` is above 0,
   * at least 1 otherwise. Exact for denied requests.
   */
  readonly retryAfterSeconds: number
  /**
   * Whole seconds until the oldest counted requests leave the window and free more quota
   * (at least 1). Exact for denied requests; for admitted ones it may be rounded up to the end
   * of a coarse group of buckets when the oldest counted request is that old.
   */
  readonly resetSeconds: number
  /**
   * The requester the decision is for: the id given, or `sha256:` and its hash for ids longer
   * than 128 characters (the limiter never keeps a long id whole).
   */
  readonly id: string
  /** The bucket the request was counted in, or `-1` when it was not counted (denied). */
  readonly bucket: number
}

/** Checks a whole-number option, naming it in the error. */
export function wholeNumber(option: string, value: unknown, min: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new ConfigError(option, value, `a whole number of at least ${min}`)
  }
  return value
}
