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
    const validHost = bracketed ? isIP(host) === 6 : isIP(host) === 4 || HOSTNAME.test(host)
    if (match === null || !validHost || port < 1 || port > 65535) {
      throw new ConfigError(option, value, expected)
    }
    return { host: bracketed ? canonicalIPv6(host) : host.toLowerCase(), port }
  })
}

/** An IPv6 address as RFC 5952 writes it (`0:0::1` is `::1`); a zone id is kept as given. */
function canonicalIPv6(address: string): string {
  const zone = address.indexOf('%')
  const bare = zone === -1 ? address : address.slice(0, zone)
  try {
    return (
      new URL(`http://[${bare}]/`).hostname.slice(1, -1) + (zone === -1 ? '' : address.slice(zone))
    )
  } catch {
    return address.toLowerCase()
  }
}

/** Writes an address back as `host:port`, IPv6 hosts in brackets. */
export function formatServer({ host, port }: ServerAddress): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`
}
