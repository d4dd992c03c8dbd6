// Where a requester's counters live: the memcached key base every counter of the requester
// starts with (the prefix and a hash of the requester key, so that any key is a legal memcached
// key and no client string reaches memcached), and the server the ring places that base on.

import { hash } from 'node:crypto'
import type { Connection } from './connection.js'
import type { ServerRing } from './ring.js'

/** Requesters whose placement is remembered. */
const REMEMBERED = 50_000

/** Where a requester's counters live: their memcached key base, and its server. */
export interface Placement {
  base: string
  /** `base` as ASCII bytes, for encoding. */
  bytes: Uint8Array
  connection: Connection
  /** The store that made it: a cell's placement is used by that store only. */
  owner: object
}

/** Placements of the most recent requesters (the oldest remembered is dropped first). */
export class Placements {
  readonly #remembered = new Map<string, Placement>()

  constructor(
    readonly prefix: string,
    readonly ring: ServerRing,
    readonly byServer: ReadonlyMap<string, Connection>,
    /** The store the placements are for (see Placement.owner). */
    readonly owner: object,
  ) {}

  /** The placement of requester key `key`. */
  of(key: string): Placement {
    const remembered = this.#remembered
    let placement = remembered.get(key)
    if (placement === undefined) {
      const base = `${this.prefix}${hash('sha1', key, 'base64url')}:`
      placement = {
        base,
        bytes: Buffer.from(base, 'latin1'),
        connection: this.byServer.get(this.ring.serverOf(base)) as Connection,
        owner: this.owner,
      }
      if (remembered.size >= REMEMBERED) {
        for (const oldest of remembered.keys()) {
          remembered.delete(oldest)
          break
        }
      }
      remembered.set(key, placement)
    }
    return placement
  }
}
