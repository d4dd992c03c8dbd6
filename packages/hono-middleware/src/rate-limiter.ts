// The Hono middleware: one decision per policy and request, the rate-limit header fields on
// every limited response, and a 429 with Retry-After when a policy's limit is reached.
//
// Hot path. A Hono route with a single handler whose answer is not a promise is written by
// @hono/node-server straight from its plain header object; any `app.use` middleware makes the
// answer a promise, and Hono's `c.header()` builds a `Headers` object that is then copied. So:
// - `limit.wrap(handler)` runs the limiter inside the route's own handler, and answers without
//   a promise when the store does (the memory store) or the requester is denied from memory;
// - on Node the header fields are set on the Node response itself (`setHeader`), which Node
//   merges into the head it writes; elsewhere (and in `app.request()`) through `c.header()`;
// - everything that does not change per request is built once.

import { ConfigError, createLimiter, isStoreError } from '@slidelimit/core'
import type { Decision, Store, StoreError } from '@slidelimit/core'
import type { Context, Env, MiddlewareHandler, Next } from 'hono'
import type { ContentfulStatusCode } from 'hono/utils/http-status'
import { isLimiter } from './brands.js'
import type { Limiter } from './brands.js'
import { clientAddress } from './client-address.js'
import { withFields } from './fields.js'
import type { Fields } from './fields.js'
import type { ClientAddressOptions, DebugLogger } from './client-address.js'
import {
  checkHeaderStyle,
  checkPolicyName,
  fieldsOf,
  itemStartOf,
  namesPolicies,
  policyItem,
  rateLimitItem,
} from './headers.js'
import type { HeaderStyle } from './headers.js'
import { combine } from './combine.js'
import type { PolicyDecision } from './combine.js'

export type { PolicyDecision } from './combine.js'

/**
 * The decision on the current request, on `c.var.rateLimit`: the binding policy's (the denying
 * one with the longest wait, else the one with the fewest requests remaining), with every
 * policy's in `policies`. Plain data of the same shape for one policy and for several: it
 * serialises with `c.json(c.var.rateLimit)`.
 */
export interface RateLimitInfo extends PolicyDecision {
  /** The requester key the decision was made for. */
  readonly key: string
  /** Every policy's decision, in the order the policies were given. */
  readonly policies: readonly PolicyDecision[]
}

declare module 'hono' {
  interface ContextVariableMap {
    rateLimit: RateLimitInfo
  }
}

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

/** A route handler, as `wrap` takes and gives it. */
export type RouteHandler<E extends Env> = (
  c: Context<E>,
  next: Next,
) => Response | Promise<Response>

/** The middleware, which can also wrap a route's handler for the fastest path. */
export interface RateLimitMiddleware<E extends Env = Env> extends MiddlewareHandler<E> {
  /**
   * Limits one route from inside its handler: `app.get('/', limit.wrap((c) => c.text('Hi')))`.
   * Same decisions, headers and options as the middleware; on @hono/node-server with the
   * memory store the answer is then written without a promise, as bare Hono's is.
   */
  wrap: (handler: RouteHandler<E>) => RouteHandler<E>
  /** The policies, in order. */
  readonly policies: readonly { readonly name: string; readonly limiter: Limiter }[]
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
const KNOWN_OPTIONS = new Set(Object.keys(OPTION_NAMES))
const KNOWN_POLICY_OPTIONS = new Set(Object.keys(POLICY_OPTION_NAMES))

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
function settingVariable<E extends Env>(
  name: string,
): (c: Context<E>, info: RateLimitInfo) => void {
  return (c, info) => {
    ;(c.set as (key: string, value: unknown) => void)(name, info)
  }
}

/** The default denial, or one with the `message` and `statusCode` options. */
function denialFrom<E extends Env>(
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

/** The route: `next` (resolving to nothing) or a wrapped handler (answering a Response). */
type Proceed = () => Response | Promise<unknown>
/** What the middleware or the wrapped handler answers. */
type Answer = Response | undefined | Promise<unknown>

function isPromise<T>(value: T | Promise<T>): value is Promise<T> {
  return typeof (value as Partial<Promise<T>> | null)?.then === 'function'
}

function reject(option: string, value: unknown, expected: string): never {
  throw new ConfigError(option, value, expected)
}

interface Policy {
  readonly name: string
  readonly limiter: Limiter
  /** `"name";r=` for the draft-10 RateLimit item. */
  readonly itemStart: string
}

function buildPolicies(options: RateLimiterOptions): Policy[] {
  const { limiter, store, limit, windowSeconds, bucketSeconds, policies, policyName } = options
  if (store !== undefined && typeof (store as Partial<Store>).update !== 'function') {
    reject('store', store, 'a Store')
  }
  const built: { name: string; limiter: Limiter }[] = []
  if (policies !== undefined) {
    if (!Array.isArray(policies) || policies.length === 0) {
      reject('policies', policies, 'a non-empty list of policies')
    }
    for (const [option, value] of Object.entries({
      limiter,
      limit,
      windowSeconds,
      bucketSeconds,
      policyName,
    })) {
      if (value !== undefined) {
        reject(option, value, 'nothing with policies (set it on each policy)')
      }
    }
    for (const [i, policy] of (policies as PolicyOptions[]).entries()) {
      if (typeof policy !== 'object') {
        reject(`policies[${i}]`, policy, 'a policy object')
      }
      for (const name of Object.keys(policy)) {
        if (!KNOWN_POLICY_OPTIONS.has(name)) {
          reject(
            `policies[${i}].${name}`,
            (policy as Record<string, unknown>)[name],
            'no such option',
          )
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
      built.push({
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
      })
    }
  } else {
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
    built.push({
      name: checkPolicyName(policyName ?? 'default'),
      limiter:
        limiter ??
        createLimiter({
          store: store as Store,
          ...(typeof limit === 'number' && { limit }),
          ...(windowSeconds !== undefined && { windowSeconds }),
          ...(bucketSeconds !== undefined && { bucketSeconds }),
        }),
    })
  }
  const names = new Set<string>()
  for (const [i, { name, limiter: l }] of built.entries()) {
    if (names.has(name)) {
      reject('policies', name, 'policies with different names')
    }
    names.add(name)
    for (const other of built.slice(i + 1)) {
      if (other.limiter.store === l.store && other.limiter.prefix === l.prefix) {
        reject('policies', name, 'limiters that do not share counters (give each its own prefix)')
      }
    }
  }
  return built.map(({ name, limiter: l }) => ({ name, limiter: l, itemStart: itemStartOf(name) }))
}

/**
 * Limits requests with an exact bucketed sliding window.
 *
 * @example
 * ```ts
 * import { Hono } from 'hono'
 * import { MemoryStore } from '@slidelimit/store-memory'
 * import { rateLimiter } from '@slidelimit/hono-middleware'
 *
 * const app = new Hono()
 * app.use(rateLimiter({ store: new MemoryStore(), limit: 100, windowSeconds: 3600 }))
 * app.get('/', (c) => c.text(`Hello! ${c.var.rateLimit.remaining} left`))
 * ```
 */
export function rateLimiter<E extends Env = Env>(
  options: RateLimiterOptions<E>,
): RateLimitMiddleware<E> {
  if (typeof options !== 'object') {
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
    for (const [option, value] of Object.entries({
      trustProxy,
      proxyHeader,
      ipv6Subnet,
      getConnInfo,
    })) {
      if (value !== undefined) {
        reject(option, value, 'nothing with keyGenerator (it shapes the default key only)')
      }
    }
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

  const giveBack = (decisions: readonly Decision[], policyIndexes?: readonly number[]): void => {
    for (const [i, decision] of decisions.entries()) {
      if (decision.allowed) {
        const policy = policies[policyIndexes?.[i] ?? i] as Policy
        policy.limiter.refund(decision).catch((error: unknown) => {
          logger?.debug('could not refund a request', { policy: policy.name, error: String(error) })
        })
      }
    }
  }

  /** The header fields for the decisions (taken back ones shown with their count back). */
  const fieldsFor = (decisions: readonly PolicyDecision[], bind: PolicyDecision): Fields =>
    fieldsOf(style, policyValue, itemStarts, decisions, bind)

  const failed = (c: Context<E>, error: unknown): Response | Promise<Response> => {
    // By code, not class: the store may come with another copy of @slidelimit/core.
    if (isStoreError(error)) {
      return unavailableHandler(c, error)
    }
    throw error
  }

  /** The denial: Retry-After and the fields on the handler's response. */
  const deny = (
    c: Context<E>,
    info: RateLimitInfo,
    fields: Fields,
  ): Response | Promise<Response> => {
    fields['Retry-After'] = String(info.retryAfterSeconds)
    const res = handler(c, info)
    return isPromise(res) ? res.then((r) => withFields(r, fields)) : withFields(res, fields)
  }

  /**
   * Runs the route (`wrap`: it answers a Response; middleware: `next()`, after which the answer
   * is `c.res`), adds the fields, and takes the request back when `refund` says so.
   */
  const proceedWith = (
    c: Context<E>,
    decisions: readonly Decision[],
    fields: Fields,
    proceed: Proceed,
  ): Answer => {
    const finish = (value: Response | undefined): Response | undefined => {
      let res = value
      if (res === undefined) {
        // Middleware: the route's answer is on the context.
        const before = c.res
        const after = style === 'none' ? before : withFields(before, fields)
        if (after !== before) {
          c.res = after
        }
        res = after
        if (refund?.(c, res) === true) {
          giveBack(decisions)
        }
        return undefined
      }
      res = style === 'none' ? res : withFields(res, fields)
      if (refund?.(c, res) === true) {
        giveBack(decisions)
      }
      return res
    }
    let result: ReturnType<Proceed>
    try {
      result = proceed()
    } catch (error) {
      if (refund !== undefined) {
        giveBack(decisions)
      }
      throw error
    }
    if (isPromise(result)) {
      return result.then(
        (value) => finish(value instanceof Response ? value : undefined),
        (error: unknown) => {
          if (refund !== undefined) {
            giveBack(decisions)
          }
          throw error
        },
      )
    }
    return finish(result)
  }

  /** Answers from the decisions of several policies. */
  const respond = (
    c: Context<E>,
    key: string,
    decisions: readonly Decision[],
    proceed: Proceed,
  ): Answer => {
    const { denied, shown, bind } = combine(decisions, names)
    if (denied) {
      giveBack(decisions)
    }
    const info: RateLimitInfo = { ...bind, allowed: !denied, key, policies: shown }
    setInfo(c, info)
    const fields = fieldsFor(shown, bind)
    return denied ? deny(c, info, fields) : proceedWith(c, decisions, fields, proceed)
  }

  /** One policy, its decision at hand: the common case, kept lean. */
  const respondOne = (c: Context<E>, key: string, d: Decision, proceed: Proceed): Answer => {
    const policy = single as Policy
    // Plain data, no cycle: the policy's entry is an object of its own (one object more than
    // when `policies` held `info` itself, which made `c.json(c.var.rateLimit)` throw).
    const shown: PolicyDecision = {
      allowed: d.allowed,
      limit: d.limit,
      windowSeconds: d.windowSeconds,
      remaining: d.remaining,
      retryAfterSeconds: d.retryAfterSeconds,
      resetSeconds: d.resetSeconds,
      id: d.id,
      bucket: d.bucket,
      policy: policy.name,
    }
    const info: RateLimitInfo = {
      allowed: d.allowed,
      limit: d.limit,
      windowSeconds: d.windowSeconds,
      remaining: d.remaining,
      retryAfterSeconds: d.retryAfterSeconds,
      resetSeconds: d.resetSeconds,
      id: d.id,
      bucket: d.bucket,
      policy: policy.name,
      key,
      policies: [shown],
    }
    setInfo(c, info)
    // A limit that depends on the request: the policy field shows the one that applied.
    const policyNow =
      limitOf === undefined ? policyValue : policyItem(style, policy.name, d.limit, d.windowSeconds)
    const fields: Fields = named
      ? {
          'RateLimit-Policy': policyNow,
          RateLimit: rateLimitItem(policy.itemStart, d),
        }
      : fieldsOf(style, policyNow, itemStarts, [info], info)
    return d.allowed ? proceedWith(c, [d], fields, proceed) : deny(c, info, fields)
  }

  /** One policy under the limit the request's `limit` function gave. */
  const decideUnder = (
    c: Context<E>,
    key: string,
    policy: Policy,
    limit: number | Promise<number>,
    proceed: Proceed,
  ): Answer => {
    if (isPromise(limit)) {
      return limit.then((l) => decideUnder(c, key, policy, l, proceed))
    }
    let decision: Decision | Promise<Decision>
    try {
      decision = policy.limiter.decide(key, { limit })
    } catch (error) {
      return failed(c, error)
    }
    return isPromise(decision)
      ? decision.then(
          (d) => respondOne(c, key, d, proceed),
          (error: unknown) => failed(c, error),
        )
      : respondOne(c, key, decision, proceed)
  }

  const decideAll = (c: Context<E>, key: string, proceed: Proceed): Answer => {
    if (typeof key !== 'string') {
      throw new TypeError(`keyGenerator returned ${typeof key}, not a string`)
    }
    if (single !== undefined) {
      if (limitOf !== undefined) {
        return decideUnder(c, key, single, limitOf(c), proceed)
      }
      let decision: Decision | Promise<Decision>
      try {
        decision = single.limiter.decide(key)
      } catch (error) {
        return failed(c, error)
      }
      if (isPromise(decision)) {
        return decision.then(
          (d) => respondOne(c, key, d, proceed),
          (error: unknown) => failed(c, error),
        )
      }
      return respondOne(c, key, decision, proceed)
    }
    const pending = policies.map((p) => {
      try {
        return p.limiter.decide(key)
      } catch (error) {
        return Promise.reject(error instanceof Error ? error : new Error(String(error)))
      }
    })
    if (!pending.some(isPromise)) {
      return respond(c, key, pending as Decision[], proceed)
    }
    return Promise.allSettled(pending.map(async (p) => p)).then((settled) => {
      const errors = settled.filter((s) => s.status === 'rejected')
      if (errors.length > 0) {
        // Take back what the policies that answered counted.
        const done = settled.flatMap((s, i) =>
          s.status === 'fulfilled' ? [{ d: s.value, i }] : [],
        )
        giveBack(
          done.map((x) => x.d),
          done.map((x) => x.i),
        )
        return failed(c, (errors[0] as PromiseRejectedResult).reason)
      }
      return respond(
        c,
        key,
        settled.map((s) => (s as PromiseFulfilledResult<Decision>).value),
        proceed,
      )
    })
  }

  const keyThenDecide = (c: Context<E>, proceed: Proceed): Answer => {
    const key = keyGenerator(c)
    return isPromise(key) ? key.then((k) => decideAll(c, k, proceed)) : decideAll(c, key, proceed)
  }

  const run = (c: Context<E>, proceed: Proceed): Answer => {
    if (skip !== undefined) {
      const skipped = skip(c)
      if (isPromise(skipped)) {
        return skipped.then((yes) => (yes ? proceed() : keyThenDecide(c, proceed)))
      }
      if (skipped) {
        return proceed()
      }
    }
    return keyThenDecide(c, proceed)
  }

  const middleware = ((c: Context<E>, next: Next) =>
    run(c, next)) as unknown as RateLimitMiddleware<E>
  middleware.wrap = (route) => (c, next) =>
    run(c, () => route(c, next)) as Response | Promise<Response>
  Object.defineProperty(middleware, 'policies', {
    value: policies.map(({ name, limiter }) => ({ name, limiter })),
  })
  return middleware
}
