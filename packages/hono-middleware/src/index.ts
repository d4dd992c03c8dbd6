export { rateLimiter, defaultDenial, defaultUnavailable } from './rate-limiter.js'
export type { RateLimiterOptions, RateLimitInfo } from './rate-limiter.js'
export { socketAddress, normalizeAddress, UNKNOWN_CLIENT } from './client-address.js'
export { policyField, rateLimitField } from './headers.js'
