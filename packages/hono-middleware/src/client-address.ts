// Who is the client? The default requester key.
//
// On @hono/node-server the Node request is `c.env.incoming`; its socket's remote address is the
// peer that opened the connection, which a client cannot choose. Forwarding headers
// (X-Forwarded-For, or Forwarded from RFC 7239) are read only when the proxies in front are
// trusted, by hop count or by address: otherwise any client could pick its own key.
//
// IPv6 clients usually hold a whole prefix (a /56 or /64 is handed to each home or server), so
// they are keyed by their /56 network by default; an IPv4-mapped IPv6 address is its IPv4 one.
// Addresses are parsed by ipaddr.js.

import { ConfigError, RateLimitError } from '@slidelimit/core'
import type { Context } from 'hono'
import type { ConnInfo } from 'hono/conninfo'
import ipaddr from 'ipaddr.js'

interface NodeBindings {
  incoming?: { socket?: { remoteAddress?: string } }
  /** Some adapters nest the Node bindings under `server`. */
  server?: NodeBindings
}

/**
 * Thrown for a request whose client address cannot be found (a runtime other than Node without
 * `getConnInfo`): one shared key for all of them would limit the whole world as one client.
 */
export class ClientAddressError extends RateLimitError {
  constructor() {
    super(
      'ERR_SLIDELIMIT_NO_CLIENT_ADDRESS',
      "No client address for the default rate-limit key on this runtime. Pass getConnInfo (from 'hono/bun', 'hono/deno', 'hono/cloudflare-workers' or '@hono/node-server/conninfo') or a keyGenerator to rateLimiter().",
    )
  }
}

/**
 * Most characters of a forwarding header read, from the right: what lies further left is never
 * looked at (a client's own text cannot matter there).
 */
export const MAX_FORWARDED_LENGTH = 8192
/** Most entries of a forwarding header read, from the right. */
export const MAX_FORWARDED_ENTRIES = 64

/** Where a logger goes: `debug` receives why a forwarding header was not used. */
export interface DebugLogger {
  debug: (message: string, fields: Record<string, unknown>) => void
}

/** How to find the client address. */
export interface ClientAddressOptions {
  /**
   * Which proxies in front of the app to trust:
   * - `false` / `0` (default): none, only the connection's address counts;
   * - a number n: the n nearest proxies, whatever their address (the client is the n-th
   *   address from the right of the forwarding header, the connection counted first);
   * - a list of addresses and CIDR ranges (`['10.0.0.0/8', '192.168.1.5']`, or one string
   *   separated by commas): the client is the nearest address not in the list.
   */
  trustProxy?: boolean | number | string | readonly string[]
  /** Which forwarding header trusted proxies set. Defaults to `'x-forwarded-for'`. */
  proxyHeader?: 'x-forwarded-for' | 'forwarded'
  /**
   * The prefix length IPv6 clients are grouped by, 1-128; `128` or `false` keys each address
   * apart. Defaults to `56`.
   */
  ipv6Subnet?: number | false
  /** Receives, at debug level, why a forwarding header was ignored. Defaults to none. */
  logger?: DebugLogger
  /**
   * The runtime's connection info, Hono's `getConnInfo` helper of the runtime the app runs on:
   * `import { getConnInfo } from 'hono/bun'` (or `'hono/deno'`, `'hono/cloudflare-workers'`,
   * `'@hono/node-server/conninfo'`...). Its `remote.address` is the connection's address. Where
   * neither it nor @hono/node-server's bindings give an address, the request fails with a
   * ClientAddressError: it is never given a key shared with others. Defaults to reading
   * @hono/node-server's bindings (`c.env.incoming`).
   */
  getConnInfo?: (c: Context) => ConnInfo
}

type Trust =
  | { kind: 'none' }
  | { kind: 'hops'; hops: number }
  | { kind: 'list'; ranges: [ipaddr.IPv4 | ipaddr.IPv6, number][] }

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

/** An IPv6 address ending in a dotted quad (`::1.2.3.4`, `::ffff:192.0.2.1`). */
const EMBEDDED_IPV4 = /^(.*:)(\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})$/

/**
 * Parses one address strictly (dotted-quad IPv4 or IPv6), so that every spelling of an address
 * gives one value: an IPv6 zone is dropped (`fe80::1%eth0` is `fe80::1`), a dotted-quad tail is
 * read as the two groups it stands for (`::1.2.3.4` is `::0:1.2.3.4`, `::102:304`), and an
 * IPv4-mapped IPv6 address is its IPv4 address.
 */
export function parseAddress(text: string): ipaddr.IPv4 | ipaddr.IPv6 | undefined {
  if (ipaddr.IPv4.isValidFourPartDecimal(text)) {
    return ipaddr.IPv4.parse(text)
  }
  if (!text.includes(':')) {
    return undefined
  }
  let v6 = withoutZone(text)
  const embedded = EMBEDDED_IPV4.exec(v6)
  if (embedded !== null) {
    // ipaddr.js reads `::1.2.3.4` as `::ffff:1.2.3.4`: spell the quad as hex groups first.
    const quad = embedded[2] as string
    if (!ipaddr.IPv4.isValidFourPartDecimal(quad)) {
      return undefined
    }
    const [a, b, c, d] = ipaddr.IPv4.parse(quad).octets as [number, number, number, number]
    v6 = `${embedded[1] as string}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`
  }
  if (!ipaddr.IPv6.isValid(v6)) {
    return undefined
  }
  const parsed = ipaddr.IPv6.parse(v6)
  return parsed.isIPv4MappedAddress() ? parsed.toIPv4Address() : parsed
}

/** The address without its IPv6 zone (`fe80::1%eth0` is `fe80::1`). */
function withoutZone(text: string): string {
  const percent = text.indexOf('%')
  return percent < 0 ? text : text.slice(0, percent)
}

/** Why `true`, and ranges covering every address of a family, are refused. */
const TRUST_EVERYONE =
  'a number of proxy hops or a list of proxy addresses (true would trust any client)'

function parseTrust(trustProxy: ClientAddressOptions['trustProxy']): Trust {
  if (trustProxy === undefined || trustProxy === false || trustProxy === 0) {
    return { kind: 'none' }
  }
  if (trustProxy === true) {
    throw new ConfigError('trustProxy', trustProxy, TRUST_EVERYONE)
  }
  if (typeof trustProxy === 'number') {
    if (!Number.isSafeInteger(trustProxy) || trustProxy < 0 || trustProxy > 32) {
      throw new ConfigError('trustProxy', trustProxy, 'a number of proxy hops from 0 to 32')
    }
    return { kind: 'hops', hops: trustProxy }
  }
  const items =
    typeof trustProxy === 'string'
      ? trustProxy.split(',')
      : Array.isArray(trustProxy)
        ? (trustProxy as unknown[])
        : undefined
  if (items === undefined || items.length === 0) {
    throw new ConfigError('trustProxy', trustProxy, 'a number of hops or a list of addresses')
  }
  const ranges: [ipaddr.IPv4 | ipaddr.IPv6, number][] = []
  for (const item of items) {
    const text = typeof item === 'string' ? item.trim() : ''
    if (text.includes('/') && ipaddr.isValidCIDR(text)) {
      const [address, bits] = ipaddr.parseCIDR(text)
      ranges.push(
        address.kind() === 'ipv6' && (address as ipaddr.IPv6).isIPv4MappedAddress() && bits >= 96
          ? [(address as ipaddr.IPv6).toIPv4Address(), bits - 96]
          : [address, bits],
      )
    } else {
      const address = parseAddress(text)
      if (address === undefined) {
        throw new ConfigError(
          'trustProxy',
          item,
          'proxy addresses or CIDR ranges such as 10.0.0.0/8 or 2001:db8::/32',
        )
      }
      ranges.push([address, address.kind() === 'ipv4' ? 32 : 128])
    }
  }
  // 0.0.0.0/0, ::/0, ::ffff:0:0/96 (every IPv4 address, mapped), or ranges that together cover
  // a whole family (0.0.0.0/1,128.0.0.0/1): trusts any client of that family, as true.
  if (coversFamily(ranges, 'ipv4') || coversFamily(ranges, 'ipv6')) {
    throw new ConfigError('trustProxy', trustProxy, TRUST_EVERYONE)
  }
  return { kind: 'list', ranges }
}

/** The IPv4-mapped block `::ffff:0:0/96`, as an IPv6 interval: its addresses are read as IPv4. */
const MAPPED_START = 0xffffn << 32n
const MAPPED_END = MAPPED_START + (1n << 32n)

/**
 * Whether the union of the family's ranges is every address of the family. IPv4-mapped ranges
 * were already turned into the IPv4 ranges they map. IPv6 addresses in `::ffff:0:0/96` are never
 * IPv6 once parsed (they are their IPv4 address), so that block counts as covered for IPv6: a list
 * trusting every other IPv6 address trusts every IPv6 client.
 */
function coversFamily(
  ranges: readonly [ipaddr.IPv4 | ipaddr.IPv6, number][],
  family: 'ipv4' | 'ipv6',
): boolean {
  const width = family === 'ipv4' ? 32n : 128n
  const intervals: [bigint, bigint][] = family === 'ipv6' ? [[MAPPED_START, MAPPED_END]] : []
  for (const [address, bits] of ranges) {
    if (address.kind() !== family) {
      continue
    }
    let value = 0n
    for (const byte of address.toByteArray()) {
      value = (value << 8n) | BigInt(byte)
    }
    const size = 1n << (width - BigInt(bits))
    // The range's first address: host bits cleared (a CIDR may be written with them set).
    const start = value - (value % size)
    intervals.push([start, start + size])
  }
  intervals.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
  // Sweep from address 0: every interval must start at or before what is covered so far.
  let reach = 0n
  for (const [start, end] of intervals) {
    if (start > reach) {
      return false
    }
    if (end > reach) {
      reach = end
    }
  }
  return reach === 1n << width
}

function checkSubnet(ipv6Subnet: unknown): number {
  if (ipv6Subnet === false) {
    return 128
  }
  if (
    typeof ipv6Subnet !== 'number' ||
    !Number.isSafeInteger(ipv6Subnet) ||
    ipv6Subnet < 1 ||
    ipv6Subnet > 128
  ) {
    throw new ConfigError('ipv6Subnet', ipv6Subnet, 'a prefix length from 1 to 128, or false')
  }
  return ipv6Subnet
}

/** Longest entry of a forwarding header looked at (an RFC 7239 element with all its pairs). */
const MAX_ENTRY_LENGTH = 1024

/** The address text of one RFC 7239 forwarded-element, or undefined when it has none. */
function forwardedFor(element: string): string | undefined {
  // forwarded-element: pairs separated by ';', e.g. for=192.0.2.60;proto=http;by=203.0.113.43
  let value: string | undefined
  for (const pair of element.split(';')) {
    const trimmed = pair.trim()
    if (trimmed.slice(0, 4).toLowerCase() === 'for=') {
      value = trimmed.slice(4)
      break
    }
  }
  if (value === undefined) {
    return undefined
  }
  if (value.startsWith('"')) {
    if (!value.endsWith('"') || value.length < 2) {
      return undefined
    }
    value = value.slice(1, -1)
  }
  // for="[2001:db8::1]:4711" or for=192.0.2.43:47011
  if (value.startsWith('[')) {
    const end = value.indexOf(']')
    return end < 0 ? undefined : value.slice(1, end)
  }
  const colon = value.indexOf(':')
  return colon >= 0 && value.indexOf(':', colon + 1) < 0 ? value.slice(0, colon) : value
}

/**
 * Reads a forwarding header from the right, nearest entry first, only as far as needed:
 * `visit(text, index)` gets each entry's address text (undefined when the entry has none) and
 * its index from the right (0 is the entry the nearest proxy appended), and returns whether to
 * go on. What a client wrote to the left of where the reading stops is never looked at, so it
 * cannot change the choice nor fail it, however long or malformed.
 *
 * The reading also stops after {@link MAX_FORWARDED_ENTRIES} entries or
 * {@link MAX_FORWARDED_LENGTH} characters from the right (an entry crossing that bound, or
 * longer than 1,024 characters, is not read at all): a huge header costs no more than that.
 */
function fromRight(
  header: string,
  name: 'x-forwarded-for' | 'forwarded',
  visit: (text: string | undefined, index: number) => boolean,
): void {
  const floor = header.length - MAX_FORWARDED_LENGTH
  let end = header.length
  for (let index = 0; index < MAX_FORWARDED_ENTRIES; index++) {
    // Bounded: never searches further left than the floor.
    const comma = floor > 0 ? lastCommaAbove(header, end, floor) : header.lastIndexOf(',', end - 1)
    const start = comma + 1
    if ((floor > 0 && comma < 0) || end - start > MAX_ENTRY_LENGTH) {
      // This entry reaches past what is read: stop before it.
      return
    }
    const entry = header.slice(start, end).trim()
    const text = name === 'forwarded' ? forwardedFor(entry) : entry
    if (!visit(text === '' ? undefined : text, index) || comma < 0) {
      return
    }
    end = comma
  }
}

/** The last comma before `end` at or after `floor`, or -1. */
function lastCommaAbove(header: string, end: number, floor: number): number {
  for (let i = end - 1; i >= floor; i--) {
    if (header.charCodeAt(i) === 44) {
      return i
    }
  }
  return -1
}

/**
 * Makes the default key generator: the client address (trusted forwarding headers applied),
 * IPv6 grouped by prefix, IPv4-mapped IPv6 as IPv4. A missing, oversized, malformed or hostile
 * header never fails a request: the connection's address is used and the reason goes to
 * `logger.debug`.
 */
export function clientAddress({
  trustProxy,
  proxyHeader = 'x-forwarded-for',
  ipv6Subnet = 56,
  logger,
  getConnInfo,
}: ClientAddressOptions = {}): (c: Context) => string {
  const trust = parseTrust(trustProxy)
  const subnet = checkSubnet(ipv6Subnet)
  if (!(['x-forwarded-for', 'forwarded'] as unknown[]).includes(proxyHeader)) {
    throw new ConfigError('proxyHeader', proxyHeader, '"x-forwarded-for" or "forwarded"')
  }
  if (logger !== undefined && typeof (logger as Partial<DebugLogger>).debug !== 'function') {
    throw new ConfigError('logger', logger, 'an object with a debug(message, fields) method')
  }
  if (getConnInfo !== undefined && typeof getConnInfo !== 'function') {
    throw new ConfigError('getConnInfo', getConnInfo, "a function such as hono/bun's getConnInfo")
  }
  /** The connection's address as the runtime gives it. */
  const peerAddress =
    getConnInfo === undefined
      ? socketAddress
      : (c: Context): string | undefined => {
          const address = getConnInfo(c).remote.address
          return address === undefined || address === '' ? undefined : normalizeAddress(address)
        }

  /** The key of one address: IPv4 as is, IPv6 as its network. */
  const keyOf = (address: ipaddr.IPv4 | ipaddr.IPv6): string => {
    if (address.kind() === 'ipv4' || subnet === 128) {
      return address.toString()
    }
    const network = ipaddr.IPv6.networkAddressFromCIDR(`${address.toString()}/${subnet}`)
    return `${network.toString()}/${subnet}`
  }

  /** The key of the connection's address. */
  const socketKey = (c: Context): string => {
    const raw = peerAddress(c)
    if (raw === undefined) {
      throw new ClientAddressError()
    }
    // Node gives IPv4 peers as dotted quads: no parsing needed on the common path.
    if (!raw.includes(':')) {
      return raw
    }
    const parsed = parseAddress(withoutZone(raw))
    return parsed === undefined ? raw : keyOf(parsed)
  }

  if (trust.kind === 'none') {
    return socketKey
  }

  const ignore = (c: Context, reason: string, header: string): string => {
    const key = socketKey(c)
    logger?.debug(`ignored ${proxyHeader}: ${reason}`, {
      header: proxyHeader,
      // The right end: what the proxies wrote.
      value: header.slice(-200),
      client: key,
    })
    return key
  }

  /**
   * Whether to read one more entry to the left after `address`, the `index`-th from the right:
   * with a hop count, until the hops-th entry (the leftmost, when there are fewer); with proxy
   * ranges, while the entry is a trusted proxy (the client is the nearest that is not).
   */
  const further: (address: ipaddr.IPv4 | ipaddr.IPv6, index: number) => boolean =
    trust.kind === 'hops'
      ? (_, index) => index < trust.hops - 1
      : (address) => trusted(trust.ranges, address)

  return (c) => {
    const header = c.req.header(proxyHeader)
    if (header === undefined || header.trim() === '') {
      return socketKey(c)
    }
    if (trust.kind === 'list') {
      const socket = peerAddress(c)
      const peer = socket === undefined ? undefined : parseAddress(withoutZone(socket))
      if (peer === undefined || !trusted(trust.ranges, peer)) {
        // The connection does not come from a trusted proxy: its header means nothing.
        return socketKey(c)
      }
    }
    let chosen: ipaddr.IPv4 | ipaddr.IPv6 | undefined
    let bad: number | undefined
    fromRight(header, proxyHeader, (text, index) => {
      const address = text === undefined ? undefined : parseAddress(text)
      if (address === undefined) {
        bad = index
        return false
      }
      chosen = address
      return further(address, index)
    })
    if (bad !== undefined) {
      // A trusted proxy wrote it (the client's text lies further left): say so, use the socket.
      return ignore(c, `entry ${bad + 1} from the right is not an IP address`, header)
    }
    if (chosen === undefined) {
      return ignore(c, 'no client address in it', header)
    }
    return keyOf(chosen)
  }
}

function trusted(
  ranges: [ipaddr.IPv4 | ipaddr.IPv6, number][],
  address: ipaddr.IPv4 | ipaddr.IPv6,
): boolean {
  for (const [range, bits] of ranges) {
    if (range.kind() === address.kind() && address.match(range, bits)) {
      return true
    }
  }
  return false
}
