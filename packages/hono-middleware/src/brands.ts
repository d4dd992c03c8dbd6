// Recognising core's limiters and errors without class identity.
//
// Two copies of @slidelimit/core can sit in one app (a store and the middleware of different
// versions, each with its own): `instanceof` then refuses a limiter built by the other copy and
// misses its store errors. So a limiter is recognised by core's brand (`isLimiter`), and a
// store error by its stable code (core's `isStoreError`).

import { SlidingWindowLimiter, isLimiter as isBrandedLimiter } from '@slidelimit/core'

/**
 * What the middleware uses of a limiter: a SlidingWindowLimiter from any copy of
 * @slidelimit/core (its private fields left out, so another copy's class type fits).
 */
export type Limiter = Pick<
  SlidingWindowLimiter,
  'limit' | 'windowSeconds' | 'bucketSeconds' | 'store' | 'prefix' | 'decide' | 'refund'
>

/**
 * Whether `value` is a limiter of any copy of @slidelimit/core: it carries core's brand (or is
 * this copy's class, for cores from before the brand).
 */
export function isLimiter(value: unknown): value is Limiter {
  return isBrandedLimiter(value) || value instanceof SlidingWindowLimiter
}
