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
import type { Policy, RateLimiterOptions, Resolved } from './options.js'

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
  const flow = new LimitFlow(resolveOptions(options))
  const middleware = ((c: Context<E>, next: Next) =>
    flow.run(c, next)) as unknown as RateLimitMiddleware<E>
  middleware.wrap = (route) => (c, next) =>
    flow.run(c, () => route(c, next)) as Response | Promise<Response>
  Object.defineProperty(middleware, 'policies', {
    value: flow.config.policies.map(({ name, limiter }) => ({ name, limiter })),
  })
  return middleware
}

/**
 * One middleware's flow, top to bottom: skip, key, decide (one policy, one under a limit of the
 * request's, or several), then answer (the denial, or the route with the header fields). The
 * user's callbacks are taken out of `config` before they are called, so that they never get it
 * as `this`.
 */
class LimitFlow<E extends Env> {
  constructor(readonly config: Resolved<E>) {}

  /** Limits one request; `proceed` runs the route. */
  run(c: Context<E>, proceed: Proceed): Answer {
    const skip = this.config.skip
    if (skip !== undefined) {
      const skipped = skip(c)
      if (isPromise(skipped)) {
        return skipped.then((yes) => (yes ? proceed() : this.#keyThenDecide(c, proceed)))
      }
      if (skipped) {
        return proceed()
      }
    }
    return this.#keyThenDecide(c, proceed)
  }

  #keyThenDecide(c: Context<E>, proceed: Proceed): Answer {
    const { keyGenerator } = this.config
    const key = keyGenerator(c)
    return isPromise(key)
      ? key.then((k) => this.#decide(c, k, proceed))
      : this.#decide(c, key, proceed)
  }

  #decide(c: Context<E>, key: string, proceed: Proceed): Answer {
    if (typeof key !== 'string') {
      throw new TypeError(`keyGenerator returned ${typeof key}, not a string`)
    }
    const { single, limitOf } = this.config
    if (single === undefined) {
      return this.#decideAll(c, key, proceed)
    }
    if (limitOf !== undefined) {
      return this.#decideUnder(c, key, single, limitOf(c), proceed)
    }
    let decision: Decision | Promise<Decision>
    try {
      decision = single.limiter.decide(key)
    } catch (error) {
      return this.#failed(c, error)
    }
    if (isPromise(decision)) {
      return decision.then(
        (d) => this.#respondOne(c, key, d, proceed),
        (error: unknown) => this.#failed(c, error),
      )
    }
    return this.#respondOne(c, key, decision, proceed)
  }

  /** One policy under the limit the request's `limit` function gave. */
  #decideUnder(
    c: Context<E>,
    key: string,
    policy: Policy,
    limit: number | Promise<number>,
    proceed: Proceed,
  ): Answer {
    if (isPromise(limit)) {
      return limit.then((l) => this.#decideUnder(c, key, policy, l, proceed))
    }
    let decision: Decision | Promise<Decision>
    try {
      decision = policy.limiter.decide(key, { limit })
    } catch (error) {
      return this.#failed(c, error)
    }
    return isPromise(decision)
      ? decision.then(
          (d) => this.#respondOne(c, key, d, proceed),
          (error: unknown) => this.#failed(c, error),
        )
      : this.#respondOne(c, key, decision, proceed)
  }

  /** Several policies, decided together; when one fails, those that counted take it back. */
  #decideAll(c: Context<E>, key: string, proceed: Proceed): Answer {
    const pending = this.config.policies.map((p) => {
      try {
        return p.limiter.decide(key)
      } catch (error) {
        return Promise.reject(error instanceof Error ? error : new Error(String(error)))
      }
    })
    if (!pending.some(isPromise)) {
      return this.#respond(c, key, pending as Decision[], proceed)
    }
    return Promise.allSettled(pending.map(async (p) => p)).then((settled) => {
      const errors = settled.filter((s) => s.status === 'rejected')
      if (errors.length > 0) {
        // Take back what the policies that answered counted.
        const done = settled.flatMap((s, i) =>
          s.status === 'fulfilled' ? [{ d: s.value, i }] : [],
        )
        this.#giveBack(
          done.map((x) => x.d),
          done.map((x) => x.i),
        )
        return this.#failed(c, (errors[0] as PromiseRejectedResult).reason)
      }
      return this.#respond(
        c,
        key,
        settled.map((s) => (s as PromiseFulfilledResult<Decision>).value),
        proceed,
      )
    })
  }

  /** One policy, its decision at hand: the common case, kept lean. */
  #respondOne(c: Context<E>, key: string, d: Decision, proceed: Proceed): Answer {
    const { single, limitOf, policyValue, style, named, itemStarts } = this.config
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
    const { setInfo } = this.config
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
    return d.allowed ? this.#proceedWith(c, [d], fields, proceed) : this.#deny(c, info, fields)
  }

  /** Answers from the decisions of several policies. */
  #respond(c: Context<E>, key: string, decisions: readonly Decision[], proceed: Proceed): Answer {
    const { style, policyValue, itemStarts, names } = this.config
    const { denied, shown, bind } = combine(decisions, names)
    if (denied) {
      this.#giveBack(decisions)
    }
    const info: RateLimitInfo = { ...bind, allowed: !denied, key, policies: shown }
    const { setInfo } = this.config
    setInfo(c, info)
    const fields = fieldsOf(style, policyValue, itemStarts, shown, bind)
    return denied ? this.#deny(c, info, fields) : this.#proceedWith(c, decisions, fields, proceed)
  }

  /** The denial: Retry-After and the fields on the handler's response. */
  #deny(c: Context<E>, info: RateLimitInfo, fields: Fields): Response | Promise<Response> {
    fields['Retry-After'] = String(info.retryAfterSeconds)
    const { handler } = this.config
    const res = handler(c, info)
    return isPromise(res) ? res.then((r) => withFields(r, fields)) : withFields(res, fields)
  }

  /**
   * Runs the route (`wrap`: it answers a Response; middleware: `next()`, after which the answer
   * is `c.res`), adds the fields, and takes the request back when `refund` says so.
   */
  #proceedWith(
    c: Context<E>,
    decisions: readonly Decision[],
    fields: Fields,
    proceed: Proceed,
  ): Answer {
    const refund = this.config.refund
    let result: ReturnType<Proceed>
    try {
      result = proceed()
    } catch (error) {
      if (refund !== undefined) {
        this.#giveBack(decisions)
      }
      throw error
    }
    if (isPromise(result)) {
      return result.then(
        (value) =>
          this.#finish(c, decisions, fields, value instanceof Response ? value : undefined),
        (error: unknown) => {
          if (refund !== undefined) {
            this.#giveBack(decisions)
          }
          throw error
        },
      )
    }
    return this.#finish(c, decisions, fields, result)
  }

  /**
   * The fields on the route's answer: `res` (a wrapped handler's), or, from the middleware,
   * `c.res`; then the refund when `refund` asks for it.
   */
  #finish(
    c: Context<E>,
    decisions: readonly Decision[],
    fields: Fields,
    res: Response | undefined,
  ): Response | undefined {
    const { style, refund } = this.config
    if (res === undefined) {
      // Middleware: the route's answer is on the context.
      const before = c.res
      const after = style === 'none' ? before : withFields(before, fields)
      if (after !== before) {
        c.res = after
      }
      if (refund?.(c, after) === true) {
        this.#giveBack(decisions)
      }
      return undefined
    }
    const withThem = style === 'none' ? res : withFields(res, fields)
    if (refund?.(c, withThem) === true) {
      this.#giveBack(decisions)
    }
    return withThem
  }

  /** A store failure answers with the unavailable handler; anything else is thrown. */
  #failed(c: Context<E>, error: unknown): Response | Promise<Response> {
    // By code, not class: the store may come with another copy of @slidelimit/core.
    if (isStoreError(error)) {
      const { unavailableHandler } = this.config
      return unavailableHandler(c, error)
    }
    throw error
  }

  /** Takes back the admitted decisions (of the policies at `policyIndexes`, else in order). */
  #giveBack(decisions: readonly Decision[], policyIndexes?: readonly number[]): void {
    const { policies, logger } = this.config
    for (const [i, decision] of decisions.entries()) {
      if (decision.allowed) {
        const policy = policies[policyIndexes?.[i] ?? i] as Policy
        policy.limiter.refund(decision).catch((error: unknown) => {
          logger?.debug('could not refund a request', { policy: policy.name, error: String(error) })
        })
      }
    }
  }
}
