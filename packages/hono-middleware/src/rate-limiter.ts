// The Hono middleware: one decision per request, the RateLimit header fields on every limited
// response, and a 429 with Retry-After when the limit is reached.

import { ConfigError, createLimiter, SlidingWindowLimiter, StoreError } from '@slidelimit/core'
import type { Decision, Store } from '@slidelimit/core'
import type { Context, Env, MiddlewareHandler } from 'hono'
import { createMiddleware } from 'hono/factory'
import { UNKNOWN_CLIENT, socketAddress } from './client-address.js'
import { checkPolicyName, policyField, rateLimitField } from './headers.js'

/** The decision on the current request, on `c.var.rateLimit`. */
export interface RateLimitInfo extends Decision {
  /** The policy name used in the headers. */
  readonly policy: string
  /** The requester key the decision was made for. */
  readonly key: string
}

declare module 'hono' {
  interface ContextVariableMap {
    rateLimit: RateLimitInfo
  }
}

/** Options of {@link rateLimiter}. */
export interface RateLimiterOptions<E extends Env = Env> {
  /**
   * The limiter to use. Give either this or `store` (with `limit`, `windowSeconds` and
   * `bucketSeconds`), not both.
   */
  limiter?: SlidingWindowLimiter
  /** The store to build a limiter on, when `limiter` is not given. */
  store?: Store
  /** Requests admitted per window, with `store`. Defaults to `100`. */
  limit?: number
  /** The rolling window in seconds, with `store`. Defaults to `3600`. */
  windowSeconds?: number
  /** The bucket length in seconds, with `store`. Defaults to `1`. */
  bucketSeconds?: number
  /**
   * The requester key of a request: an address, an API token, a user id. Defaults to the
   * client address of the connection (IPv4-mapped IPv6 given as IPv4), or `"unknown"` where the
   * runtime has none.
   */
  keyGenerator?: (c: Context<E>) => string | Promise<string>
  /** The policy name in the RateLimit header fields. Defaults to `"default"`. */
  policyName?: string
  /** Whether to send the `RateLimit` and `RateLimit-Policy` fields. Defaults to `true`. */
  headers?: boolean
  /**
   * Builds the response to a denied request. `Retry-After` and the RateLimit fields are already
   * set on the context. Defaults to a `429` with `Rate limit exceeded. Try again in #N seconds`.
   */
  handler?: (c: Context<E>, info: RateLimitInfo) => Response | Promise<Response>
  /**
   * Builds the response when the store fails and cannot decide (a FailoverStore in `closed`
   * mode, or a bare store that fails). Defaults to a `503` with
   * `Rate limiting is unavailable. Try again later.` and `Retry-After: 1`.
   */
  unavailableHandler?: (c: Context<E>, error: StoreError) => Response | Promise<Response>
}

const KNOWN_OPTIONS = new Set([
  'limiter',
  'store',
  'limit',
  'windowSeconds',
  'bucketSeconds',
  'keyGenerator',
  'policyName',
  'headers',
  'handler',
  'unavailableHandler',
])

/** The default denial: the original design's text, with the exact wait. */
export function defaultDenial<E extends Env>(c: Context<E>, info: RateLimitInfo): Response {
  return c.text(`Rate limit exceeded. Try again in #${info.retryAfterSeconds} seconds`, 429)
}

/** The default answer when the store cannot decide: 503, never a 500. */
export function defaultUnavailable<E extends Env>(c: Context<E>, _error: StoreError): Response {
  c.header('Retry-After', '1')
  return c.text('Rate limiting is unavailable. Try again later.', 503)
}

function defaultKey<E extends Env>(c: Context<E>): string {
  return socketAddress(c) ?? UNKNOWN_CLIENT
}

/**
 * Limits requests with an exact bucketed sliding window.
 *
 * @example
 * ```ts
 * import { Hono } from 'hono'
 * import { MemoryStore } from '@slidelimit/store-memory'
 * import { rateLimiter } from '@slidelimit/hono-middleware'
 *
 * const app = new Hono()
 * app.use(rateLimiter({ store: new MemoryStore(), limit: 100, windowSeconds: 3600 }))
 * app.get('/', (c) => c.text(`Hello! ${c.var.rateLimit.remaining} left`))
 * ```
 */
export function rateLimiter<E extends Env = Env>(
  options: RateLimiterOptions<E>,
): MiddlewareHandler<E> {
  for (const name of Object.keys(options)) {
    if (!KNOWN_OPTIONS.has(name)) {
      throw new ConfigError(name, (options as Record<string, unknown>)[name], 'no such option')
    }
  }
  const {
    limiter: given,
    store,
    limit,
    windowSeconds,
    bucketSeconds,
    keyGenerator = defaultKey,
    policyName = 'default',
    headers = true,
    handler = defaultDenial,
    unavailableHandler = defaultUnavailable,
  } = options
  if (given !== undefined && store !== undefined) {
    throw new ConfigError('store', 'a store', 'either limiter or store, not both')
  }
  if (given !== undefined && !(given instanceof SlidingWindowLimiter)) {
    throw new ConfigError('limiter', given, 'a SlidingWindowLimiter')
  }
  if (given === undefined && store === undefined) {
    throw new ConfigError('store', store, 'a Store (or give limiter)')
  }
  if (given !== undefined && (limit ?? windowSeconds ?? bucketSeconds) !== undefined) {
    throw new ConfigError(
      'limit',
      limit,
      'no limit or window options with limiter (set them on it)',
    )
  }
  if (typeof keyGenerator !== 'function') {
    throw new ConfigError('keyGenerator', keyGenerator, 'a function of the context')
  }
  if (typeof handler !== 'function') {
    throw new ConfigError('handler', handler, 'a function of the context and the decision')
  }
  if (typeof unavailableHandler !== 'function') {
    throw new ConfigError(
      'unavailableHandler',
      unavailableHandler,
      'a function of the context and the error',
    )
  }
  if (typeof headers !== 'boolean') {
    throw new ConfigError('headers', headers, 'true or false')
  }
  const name = checkPolicyName(policyName)
  const limiter =
    given ??
    createLimiter({
      store: store as Store,
      ...(limit !== undefined && { limit }),
      ...(windowSeconds !== undefined && { windowSeconds }),
      ...(bucketSeconds !== undefined && { bucketSeconds }),
    })
  const policy = policyField(name, limiter.limit, limiter.windowSeconds)

  return createMiddleware<E>(async (c, next) => {
    const key = await keyGenerator(c)
    let decision: Decision
    try {
      decision = await limiter.consume(key)
    } catch (error) {
      if (error instanceof StoreError) {
        return unavailableHandler(c, error)
      }
      throw error
    }
    const info: RateLimitInfo = { ...decision, policy: name, key }
    c.set('rateLimit', info)
    if (headers) {
      c.header('RateLimit-Policy', policy)
      c.header('RateLimit', rateLimitField(name, decision))
    }
    if (!decision.allowed) {
      c.header('Retry-After', String(decision.retryAfterSeconds))
      return handler(c, info)
    }
    await next()
    return undefined
  })
}
