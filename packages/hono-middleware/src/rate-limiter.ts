// The Hono middleware's flow: the requester's key, one decision per policy (combine.ts when
// there are several), the header fields (headers.ts) on the answer, and the denial or the route.
// The options and their checks are in options.ts.
//
// Hot path. A Hono route with a single handler whose answer is not a promise is written by
// @hono/node-server straight from its plain header object; any middleware makes the answer a
// promise. So:
// - `limit.wrap(handler)` runs the limiter inside the route's own handler, and answers without
//   a promise when the store does (the memory store) or the requester is denied from memory;
// - on @hono/node-server the fields go into the light response's plain header object
//   (fields.ts, node-server.ts); elsewhere (and in `app.request()`) into `response.headers`;
// - everything that does not change per request is built once.

import { isStoreError } from '@slidelimit/core'
import type { Decision } from '@slidelimit/core'
import type { Context, Env, MiddlewareHandler, Next } from 'hono'
import type { Limiter } from './brands.js'
import { combine } from './combine.js'
import type { PolicyDecision } from './combine.js'
import { withFields } from './fields.js'
import type { Fields } from './fields.js'
import { fieldsOf, policyItem, rateLimitItem } from './headers.js'
import { isPromise, resolveOptions } from './options.js'
import type { Policy, RateLimiterOptions } from './options.js'

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

/** The route: `next` (resolving to nothing) or a wrapped handler (answering a Response). */
type Proceed = () => Response | Promise<unknown>
/** What the middleware or the wrapped handler answers. */
type Answer = Response | undefined | Promise<unknown>

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
  const {
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
  } = resolveOptions(options)

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
