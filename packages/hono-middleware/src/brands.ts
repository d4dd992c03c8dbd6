// Recognising core's limiters and errors without class identity.
//
// Two copies of @slidelimit/core can sit in one app (a store and the middleware of different
// versions, each with its own): `instanceof` then refuses a limiter built by the other copy and
// misses its store errors. So a limiter is recognised by its brand,
// `Symbol.for('slidelimit.limiter')` (a registered symbol: the same in every copy), and an
// error by the stable `code` every slidelimit error carries.

import { SlidingWindowLimiter } from '@slidelimit/core'
import type { StoreError } from '@slidelimit/core'

/** The brand core's limiters carry, `true` under this registered symbol. */
export const LIMITER_BRAND: unique symbol = Symbol.for('slidelimit.limiter') as never

/**
 * What the middleware uses of a limiter: a SlidingWindowLimiter from any copy of
 * @slidelimit/core (its private fields left out, so another copy's class type fits).
 */
export type Limiter = Pick<
  SlidingWindowLimiter,
  'limit' | 'windowSeconds' | 'bucketSeconds' | 'store' | 'prefix' | 'decide' | 'refund'
>

/**
 * Whether `value` is a limiter of any copy of @slidelimit/core: it carries the brand (or is
 * this copy's class, for cores from before the brand).
 */
export function isLimiter(value: unknown): value is Limiter {
  if (typeof value !== 'object' || value === null) {
    return false
  }
  return (
    (value as Record<symbol, unknown>)[LIMITER_BRAND] === true ||
    value instanceof SlidingWindowLimiter
  )
}

/**
 * Whether `error` is a store failure of any copy of @slidelimit/core, by its code:
 * `ERR_SLIDELIMIT_STORE` or a narrower `ERR_SLIDELIMIT_STORE_*` (`_UNAVAILABLE`, `_KEY`).
 */
export function isStoreError(error: unknown): error is StoreError {
  if (typeof error !== 'object' || error === null) {
    return false
  }
  const code = (error as { code?: unknown }).code
  return (
    typeof code === 'string' &&
    (code === 'ERR_SLIDELIMIT_STORE' || code.startsWith('ERR_SLIDELIMIT_STORE_'))
  )
}
