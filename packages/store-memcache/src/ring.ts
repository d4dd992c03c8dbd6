// Placement of requesters on a pool of memcached servers: a ketama ring.
//
// The ring is libmemcached's weighted ketama (pylibmc's `ketama_weighted`, the classic
// libketama continuum): 160 points per server, from the MD5 of the server's name and a point
// number, and a key goes to the first point at or after the first 4 bytes of its own MD5. The
// name hashed is libmemcached's: `host:port`, or `host` alone on the default port 11211, with
// IPv6 hosts unbracketed. Placement therefore depends on the set of servers, not on the order
// they are listed in, and adding one server to N moves about 1/(N+1) of the keys. ring.test.ts
// checks it against placements captured from libmemcached itself
// (scripts/capture-ring-fixtures.py).

import { ConfigError } from '@slidelimit/core'
import HashRing from 'hashring'
import type { ServerAddress } from './connection-string.js'

/** Points per server are 4 per virtual node: libketama's 40 virtual nodes make 160. */
const KETAMA_VNODES = 40
/** libmemcached leaves this port out of the names it hashes. */
const DEFAULT_PORT = 11211

/** The name libmemcached hashes for a server. */
function hashedName({ host, port }: ServerAddress): string {
  return port === DEFAULT_PORT ? host : `${host}:${port}`
}

/** Which server of a pool holds a key: the same answer in every process that lists the same set. */
export class ServerRing {
  readonly #only: string | undefined
  readonly #ring: HashRing | undefined
  /** Server names (`host:port`, IPv6 in brackets) by the names hashed on the ring. */
  readonly #servers = new Map<string, string>()

  /** `servers`: each server once, with the name it is known by (`host:port`). */
  constructor(servers: readonly { address: ServerAddress; name: string }[]) {
    if (servers.length === 1) {
      this.#only = servers[0]?.name
      return
    }
    for (const { address, name } of servers) {
      const hashed = hashedName(address)
      const other = this.#servers.get(hashed)
      if (other !== undefined) {
        // libmemcached's names are ambiguous for IPv6: [::1]:2000 and [::1:2000]:11211 are
        // both `::1:2000`, and one of them would never be given a requester.
        throw new ConfigError(
          'servers',
          servers.map((server) => server.name).join(','),
          `servers that the ring can tell apart (${other} and ${name} are both "${hashed}")`,
        )
      }
      this.#servers.set(hashed, name)
    }
    // The names are given without a default port for hashring to strip (it cannot parse IPv6
    // hosts), and each server's 40 virtual nodes are given explicitly with the ring's default
    // set to another number: hashring computes the default as floor(1/N * 40 * N), which
    // floating point makes 39 for 7, 14, 28... servers, where libmemcached's ring has 40.
    this.#ring = new HashRing(
      Object.fromEntries(
        [...this.#servers.keys()].map((name) => [name, { vnodes: KETAMA_VNODES }]),
      ),
      'md5',
      { 'vnode count': KETAMA_VNODES + 1, 'max cache size': 1 },
    )
  }

  /** The name of the server that holds `key`. */
  serverOf(key: string): string {
    return this.#only ?? (this.#servers.get((this.#ring as HashRing).get(key)) as string)
  }
}
