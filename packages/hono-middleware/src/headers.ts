// The RateLimit header fields (draft-ietf-httpapi-ratelimit-headers-10) and Retry-After.
//
//   RateLimit-Policy: "default";q=100;w=3600
//   RateLimit: "default";r=42;t=17
//
// `q` is the quota, `w` the window in seconds, `r` the remaining quota and `t` the seconds
// until more quota is available. The policy item never changes, so it is built once.

import { ConfigError } from '@slidelimit/core'
import type { Decision } from '@slidelimit/core'

/** A policy name must fit in a structured-field string: printable ASCII without `"` or `\`. */
export function checkPolicyName(name: unknown): string {
  if (typeof name !== 'string' || name === '' || !/^[\x20-\x21\x23-\x5b\x5d-\x7e]+$/.test(name)) {
    throw new ConfigError(
      'policyName',
      name,
      'a non-empty string of printable ASCII without " or \\',
    )
  }
  return name
}

/** The `RateLimit-Policy` value for one policy. */
export function policyField(name: string, limit: number, windowSeconds: number): string {
  return `"${name}";q=${limit};w=${windowSeconds}`
}

/** The `RateLimit` value for one decision. */
export function rateLimitField(name: string, decision: Decision): string {
  return `"${name}";r=${decision.remaining};t=${decision.resetSeconds}`
}
