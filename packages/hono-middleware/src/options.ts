// The middleware's options: their types, the checks that turn them into what the middleware
// runs on (policies, the denial, the context variable), and the default answers.

import { ConfigError, createLimiter } from '@slidelimit/core'
import type { Store, StoreError } from '@slidelimit/core'
import type { Context, Env } from 'hono'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import { isLimiter } from './brands.js'
import type { Limiter } from './brands.js'
import type { ClientAddressOptions, DebugLogger } from './client-address.js'
import { clientAddress } from './client-address.js'
import {
  checkHeaderStyle,
  checkPolicyName,
  itemStartOf,
  namesPolicies,
  policyItem,
} from './headers.js'
import type { HeaderStyle } from './headers.js'
import type { RateLimitInfo } from './rate-limiter.js'

/** One of several policies (see {@link RateLimiterOptions.policies}). */
export interface PolicyOptions {
  /** The name in the header fields. Defaults to `q<limit>w<windowSeconds>`. */
  name?: string
  /**
   * A limiter of its own (from any copy of @slidelimit/core); otherwise one is built on the
   * shared `store`.
   */
  limiter?: Limiter
  /** Requests admitted per window. Defaults to `100`. */
  limit?: number
  /** The rolling window in seconds. Defaults to `3600`. */
  windowSeconds?: number
  /** The bucket length in seconds. Defaults to `1`. */
  bucketSeconds?: number
}

/** Options of {@link rateLimiter}. */
export interface RateLimiterOptions<E extends Env = Env> extends ClientAddressOptions {
  /**
   * The limiter to use. Give either this or `store` (with `limit`, `windowSeconds` and
   * `bucketSeconds`), or `policies`. A limiter made by another copy of @slidelimit/core is
   * accepted: it is recognised by its brand, not its class.
   */
  limiter?: Limiter
  /** The store to build limiters on, when `limiter` is not given. */
  store?: Store
  /**
   * Requests admitted per window, with `store`; or a function of the request that gives the
   * limit for it (API tiers, per-route budgets), with `store` or `limiter`:
   * `(c) => (c.var.user?.plan === 'pro' ? 1000 : 100)`. The counters do not depend on the limit,
   * so a request's limit can change from one request to the next and the window stays exact;
   * the headers show the limit that applied. Defaults to `100` (or the limiter's own limit).
   */
  limit?: number | ((c: Context<E>) => number | Promise<number>)
  /** The rolling window in seconds, with `store`. Defaults to `3600`. */
  windowSeconds?: number
  /** The bucket length in seconds, with `store`. Defaults to `1`. */
  bucketSeconds?: number
  /**
   * Several policies on the same requests, e.g. 10 per second and 100 per hour: a request is
   * admitted only when every policy admits it (the others take their count back when one
   * denies).
   */
  policies?: readonly PolicyOptions[]
  /**
   * The requester key of a request: an API token, a user id, an address. Defaults to the client
   * address (see `trustProxy`, `proxyHeader`, `ipv6Subnet`, `getConnInfo`); where the runtime
   * gives none, the request fails with a ClientAddressError rather than share one key.
   */
  keyGenerator?: (c: Context<E>) => string | Promise<string>
  /** The policy name in the header fields, with one policy. Defaults to `"default"`. */
  policyName?: string
  /**
   * Which header fields to send, named after the IETF draft of
   * draft-ietf-httpapi-ratelimit-headers that defines them (as express-rate-limit's
   * `standardHeaders` names them):
   * - `'draft-10'`: `RateLimit-Policy: "name";q=100;w=3600` and `RateLimit: "name";r=42;t=17`,
   *   one item per policy;
   * - `'draft-8'`: the same items as draft-10;
   * - `'draft-7'`: one combined `RateLimit: limit=100, remaining=42, reset=17` for the binding
   *   policy, and `RateLimit-Policy: 100;w=3600`;
   * - `'draft-6'`: separate `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` for the
   *   binding policy, and `RateLimit-Policy: 100;w=3600` (before 0.2.0 this was called
   *   `'draft-7'`);
   * - `'none'`: no rate-limit fields.
   *
   * `true` is `'draft-10'`, `false` is `'none'`. `Retry-After` is always sent with a denial.
   * Defaults to `'draft-10'`.
   */
  headers?: HeaderStyle | boolean
  /** Requests for which this returns true are not limited, counted or given headers. */
  skip?: (c: Context<E>) => boolean | Promise<boolean>
  /**
   * Called with the response of every admitted request; when it returns true the request is
   * taken back (not counted), e.g. `(c, res) => res.status >= 400`.
   */
  refund?: (c: Context<E>, response: Response) => boolean
  /**
   * Builds the response to a denied request. `Retry-After` and the header fields are already
   * set. Defaults to a `429` with `Rate limit exceeded. Try again in #N seconds`.
   */
  handler?: (c: Context<E>, info: RateLimitInfo) => Response | Promise<Response>
  /**
   * The body of the default denial: a string (sent as text), an object (sent as JSON), or a
   * function of the context and the decision that gives either (or a promise of it). Not with
   * `handler`. Defaults to `Rate limit exceeded. Try again in #N seconds`.
   */
  message?: string | object | ((c: Context<E>, info: RateLimitInfo) => unknown)
  /** The status of the default denial, 400-599. Not with `handler`. Defaults to `429`. */
  statusCode?: number
  /**
   * The name of the context variable the decision is set on, for apps that mount two limiters
   * on one route (e.g. `'apiRateLimit'`; declare it in your app's `Variables` to have it typed).
   * Defaults to `'rateLimit'` (typed as `c.var.rateLimit` with no declaration).
   */
  contextVariable?: string
  /**
   * Builds the response when the store fails and cannot decide (a FailoverStore in `closed`
   * mode, or a bare store that fails). Defaults to a `503` with
   * `Rate limiting is unavailable. Try again later.` and `Retry-After: 1`.
   */
  unavailableHandler?: (c: Context<E>, error: StoreError) => Response | Promise<Response>
  /** Receives debug messages: ignored forwarding headers, failed refunds. Defaults to none. */
  logger?: DebugLogger
}

// Every option, as records typed against the options interfaces: a name added to or taken
// from an interface without its record (or the other way round) does not compile.
const OPTION_NAMES: Record<keyof RateLimiterOptions, true> = {
  limiter: true,
  store: true,
  limit: true,
  windowSeconds: true,
  bucketSeconds: true,
  policies: true,
  keyGenerator: true,
  trustProxy: true,
  proxyHeader: true,
  ipv6Subnet: true,
  getConnInfo: true,
  logger: true,
  policyName: true,
  headers: true,
  skip: true,
  refund: true,
  handler: true,
  message: true,
  statusCode: true,
  contextVariable: true,
  unavailableHandler: true,
}
const POLICY_OPTION_NAMES: Record<keyof PolicyOptions, true> = {
  name: true,
  limiter: true,
  limit: true,
  windowSeconds: true,
  bucketSeconds: true,
}
export const KNOWN_OPTIONS = new Set(Object.keys(OPTION_NAMES))
export const KNOWN_POLICY_OPTIONS = new Set(Object.keys(POLICY_OPTION_NAMES))

/** The default denial: the original design's text, with the exact wait. */
export function defaultDenial<E extends Env>(c: Context<E>, info: RateLimitInfo): Response {
  return c.text(`Rate limit exceeded. Try again in #${info.retryAfterSeconds} seconds`, 429)
}

/** The default answer when the store cannot decide: 503, never a 500. */
export function defaultUnavailable<E extends Env>(c: Context<E>, _error: StoreError): Response {
  c.header('Retry-After', '1')
  return c.text('Rate limiting is unavailable. Try again later.', 503)
}

/** Sets the decision on the context variable of that name (`c.set` types only known names). */
export function settingVariable<E extends Env>(
  name: string,
): (c: Context<E>, info: RateLimitInfo) => void {
  return (c, info) => {
    ;(c.set as (key: string, value: unknown) => void)(name, info)
  }
}

/** The default denial, or one with the `message` and `statusCode` options. */
export function denialFrom<E extends Env>(
  message: RateLimiterOptions<E>['message'],
  statusCode: number | undefined,
): (c: Context<E>, info: RateLimitInfo) => Response | Promise<Response> {
  if (message === undefined && statusCode === undefined) {
    return defaultDenial
  }
  if (
    statusCode !== undefined &&
    (!Number.isSafeInteger(statusCode) || statusCode < 400 || statusCode > 599)
  ) {
    reject('statusCode', statusCode, 'an HTTP status from 400 to 599')
  }
  const status = (statusCode ?? 429) as ContentfulStatusCode
  const send = (c: Context<E>, body: unknown): Response =>
    typeof body === 'string' ? c.text(body, status) : c.json(body as object, status)
  if (message === undefined) {
    return (c, info) =>
      c.text(`Rate limit exceeded. Try again in #${info.retryAfterSeconds} seconds`, status)
  }
  if (typeof message === 'function') {
    return (c, info) => {
      const body: unknown = message(c, info)
      return isPromise(body) ? body.then((b) => send(c, b)) : send(c, body)
    }
  }
  const kind: string = typeof message
  if (kind !== 'string' && (kind !== 'object' || (message as unknown) === null)) {
    reject('message', message, 'a string, an object or a function')
  }
  return (c) => send(c, message)
}

export function isPromise<T>(value: T | Promise<T>): value is Promise<T> {
  return typeof (value as Partial<Promise<T>> | null)?.then === 'function'
}

export function reject(option: string, value: unknown, expected: string): never {
  throw new ConfigError(option, value, expected)
}

/** Refuses the first of `options` that is set: `expected` says why none may be. */
function refuseSet(options: Record<string, unknown>, expected: string): void {
  for (const [option, value] of Object.entries(options)) {
    if (value !== undefined) {
      reject(option, value, expected)
    }
  }
}

export interface Policy {
  readonly name: string
  readonly limiter: Limiter
  /** `"name";r=` for the draft-10 RateLimit item. */
  readonly itemStart: string
}

/** The policies the options ask for: each named, with its own limiter, counting apart. */
export function buildPolicies(options: RateLimiterOptions): Policy[] {
  const { limiter, store, limit, windowSeconds, bucketSeconds, policies, policyName } = options
  if (store !== undefined && typeof (store as Partial<Store>).update !== 'function') {
    reject('store', store, 'a Store')
  }
  let built: { name: string; limiter: Limiter }[]
  if (policies !== undefined) {
    if (!Array.isArray(policies) || policies.length === 0) {
      reject('policies', policies, 'a non-empty list of policies')
    }
    refuseSet(
      { limiter, limit, windowSeconds, bucketSeconds, policyName },
      'nothing with policies (set it on each policy)',
    )
    // Array.from, not map: a hole in the list is a policy too (undefined, refused by name).
    built = Array.from(policies as PolicyOptions[], (policy, i) => listedPolicy(policy, i, store))
  } else {
    built = [onlyPolicy(options)]
  }
  const names = new Set<string>()
  for (const { name } of built) {
    if (names.has(name)) {
      reject('policies', name, 'policies with different names')
    }
    names.add(name)
  }
  for (const [i, { name, limiter: l }] of built.entries()) {
    for (const other of built.slice(i + 1)) {
      if (other.limiter.store === l.store && other.limiter.prefix === l.prefix) {
        reject('policies', name, 'limiters that do not share counters (give each its own prefix)')
      }
    }
  }
  return built.map(({ name, limiter: l }) => ({ name, limiter: l, itemStart: itemStartOf(name) }))
}

/** Policy `i` of the `policies` option, checked, with its limiter (made on `store` if it has none). */
function listedPolicy(
  policy: PolicyOptions,
  i: number,
  store: Store | undefined,
): { name: string; limiter: Limiter } {
  if (
    typeof policy !== 'object' ||
    (policy as PolicyOptions | null) === null ||
    Array.isArray(policy)
  ) {
    reject(`policies[${i}]`, policy, 'a policy object')
  }
  for (const name of Object.keys(policy)) {
    if (!KNOWN_POLICY_OPTIONS.has(name)) {
      reject(`policies[${i}].${name}`, (policy as Record<string, unknown>)[name], 'no such option')
    }
  }
  const own = policy.limiter
  if (own !== undefined) {
    if (!isLimiter(own)) {
      reject(`policies[${i}].limiter`, own, 'a limiter (createLimiter)')
    }
    if ((policy.limit ?? policy.windowSeconds ?? policy.bucketSeconds) !== undefined) {
      reject(`policies[${i}].limit`, policy.limit, 'no limit or window with limiter')
    }
  } else if (store === undefined) {
    reject('store', store, 'a Store for policies without a limiter')
  }
  const made =
    own ??
    createLimiter({
      store: store as Store,
      ...(policy.limit !== undefined && { limit: policy.limit }),
      ...(policy.windowSeconds !== undefined && { windowSeconds: policy.windowSeconds }),
      ...(policy.bucketSeconds !== undefined && { bucketSeconds: policy.bucketSeconds }),
    })
  const name = checkPolicyName(
    policy.name ?? `q${made.limit}w${made.windowSeconds}`,
    `policies[${i}].name`,
  )
  // Policies built here count apart even when their windows are alike.
  return {
    name,
    limiter:
      own ??
      createLimiter({
        store: store as Store,
        limit: made.limit,
        windowSeconds: made.windowSeconds,
        bucketSeconds: made.bucketSeconds,
        prefix: `p${name}:${made.prefix}`,
      }),
  }
}

/** The one policy of options without `policies`: their `limiter`, or one made on their `store`. */
function onlyPolicy(options: RateLimiterOptions): { name: string; limiter: Limiter } {
  const { limiter, store, limit, windowSeconds, bucketSeconds, policyName } = options
  if (limiter !== undefined && store !== undefined) {
    reject('store', 'a store', 'either limiter or store, not both')
  }
  if (limiter !== undefined && !isLimiter(limiter)) {
    reject('limiter', limiter, 'a limiter (createLimiter)')
  }
  if (limiter === undefined && store === undefined) {
    reject('store', store, 'a Store (or give limiter or policies)')
  }
  if (
    limiter !== undefined &&
    ((typeof limit === 'function' ? undefined : limit) ?? windowSeconds ?? bucketSeconds) !==
      undefined
  ) {
    reject('limit', limit, 'no limit or window options with limiter (set them on it)')
  }
  return {
    name: checkPolicyName(policyName ?? 'default'),
    limiter:
      limiter ??
      createLimiter({
        store: store as Store,
        ...(typeof limit === 'number' && { limit }),
        ...(windowSeconds !== undefined && { windowSeconds }),
        ...(bucketSeconds !== undefined && { bucketSeconds }),
      }),
  }
}

/** The options checked and turned into what the middleware runs on. */
export interface Resolved<E extends Env> {
  /** Answers a denied request. */
  readonly handler: (c: Context<E>, info: RateLimitInfo) => Response | Promise<Response>
  readonly unavailableHandler: (c: Context<E>, error: StoreError) => Response | Promise<Response>
  readonly skip: RateLimiterOptions<E>['skip']
  readonly refund: RateLimiterOptions<E>['refund']
  readonly logger: DebugLogger | undefined
  /** Sets the decision on the context variable. */
  readonly setInfo: (c: Context<E>, info: RateLimitInfo) => void
  /** The request's limit, when `limit` is a function of it. */
  readonly limitOf: ((c: Context<E>) => number | Promise<number>) | undefined
  readonly policies: Policy[]
  readonly keyGenerator: (c: Context<E>) => string | Promise<string>
  readonly style: HeaderStyle
  /** Whether the style names each policy (draft-8 and later). */
  readonly named: boolean
  /** The `RateLimit-Policy` value when the limit is fixed. */
  readonly policyValue: string
  /** Each policy's `"name";r=`. */
  readonly itemStarts: string[]
  readonly names: string[]
  /** The policy, when there is one only (the common case, kept lean). */
  readonly single: Policy | undefined
}

/**
 * Checks every option (a ConfigError naming the first bad one) and resolves them: the policies
 * and their limiters, the key, the denial, the header style and what it builds once.
 */
export function resolveOptions<E extends Env>(options: RateLimiterOptions<E>): Resolved<E> {
  if (typeof options !== 'object' || (options as unknown) === null || Array.isArray(options)) {
    reject('options', options, 'an object')
  }
  for (const name of Object.keys(options)) {
    if (!KNOWN_OPTIONS.has(name)) {
      reject(name, (options as Record<string, unknown>)[name], 'no such option')
    }
  }
  const {
    keyGenerator: givenKey,
    trustProxy,
    proxyHeader,
    ipv6Subnet,
    getConnInfo,
    logger,
    headers,
    skip,
    refund,
    handler: givenHandler,
    message,
    statusCode,
    contextVariable = 'rateLimit',
    unavailableHandler = defaultUnavailable,
  } = options
  if (givenHandler !== undefined && (message ?? statusCode) !== undefined) {
    reject(message === undefined ? 'statusCode' : 'message', message ?? statusCode, 'no handler')
  }
  const handler = givenHandler ?? denialFrom(message, statusCode)
  if (typeof contextVariable !== 'string' || contextVariable === '') {
    reject('contextVariable', contextVariable, 'a non-empty string')
  }
  const setInfo = settingVariable<E>(contextVariable)
  const limitOf = typeof options.limit === 'function' ? options.limit : undefined
  const policies = buildPolicies(options as unknown as RateLimiterOptions)
  if (givenKey !== undefined) {
    if (typeof givenKey !== 'function') {
      reject('keyGenerator', givenKey, 'a function of the context')
    }
    refuseSet(
      { trustProxy, proxyHeader, ipv6Subnet, getConnInfo },
      'nothing with keyGenerator (it shapes the default key only)',
    )
  }
  const keyGenerator =
    givenKey ??
    (clientAddress({
      ...(trustProxy !== undefined && { trustProxy }),
      ...(proxyHeader !== undefined && { proxyHeader }),
      ...(ipv6Subnet !== undefined && { ipv6Subnet }),
      ...(getConnInfo !== undefined && { getConnInfo }),
      ...(logger !== undefined && { logger }),
    }) as (c: Context<E>) => string)
  for (const [option, value] of Object.entries({ handler, unavailableHandler, skip, refund })) {
    if (value !== undefined && typeof value !== 'function') {
      reject(option, value, 'a function')
    }
  }
  if (logger !== undefined && typeof (logger as Partial<DebugLogger>).debug !== 'function') {
    reject('logger', logger, 'an object with a debug(message, fields) method')
  }
  const style = checkHeaderStyle(headers)
  const named = namesPolicies(style)
  const policyValue = policies
    .map((p) => policyItem(style, p.name, p.limiter.limit, p.limiter.windowSeconds))
    .join(', ')
  const itemStarts = policies.map((p) => p.itemStart)
  const names = policies.map((p) => p.name)
  const single = policies.length === 1 ? (policies[0] as Policy) : undefined
  return {
    handler,
    unavailableHandler,
    skip,
    refund,
    logger,
    setInfo,
    limitOf,
    policies,
    keyGenerator,
    style,
    named,
    policyValue,
    itemStarts,
    names,
    single,
  }
}
