// The requester key of the hello app: the client address, taken from X-Forwarded-For only when
// TRUST_PROXY says how many proxies stand in front of the app.

import { isIP } from 'node:net'
import { UNKNOWN_CLIENT, normalizeAddress, socketAddress } from '@slidelimit/hono-middleware'
import type { Context } from 'hono'
import type { Logger } from './logger.js'

/** Longest X-Forwarded-For value looked at; a longer one is ignored. */
const MAX_FORWARDED_LENGTH = 4096

/**
 * Returns a key generator. With `hops` = 0 only the connection counts, so a client cannot choose
 * its own key. With `hops` = n the n-th address from the right of X-Forwarded-For is the client
 * (each trusted proxy appends the address it saw); a missing, oversized or malformed header
 * falls back to the connection address.
 */
export function clientKey(hops: number, logger: Logger): (c: Context) => string {
  if (hops === 0) {
    return (c) => socketAddress(c) ?? UNKNOWN_CLIENT
  }
  return (c) => {
    const socket = socketAddress(c) ?? UNKNOWN_CLIENT
    const header = c.req.header('x-forwarded-for')
    if (header === undefined || header === '') {
      return socket
    }
    if (header.length > MAX_FORWARDED_LENGTH) {
      logger.debug('ignored an oversized X-Forwarded-For', {
        length: header.length,
        client: socket,
      })
      return socket
    }
    const entries = header.split(',')
    const chosen = (entries[Math.max(entries.length - hops, 0)] ?? '').trim()
    if (isIP(chosen) === 0) {
      logger.debug('ignored a malformed X-Forwarded-For', {
        value: header.slice(0, 200),
        client: socket,
      })
      return socket
    }
    return normalizeAddress(chosen)
  }
}
