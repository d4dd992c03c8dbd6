// Removing a requester's counters: a queue of chunks of quiet deletes per server, so that a
// decision on the same socket never waits behind more than one chunk.

import { StoreError } from '@slidelimit/core'
import type { Connection } from './connection.js'
import { Opcode, Status, encodeBatch } from './protocol.js'

/**
 * Quiet deletes per request of a remove: memcached answers each delete of a missing counter, so
 * a chunk of them takes about 2 ms on loopback, well within a deadline, and is all a decision
 * on the same socket waits behind (a 3600 s window of 1 s buckets is 15 chunks).
 */
export const REMOVE_CHUNK = 256

/** What removal needs of its store. */
export interface RemovalContext {
  readonly name: string
  nextId(): number
  closed(): boolean
}

/** The removes of one store, one at a time per server. */
export class Removal {
  /** The last remove queued on each server: the next one starts when it has settled. */
  readonly #removing = new Map<Connection, Promise<void>>()

  constructor(readonly store: RemovalContext) {}

  /**
   * Removes the counters `slots` under key base `base` from `connection`'s server, in requests
   * of at most REMOVE_CHUNK quiet deletes (memcached answers a quiet delete only when it fails; a
   * counter that is missing is gone already), each closed by a no-op and with its own deadline,
   * the next sent once the previous one is answered. One remove at a time per server (the
   * others wait their turn). A chunk that fails fails the remove with a StoreError; the chunks
   * after it are not sent, and the counters of those before it are gone.
   */
  remove(connection: Connection, base: string, slots: readonly number[]): Promise<void> {
    const previous = this.#removing.get(connection)
    // The first remove on a server starts at once (its first chunk leaves with this turn's
    // requests, as an update's batch does); the others when the one before them has settled.
    const run =
      previous === undefined
        ? this.#inChunks(connection, base, slots)
        : previous.then(() => this.#inChunks(connection, base, slots))
    const settled = run.then(
      () => undefined,
      () => undefined,
    )
    this.#removing.set(connection, settled)
    void settled.then(() => {
      if (this.#removing.get(connection) === settled) {
        this.#removing.delete(connection)
      }
    })
    return run
  }

  /** The chunks of a remove, one after the other; stops at the first that fails. */
  async #inChunks(connection: Connection, base: string, slots: readonly number[]): Promise<void> {
    for (let from = 0; from < slots.length; from += REMOVE_CHUNK) {
      if (this.store.closed()) {
        throw new StoreError(this.store.name, 'the store is closed')
      }
      await this.#chunk(connection, base, slots.slice(from, from + REMOVE_CHUNK))
    }
  }

  /** One request of quiet deletes and a closing no-op; resolves when the no-op is answered. */
  #chunk(connection: Connection, base: string, slots: readonly number[]): Promise<void> {
    const id = this.store.nextId()
    const batch = encodeBatch(
      id,
      slots.map((slot) => ({ opcode: Opcode.deleteq, key: base + String(slot) })),
    )
    return new Promise<void>((resolve, reject) => {
      let failure: StoreError | undefined
      connection.send(id, batch, {
        onReply: ({ header: { opcode, status } }) => {
          if (opcode === Opcode.noop) {
            if (failure === undefined) {
              resolve()
            } else {
              reject(failure)
            }
            return true
          }
          if (opcode !== Opcode.deleteq || status !== Status.keyNotFound) {
            failure ??= new StoreError(
              this.store.name,
              `${connection.server} failed to remove a counter of ${base} (opcode ${opcode}, status ${status})`,
            )
          }
          return false
        },
        onFail: reject,
      })
    })
  }
}
