// Several policies' decisions on one request, combined into what the request is told: a pure
// function of the decisions.

import type { Decision } from '@slidelimit/core'

/** One policy's decision on the current request. */
export interface PolicyDecision extends Decision {
  /** The policy name used in the headers. */
  readonly policy: string
}

/** What several policies' decisions come to. */
export interface Combined {
  /** Whether any policy denied: then the request is denied, and the others' counts go back. */
  readonly denied: boolean
  /** Every policy's decision as shown, in the order of `decisions`. */
  readonly shown: PolicyDecision[]
  /**
   * The binding one: the denying policy with the longest wait, else the one with the fewest
   * requests remaining (the later reset on a tie).
   */
  readonly bind: PolicyDecision
}

/**
 * Combines the decisions of the policies named `names` (one each, in order, at least one). A
 * policy that admitted while another denied is shown with its request given back (its count
 * one lower, not counted in any bucket): the caller takes those requests back.
 */
export function combine(decisions: readonly Decision[], names: readonly string[]): Combined {
  const denied = decisions.some((d) => !d.allowed)
  const shown: PolicyDecision[] = decisions.map((d, i) => {
    // An admitted decision taken back because another policy denied: its count is back.
    const remaining = denied && d.allowed ? Math.min(d.remaining + 1, d.limit) : d.remaining
    return {
      allowed: d.allowed,
      limit: d.limit,
      windowSeconds: d.windowSeconds,
      remaining,
      retryAfterSeconds: remaining > 0 ? 0 : d.retryAfterSeconds,
      resetSeconds: d.resetSeconds,
      id: d.id,
      bucket: denied ? -1 : d.bucket,
      policy: names[i] as string,
    }
  })
  let bind = shown[0] as PolicyDecision
  for (const d of shown) {
    if (denied) {
      if (!d.allowed && (bind.allowed || d.retryAfterSeconds > bind.retryAfterSeconds)) {
        bind = d
      }
    } else if (
      d.remaining < bind.remaining ||
      (d.remaining === bind.remaining && d.resetSeconds > bind.resetSeconds)
    ) {
      bind = d
    }
  }
  return { denied, shown, bind }
}
