export { rateLimiter } from './rate-limiter.js'
export type { RateLimitInfo, RateLimitMiddleware, RouteHandler } from './rate-limiter.js'
export { defaultDenial, defaultUnavailable } from './options.js'
export type { PolicyOptions, RateLimiterOptions } from './options.js'
export type { PolicyDecision } from './combine.js'
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
