// Placement of requesters on a pool of memcached servers: a ketama ring.
//
// The ring is libmemcached's weighted ketama (pylibmc's `ketama_weighted`, the classic
// libketama continuum): 160 points per server, from MD5 of `host:port-i` (`host-i` on the default
// port 11211), and a key goes to the first point at or after the first 4 bytes of its own MD5.
// Placement therefore depends on the set of servers, not on the order they are listed in, and
// adding one server to N moves about 1/(N+1) of the keys. ring.test.ts checks it against
// placements captured from libmemcached itself (scripts/capture-ring-fixtures.py).

import HashRing from 'hashring'

/** Points per server are 4 per virtual node: libketama's 40 virtual nodes make 160. */
const KETAMA_VNODES = 40
/** libmemcached leaves this port out of the names it hashes. */
const DEFAULT_PORT = 11211

/** Which server of a pool holds a key: the same answer in every process that lists the same set. */
export class ServerRing {
  readonly #only: string | undefined
  readonly #ring: HashRing | undefined

  /** `servers` are `host:port` names (IPv6 hosts in brackets), each at most once. */
  constructor(servers: readonly string[]) {
    if (servers.length === 1) {
      this.#only = servers[0]
      return
    }
    // Each server's 40 virtual nodes are given explicitly, and the ring's default is set to
    // another number: hashring computes the default as floor(1/N * 40 * N), which floating
    // point makes 39 for 7, 14, 28... servers, and libmemcached's ring has 40 for every N.
    this.#ring = new HashRing(
      Object.fromEntries(servers.map((server) => [server, { vnodes: KETAMA_VNODES }])),
      'md5',
      { 'vnode count': KETAMA_VNODES + 1, 'default port': DEFAULT_PORT, 'max cache size': 1 },
    )
  }

  /** The server that holds `key`. */
  serverOf(key: string): string {
    return this.#only ?? (this.#ring as HashRing).get(key)
  }
}
