// Parsing of memcached connection strings: host:port[,host:port...], IPv6 hosts in brackets.
// Host names are written in lower case and IPv6 addresses in their canonical form (RFC 5952),
// so that every spelling of one server is one name: for the ring, and for duplicates.

import { isIP } from 'node:net'
import { ConfigError } from '@slidelimit/core'

export interface ServerAddress {
  host: string
  port: number
}

const HOSTNAME =
  /^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$/i

/**
 * Whether `name` is a host name (letters, digits, `-` and `_` in dot-separated labels of up to
 * 63 characters, 253 in all) and not digits and dots that are no IPv4 address (`127.1`, which
 * resolvers read as one). An IP address is not a host name: check it with `net.isIP`.
 */
export function isHostName(name: string): boolean {
  return HOSTNAME.test(name) && !/^[\d.]+$/.test(name)
}

/** Parses a connection string; throws a ConfigError naming `option` when it is malformed. */
export function parseConnectionString(value: unknown, option = 'servers'): ServerAddress[] {
  const expected = 'host:port[,host:port...] with ports 1-65535, IPv6 hosts in brackets'
  if (typeof value !== 'string' || value.trim() === '') {
    throw new ConfigError(option, value, expected)
  }
  return value.split(',').map((part) => {
    const match = /^(\[[^\]]+\]|[^:[\]]+):(\d{1,5})$/.exec(part.trim())
    const written = match?.[1] ?? ''
    const bracketed = written.startsWith('[')
    const host = bracketed ? written.slice(1, -1) : written
    const port = Number(match?.[2])
    // A name of digits and dots that is not an IPv4 address (`127.1`) is refused (isHostName):
    // it would be another name for the same server.
    const validHost = bracketed ? isIP(host) === 6 : isIP(host) === 4 || isHostName(host)
    if (match === null || !validHost || port < 1 || port > 65535) {
      throw new ConfigError(option, value, expected)
    }
    return { host: bracketed ? canonicalIPv6(host) : host.toLowerCase(), port }
  })
}

/**
 * An IPv6 address as RFC 5952 writes it (`0:0::1` is `::1`); an IPv4-mapped address is that IPv4
 * address (`::ffff:10.0.0.5` is `10.0.0.5`, one server either way); a zone id is kept as given.
 */
function canonicalIPv6(address: string): string {
  const zone = address.indexOf('%')
  const bare = zone === -1 ? address : address.slice(0, zone)
  let canonical: string
  try {
    canonical = new URL(`http://[${bare}]/`).hostname.slice(1, -1)
  } catch {
    return address.toLowerCase()
  }
  const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(canonical)
  if (mapped !== null && zone === -1) {
    const [high, low] = [parseInt(mapped[1] as string, 16), parseInt(mapped[2] as string, 16)]
    return [high >> 8, high & 255, low >> 8, low & 255].join('.')
  }
  return canonical + (zone === -1 ? '' : address.slice(zone))
}

/** Writes an address back as `host:port`, IPv6 hosts in brackets. */
export function formatServer({ host, port }: ServerAddress): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}
