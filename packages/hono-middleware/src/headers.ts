// The rate-limit header fields.
//
// draft-10 (draft-ietf-httpapi-ratelimit-headers-10), one item per policy:
//   RateLimit-Policy: "burst";q=10;w=1, "hourly";q=100;w=3600
//   RateLimit: "burst";r=9;t=1, "hourly";r=42;t=17
// `q` is the quota, `w` the window in seconds, `r` the remaining quota and `t` the seconds until
// more quota is available.
//
// draft-7 (the older separate fields, which express-rate-limit calls draft-6), for the policy
// closest to its limit, with every policy listed in RateLimit-Policy:
//   RateLimit-Limit: 100   RateLimit-Remaining: 42   RateLimit-Reset: 17
//   RateLimit-Policy: 10;w=1, 100;w=3600
//
// The policy fields never change, so they are built once.

import { ConfigError } from '@slidelimit/core'
import type { Decision } from '@slidelimit/core'

/** Which header fields to send. */
export type HeaderStyle = 'draft-10' | 'draft-7' | 'none'

/** A policy name must fit in a structured-field string: printable ASCII without `"` or `\`. */
export function checkPolicyName(name: unknown, option = 'policyName'): string {
  if (typeof name !== 'string' || name === '' || !/^[\x20-\x21\x23-\x5b\x5d-\x7e]+$/.test(name)) {
    throw new ConfigError(option, name, 'a non-empty string of printable ASCII without " or \\')
  }
  return name
}

/** The option value as a style: `true` is draft-10, `false` none. */
export function checkHeaderStyle(value: unknown): HeaderStyle {
  if (value === true || value === undefined) {
    return 'draft-10'
  }
  if (value === false) {
    return 'none'
  }
  if (value === 'draft-10' || value === 'draft-7' || value === 'none') {
    return value
  }
  throw new ConfigError('headers', value, '"draft-10", "draft-7" or "none" (or true / false)')
}

/** The draft-10 `RateLimit-Policy` item for one policy. */
export function policyField(name: string, limit: number, windowSeconds: number): string {
  return `"${name}";q=${limit};w=${windowSeconds}`
}

/** The draft-10 `RateLimit` item for one decision. */
export function rateLimitField(name: string, decision: Decision): string {
  return `"${name}";r=${decision.remaining};t=${decision.resetSeconds}`
}

/** The draft-7 `RateLimit-Policy` item for one policy. */
export function draft7PolicyField(limit: number, windowSeconds: number): string {
  return `${limit};w=${windowSeconds}`
}
