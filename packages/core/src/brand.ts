// A stable brand for limiters, so that code never needs `instanceof SlidingWindowLimiter`: two
// copies of @slidelimit/core (a store and the middleware of different versions) have two
// classes, but `Symbol.for` gives both the same symbol.

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
