// One update's conversation with memcached: the increments (creating missing counters with
// their time to live), a quiet get per read, and a no-op whose answer ends the batch.
//
// - An increment that loses the race to create its counter (NOT_STORED) counted nothing; it is
//   sent again, at most CREATE_ATTEMPTS times in all. An increment that was answered is never
//   repeated.
// - A counter holding something that is not a number is deleted, and the call fails with a
//   StoreKeyError: its requester's problem, not the server's.
// - A call that fails when its batch ends (a server error, a corrupt counter, a create race lost
//   every time) takes back what its increments counted: a failed call counts nothing, as far as
//   memcached still answers.

import { StoreError, StoreKeyError } from '@slidelimit/core'
import type { SlotIncrement } from '@slidelimit/core'
import type { Connection, Request } from './connection.js'
import type { MemcacheEvent } from './store-options.js'
import type { MemjsReply } from './memjs-adapter.js'
import {
  HEADER_BYTES,
  NO_CREATE,
  Opcode,
  Status,
  counterOutcome,
  counterReplyValue,
  encodeBatch,
  parseCounterText,
  requestBytes,
  slotDigits,
  writeRequest,
  writeSlotRequest,
} from './protocol.js'
import type { CounterExtras, CounterOutcome } from './protocol.js'

/** No slots to read. */
const NO_SLOTS: number[] = []

/** The outcome of every increment answered with a value (the value is read apart). */
const COUNTED: CounterOutcome = { kind: 'value', value: 0 }

/** Attempts of an increment that keeps losing the race to create its counter. */
const CREATE_ATTEMPTS = 3

/** What a batch needs of its store. */
export interface BatchContext {
  readonly name: string
  nextId: () => number
  emit: (event: MemcacheEvent) => void
}

/** Where a batch's answer goes. */
export interface Outcome {
  values: number[]
  resolve: (values: number[]) => void
  reject: (error: StoreError) => void
}

/**
 * One update's requests and their replies: the increments, then a quiet get per read, then a
 * no-op. Increments that lose a create race are sent again in a batch of their own.
 */
export class CounterBatch implements Request {
  readonly #store: BatchContext
  readonly #connection: Connection
  readonly #key: string
  readonly #base: string
  /** `#base` as ASCII bytes. */
  readonly #baseBytes: Uint8Array
  readonly #increments: readonly SlotIncrement[]
  readonly #reads: readonly number[]
  readonly #expiry: number
  readonly #outcome: Outcome
  #attempt = 0
  // Made only when needed: most batches are sent once and answered with a value for each.
  /**
   * Indexes (in #increments) of the increments sent in the current attempt, in order; null
   * for all of them (the first attempt).
   */
  #sent: readonly number[] | null = null
  #answered = 0
  #again: number[] | undefined
  #corrupt: string[] | undefined
  /**
   * The increments memcached applied (to take back if the call fails): indexes below 31 as
   * bits, the others listed.
   */
  #countedBits = 0
  #countedMore: number[] | undefined
  #failure: StoreError | undefined
  /** Read slots by memcached key, for the quiet gets' replies (which carry their key). */
  #readIndex: Map<number, number> | undefined
  /** Pairs of value indexes (from, to) of counters read more than once. */
  #copies: number[] | undefined

  constructor(
    store: BatchContext,
    connection: Connection,
    key: string,
    base: string,
    baseBytes: Uint8Array,
    increments: readonly SlotIncrement[],
    reads: readonly number[],
    expiry: number,
    outcome: Outcome,
  ) {
    this.#store = store
    this.#connection = connection
    this.#key = key
    this.#base = base
    this.#baseBytes = baseBytes
    this.#increments = increments
    this.#reads = reads
    this.#expiry = expiry
    this.#outcome = outcome
  }

  /**
   * Sends the increments at `indexes` (null: all of them, and the reads: the first attempt) in
   * one batch.
   */
  send(indexes: readonly number[] | null): void {
    this.#attempt++
    this.#sent = indexes
    this.#answered = 0
    this.#again = undefined
    const base = this.#baseBytes
    const increments = this.#increments
    const count = indexes === null ? increments.length : indexes.length
    // The slots to read: the first attempt's reads (each counter once); on a resend, those of
    // the increments sent again (their first read went out before them).
    let reads: number[] = NO_SLOTS
    if (this.#attempt === 1 && this.#reads.length > 0) {
      const readIndex = new Map<number, number>()
      reads = []
      for (let i = 0; i < this.#reads.length; i++) {
        const slot = this.#reads[i] as number
        const at = increments.length + i
        const first = readIndex.get(slot)
        if (first === undefined) {
          readIndex.set(slot, at)
          reads.push(slot)
        } else {
          // The same counter read twice: one get, its value in both places.
          ;(this.#copies ??= []).push(first, at)
        }
      }
      this.#readIndex = readIndex
    } else if (this.#readIndex !== undefined && indexes !== null) {
      reads = []
      for (const index of indexes) {
        const slot = (increments[index] as SlotIncrement).slot
        if (this.#readIndex.has(slot)) {
          reads.push(slot)
        }
      }
    }
    // Written straight into the batch, keys spelled from the base and the slot (no key strings,
    // no request objects): increments, then the reads, then the closing no-op.
    let bytes = HEADER_BYTES
    for (let n = 0; n < count; n++) {
      const { slot } = increments[indexes === null ? n : (indexes[n] as number)] as SlotIncrement
      bytes += requestBytes(base.length + slotDigits(slot), true)
    }
    for (const slot of reads) {
      bytes += requestBytes(base.length + slotDigits(slot), false)
    }
    const id = this.#store.nextId()
    const batch = Buffer.allocUnsafe(bytes)
    const extras: CounterExtras = { amount: 0, initial: 0, expiry: 0 }
    let at = 0
    for (let n = 0; n < count; n++) {
      const { slot, amount } = increments[
        indexes === null ? n : (indexes[n] as number)
      ] as SlotIncrement
      extras.amount = Math.abs(amount)
      extras.initial = Math.max(amount, 0)
      // A decrement never creates its counter: a missing one has nothing to take back.
      extras.expiry = amount >= 0 ? this.#expiry : NO_CREATE
      const opcode = amount >= 0 ? Opcode.increment : Opcode.decrement
      at = writeSlotRequest(batch, at, opcode, base, slot, id, extras)
    }
    for (const slot of reads) {
      at = writeSlotRequest(batch, at, Opcode.getkq, base, slot, id)
    }
    writeRequest(batch, at, Opcode.noop, '', id)
    this.#connection.send(id, batch, this)
  }

  onReply(reply: MemjsReply): boolean {
    const { opcode, status } = reply.header
    if (opcode === Opcode.noop) {
      this.#finish()
      return true
    }
    if (opcode === Opcode.increment || opcode === Opcode.decrement) {
      const sent = this.#sent
      const at = this.#answered++
      const index = sent === null ? (at < this.#increments.length ? at : undefined) : sent[at]
      if (index === undefined) {
        this.#failure ??= this.#error('memcached answered more counter operations than were sent')
        return false
      }
      // The common answer, a new value, read without an outcome object.
      const counted = status === Status.ok ? counterReplyValue(reply.val) : undefined
      const outcome: CounterOutcome =
        counted === undefined ? counterOutcome(status, reply.val) : COUNTED
      switch (outcome.kind) {
        case 'value':
          this.#outcome.values[index] = counted as number
          if (index < 31) {
            this.#countedBits |= 1 << index
          } else {
            ;(this.#countedMore ??= []).push(index)
          }
          break
        case 'missing':
          this.#outcome.values[index] = 0
          break
        case 'lost-create-race':
          ;(this.#again ??= []).push(index)
          break
        case 'not-a-number':
          ;(this.#corrupt ??= []).push(this.#counterOf(index))
          break
        case 'server-error':
          this.#failure ??= this.#error(
            `${this.#connection.server} failed on counter ${this.#counterOf(index)} (status ${outcome.status}: ${outcome.message})`,
          )
      }
      return false
    }
    if (opcode === Opcode.getkq && status === Status.ok) {
      const counter = reply.key.toString('latin1')
      // The key is the base and the slot as String() spells it.
      const base = this.#base
      const at =
        counter.length > base.length && counter.startsWith(base)
          ? this.#readIndex?.get(Number(counter.slice(base.length)))
          : undefined
      const value = parseCounterText(reply.val)
      if (at === undefined) {
        this.#failure ??= this.#error(`memcached answered a read of ${counter}, never asked`)
      } else if (value === undefined) {
        ;(this.#corrupt ??= []).push(counter)
      } else {
        this.#outcome.values[at] = value
      }
      return false
    }
    this.#failure ??= this.#error(
      `${this.#connection.server} answered opcode ${opcode} with status ${status}`,
    )
    return false
  }

  /** The memcached key of the increment at `index`. */
  #counterOf(index: number): string {
    return this.#base + String((this.#increments[index] as SlotIncrement).slot)
  }

  onFail(error: StoreError): void {
    this.#outcome.reject(error)
  }

  /**
   * The batch is answered: resolve; or send the increments that lost a create race again; or
   * fail, taking back what this call counted (a failed call counts nothing, as far as memcached
   * still answers) and deleting the counters that held something not a number.
   */
  #finish(): void {
    const sent = this.#sent === null ? this.#increments.length : this.#sent.length
    if (this.#answered !== sent && this.#failure === undefined) {
      this.#failure = this.#error('memcached answered fewer counter operations than were sent')
    }
    const server = this.#connection.server
    if (this.#failure !== undefined) {
      this.#takeBack()
      this.#outcome.reject(this.#failure)
    } else if (this.#corrupt !== undefined) {
      for (const counter of this.#corrupt) {
        this.#store.emit({ type: 'corrupt-counter', server, counter, key: this.#key })
      }
      this.#takeBack()
      this.#outcome.reject(
        new StoreKeyError(
          this.#store.name,
          this.#key,
          `counter ${this.#corrupt.join(', ')} on ${server} held something that is not a number; deleted`,
        ),
      )
    } else if (this.#again !== undefined) {
      const resent = this.#attempt < CREATE_ATTEMPTS
      for (const index of this.#again) {
        this.#store.emit({
          type: 'create-race',
          server,
          counter: this.#base + String((this.#increments[index] as SlotIncrement).slot),
          resent,
        })
      }
      if (resent) {
        this.send(this.#again)
        return
      }
      this.#takeBack()
      this.#outcome.reject(
        new StoreKeyError(
          this.#store.name,
          this.#key,
          `an increment of ${this.#base} lost the race to create its counter ${CREATE_ATTEMPTS} times`,
        ),
      )
    } else {
      const { values } = this.#outcome
      const copies = this.#copies
      if (copies !== undefined) {
        for (let i = 0; i < copies.length; i += 2) {
          values[copies[i + 1] as number] = values[copies[i] as number] as number
        }
      }
      this.#outcome.resolve(values)
    }
  }

  /**
   * Deletes the corrupt counters (the next increment recreates them) and takes back what the
   * increments memcached applied in this call counted; nothing waits for the answer.
   */
  #takeBack(): void {
    const corrupt = this.#corrupt ?? []
    const counted: number[] = []
    for (let index = 0; index < Math.min(this.#increments.length, 31); index++) {
      if ((this.#countedBits & (1 << index)) !== 0) {
        counted.push(index)
      }
    }
    counted.push(...(this.#countedMore ?? []))
    const takeBack = counted
      .map((index) => this.#increments[index] as SlotIncrement)
      .filter(({ amount }) => amount > 0)
      .map(({ slot, amount }) => ({ counter: this.#base + String(slot), amount }))
      .filter(({ counter }) => !corrupt.includes(counter))
    if (corrupt.length === 0 && takeBack.length === 0) {
      return
    }
    const id = this.#store.nextId()
    const batch = encodeBatch(id, [
      ...corrupt.map((counter) => ({ opcode: Opcode.deleteq, key: counter })),
      ...takeBack.map(({ counter, amount }) => ({
        opcode: Opcode.decrement,
        key: counter,
        counter: { amount, initial: 0, expiry: NO_CREATE },
      })),
    ])
    this.#connection.send(id, batch, {
      onReply: (reply) => reply.header.opcode === Opcode.noop,
      onFail: () => undefined, // the connection reports its own failures
    })
  }

  #error(message: string): StoreError {
    return new StoreError(this.#store.name, message)
  }
}
