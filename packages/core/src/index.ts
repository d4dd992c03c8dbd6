export { RateLimitError, ConfigError, StoreError, StoreKeyError, asStoreError } from './errors.js'
export type { Store, SlotIncrement, StoreCell } from './store.js'
export { SlidingWindowLimiter, createLimiter } from './limiter.js'
export type { LimiterOptions, Decision, DecideOptions } from './limiter.js'
export { isLimiter, isStoreError } from './brand.js'
export { FailoverStore, StoreUnavailableError } from './failover-store.js'
export type {
  FailoverStoreOptions,
  PoolState,
  ShardStatus,
  StoreState,
  StoreStateChange,
} from './failover-store.js'
