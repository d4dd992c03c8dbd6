export { RateLimitError, ConfigError, StoreError, describeValue } from './errors.js'
export type { Store, SlotIncrement } from './store.js'
export { SlidingWindowLimiter, createLimiter, coarseSlot } from './limiter.js'
export type { LimiterOptions, Decision } from './limiter.js'
