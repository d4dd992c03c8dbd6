// The store contract: batched atomic counters with a time to live.
//
// A counter is named by a key (one requester of one limiter) and a slot (a whole number the
// limiter chooses: fine buckets are counted in slots >= 0, coarse groups of buckets in slots
// < 0). A store does one round trip per `update` call, so a limiter decision costs one round
// trip however many counters it touches.

/** Adds `amount` (which may be negative) to one counter. */
export interface SlotIncrement {
  readonly slot: number
  readonly amount: number
}

/**
 * Room a caller of {@link Store.update} and {@link Store.updateSync} keeps for one key (the
 * limiter keeps one a requester) and passes with every call for that key, to that one store
 * only: the store may keep there what finds the key's counters without a lookup (a store that
 * wraps others hands it to one of them only), and must check it before use, since the key's
 * counters may have been removed or expired since. Optional everywhere: a store that ignores it
 * and a caller that never passes one are both correct.
 */
export interface StoreCell {
  held: unknown
}

/** Atomic counters shared by every limiter that uses the store. */
export interface Store {
  /** A short name for logs and health reports, e.g. `memory` or `memcache`. */
  readonly name: string

  /**
   * In one round trip: applies every increment to its counter of `key`, then reads the `reads`
   * counters of `key`.
   *
   * - A missing counter is created at 0 before the increment, and lives `ttlSeconds` from its
   *   creation (later increments do not extend it). An expired counter is missing.
   * - Counters never go below 0: a decrement stops at 0.
   * - Each increment is atomic: N parallel increments of 1 add exactly N.
   * - A missing counter reads as 0.
   *
   * Resolves with the new value of each incremented counter, in order, followed by the value of
   * each read counter, in order. Rejects with a `StoreError` when the store cannot answer, or a
   * `StoreKeyError` when it answers but the data of `key` is unusable (the store removes it).
   * Callers treat anything else a store throws or rejects with as a `StoreError` too.
   */
  update(
    key: string,
    increments: readonly SlotIncrement[],
    reads: readonly number[],
    ttlSeconds: number,
    cell?: StoreCell,
  ): Promise<number[]>

  /**
   * Optional: {@link update} answered at once, for stores that need no I/O (the memory store).
   * The limiter then decides without a promise. Throws a `StoreError` when the store fails.
   */
  updateSync?(
    key: string,
    increments: readonly SlotIncrement[],
    reads: readonly number[],
    ttlSeconds: number,
    cell?: StoreCell,
  ): number[]

  /**
   * Optional: removes the counters `slots` of `key` (a store may remove every counter of `key`)
   * in one round trip, so that every limiter sharing the store sees the key as new. Resolves once
   * they are gone, a missing counter being gone already; rejects with a `StoreError` when the
   * store cannot answer. With {@link shards}, the counters are on the key's shard. A limiter's
   * `resetKey` needs it, and rejects with a `StoreError` of code
   * `ERR_SLIDELIMIT_STORE_UNSUPPORTED` on a store without it (optional, so that stores written
   * before it keep working for everything else).
   */
  remove?(key: string, slots: readonly number[]): Promise<void>

  /**
   * Optional: a number that changes whenever the counters the store answers from for `key`
   * change as a whole: a failover to another store and back, or one call for the key answered
   * elsewhere because its data was unusable. Limiters drop the counter values they cached for
   * the key when it changes. A store without it always answers from the same counters.
   */
  epochOf?(key: string): number

  /**
   * Optional, for stores spread over several servers (shards): the names of the shards, each
   * once. A store without it is one shard. `FailoverStore` keeps one breaker per shard, so that a
   * failing server sends only its own keys to the fallback.
   */
  readonly shards?: readonly string[]

  /**
   * Optional, with {@link shards}: the shard that holds every counter of `key`. The same key is
   * always on the same shard (the store may move keys only when its list of shards changes).
   */
  shardOf?(key: string): string

  /**
   * Checks that the store answers (only `shard`'s server, when given one of {@link shards});
   * rejects with a `StoreError` when it does not.
   */
  ping(shard?: string): Promise<void>

  /** Releases connections and timers. The store is not used after this. */
  close(): Promise<void>
}
