// Recognising limiters and store errors without class identity: two copies of
// @slidelimit/core (a store and the middleware of different versions) have two classes each.
// A limiter carries a brand under a registered symbol (`Symbol.for` gives every copy the same
// one); an error carries its stable `code`.

import type { StoreError } from './errors.js'
import type { SlidingWindowLimiter } from './limiter.js'

/** The property every limiter carries (set to `true`), shared by all copies of core. */
export const LIMITER_BRAND = Symbol.for('slidelimit.limiter')

/**
 * Whether `value` is a limiter made by any copy of `@slidelimit/core`, without `instanceof`.
 *
 * @example
 * ```ts
 * if (!isLimiter(options.limiter)) throw new ConfigError('limiter', options.limiter, 'a limiter')
 * ```
 */
export function isLimiter(value: unknown): value is SlidingWindowLimiter {
  return (
    typeof value === 'object' &&
    value !== null &&
    (value as Record<symbol, unknown>)[LIMITER_BRAND] === true
  )
}

/**
 * Whether `error` is a store failure from any copy of `@slidelimit/core`, by its code:
 * `ERR_SLIDELIMIT_STORE` or a narrower `ERR_SLIDELIMIT_STORE_*` (`_UNAVAILABLE`, `_KEY`, ...).
 */
export function isStoreError(error: unknown): error is StoreError {
  const code =
    typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined
  return (
    typeof code === 'string' &&
    (code === 'ERR_SLIDELIMIT_STORE' || code.startsWith('ERR_SLIDELIMIT_STORE_'))
  )
}
