export { rateLimiter, defaultDenial, defaultUnavailable } from './rate-limiter.js'
export type {
  PolicyDecision,
  PolicyOptions,
  RateLimitInfo,
  RateLimitMiddleware,
  RateLimiterOptions,
  RouteHandler,
} from './rate-limiter.js'
export type { Limiter } from './brands.js'
export {
  clientAddress,
  normalizeAddress,
  parseAddress,
  socketAddress,
  MAX_FORWARDED_ENTRIES,
  MAX_FORWARDED_LENGTH,
  ClientAddressError,
} from './client-address.js'
export type { ClientAddressOptions, DebugLogger } from './client-address.js'
export type { HeaderStyle } from './headers.js'
