// The default requester key: the client address of the connection.
//
// On @hono/node-server the Node request is `c.env.incoming`; its socket's remote address is
// the peer that opened the connection, which a client cannot choose. Headers such as
// X-Forwarded-For are only trusted when the caller says so (see trustProxy in the app).

import type { Context } from 'hono'

interface NodeBindings {
  incoming?: { socket?: { remoteAddress?: string } }
  /** Some adapters nest the Node bindings under `server`. */
  server?: NodeBindings
}

/** The key used when no address can be found (every such request shares it). */
export const UNKNOWN_CLIENT = 'unknown'

/**
 * The address of the peer of the connection, or undefined when the runtime does not expose it.
 * An IPv4-mapped IPv6 address (`::ffff:192.0.2.1`) is given as its IPv4 address.
 */
export function socketAddress(c: Pick<Context, 'env'>): string | undefined {
  const env = c.env as NodeBindings | undefined
  const address = (env?.server ?? env)?.incoming?.socket?.remoteAddress
  if (address === undefined || address === '') {
    return undefined
  }
  return normalizeAddress(address)
}

/** Lowercases and strips the IPv4-mapped IPv6 prefix. */
export function normalizeAddress(address: string): string {
  const lower = address.toLowerCase()
  return lower.startsWith('::ffff:') && lower.includes('.') ? lower.slice(7) : lower
}
