// The rate-limit header fields, one function per IETF draft that defines them, named as
// express-rate-limit and hono-rate-limiter name their `standardHeaders` values.
//
// draft-6 (https://datatracker.ietf.org/doc/html/draft-ietf-httpapi-ratelimit-headers-06):
// separate fields for the policy closest to its limit, every policy listed in RateLimit-Policy:
//   RateLimit-Limit: 100   RateLimit-Remaining: 42   RateLimit-Reset: 17
//   RateLimit-Policy: 10;w=1, 100;w=3600
//
// draft-7 (https://datatracker.ietf.org/doc/html/draft-ietf-httpapi-ratelimit-headers-07):
// one combined RateLimit field (a dictionary) for the policy closest to its limit:
//   RateLimit: limit=100, remaining=42, reset=17
//   RateLimit-Policy: 10;w=1, 100;w=3600
//
// draft-8 (https://datatracker.ietf.org/doc/html/draft-ietf-httpapi-ratelimit-headers-08) and
// draft-10 (https://datatracker.ietf.org/doc/html/draft-ietf-httpapi-ratelimit-headers-10),
// named policies, one item each:
//   RateLimit-Policy: "burst";q=10;w=1, "hourly";q=100;w=3600
//   RateLimit: "burst";r=9;t=1, "hourly";r=42;t=17
// `q` is the quota, `w` the window in seconds, `r` the remaining quota and `t` the seconds until
// more quota is available. The items sent here (no `qu` quota unit, no `pk` partition key) read
// the same in both drafts.
//
// When the limit is fixed the policy fields never change, so they are built once.

import { ConfigError } from '@slidelimit/core'
import type { Decision } from '@slidelimit/core'
import type { Fields } from './fields.js'

/** Which header fields to send: the IETF draft that defines them, or none. */
export type HeaderStyle = 'draft-6' | 'draft-7' | 'draft-8' | 'draft-10' | 'none'

const STYLES: readonly unknown[] = ['draft-6', 'draft-7', 'draft-8', 'draft-10', 'none']

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
  if (STYLES.includes(value)) {
    return value as HeaderStyle
  }
  throw new ConfigError(
    'headers',
    value,
    '"draft-6", "draft-7", "draft-8", "draft-10" or "none" (or true / false)',
  )
}

/** Whether the style names each policy in one item per policy (draft-8 and later). */
export function namesPolicies(style: HeaderStyle): boolean {
  return style === 'draft-8' || style === 'draft-10'
}

/** A `RateLimit-Policy` item of draft-6 and draft-7: `100;w=3600`. */
function unnamedPolicyItem(limit: number, windowSeconds: number): string {
  return `${limit};w=${windowSeconds}`
}

/** A `RateLimit-Policy` item of draft-8 and draft-10: `"name";q=100;w=3600`. */
function namedPolicyItem(name: string, limit: number, windowSeconds: number): string {
  return `"${name}";q=${limit};w=${windowSeconds}`
}

/** The start of a policy's `RateLimit` item in draft-8 and draft-10, built once: `"name";r=`. */
export function itemStartOf(name: string): string {
  return `"${name}";r=`
}

/** A `RateLimit` item of draft-8 and draft-10 from its start: `"name";r=42;t=17`. */
export function rateLimitItem(itemStart: string, decision: Decision): string {
  return `${itemStart}${decision.remaining};t=${decision.resetSeconds}`
}

/** The `RateLimit-Policy` item of one policy in a style (not `none`). */
export function policyItem(
  style: HeaderStyle,
  name: string,
  limit: number,
  windowSeconds: number,
): string {
  return namesPolicies(style)
    ? namedPolicyItem(name, limit, windowSeconds)
    : unnamedPolicyItem(limit, windowSeconds)
}

/**
 * The fields of a style for the policies' decisions: draft-8 and draft-10 one item per policy
 * (`itemStarts[i]` is `"name";r=`), draft-6 and draft-7 the binding decision's.
 */
export function fieldsOf(
  style: HeaderStyle,
  policyValue: string,
  itemStarts: readonly string[],
  decisions: readonly Decision[],
  bind: Decision,
): Fields {
  switch (style) {
    case 'none':
      return {}
    case 'draft-6':
      // Separate fields for the binding policy.
      return {
        'RateLimit-Policy': policyValue,
        'RateLimit-Limit': String(bind.limit),
        'RateLimit-Remaining': String(bind.remaining),
        'RateLimit-Reset': String(bind.resetSeconds),
      }
    case 'draft-7':
      // One combined field for the binding policy.
      return {
        'RateLimit-Policy': policyValue,
        RateLimit: `limit=${bind.limit}, remaining=${bind.remaining}, reset=${bind.resetSeconds}`,
      }
    default: {
      // draft-8 and draft-10: an item per policy.
      let value = ''
      for (const [i, d] of decisions.entries()) {
        value += `${i === 0 ? '' : ', '}${rateLimitItem(itemStarts[i] as string, d)}`
      }
      return { 'RateLimit-Policy': policyValue, RateLimit: value }
    }
  }
}
