// The memcached binary protocol, as far as this store speaks it: request encoding, reply
// framing, and what a reply means for a counter. Pure functions over buffers, tested against
// bytes captured from a real memcached (protocol.fixtures.json, `pnpm capture-fixtures`).
//
// Reference: https://github.com/memcached/memcached/wiki/BinaryProtocolRevamped

export const REQUEST_MAGIC = 0x80
export const RESPONSE_MAGIC = 0x81

/** The opcodes this store sends. */
export const Opcode = {
  get: 0x00,
  delete: 0x04,
  increment: 0x05,
  decrement: 0x06,
  noop: 0x0a,
  getkq: 0x0d,
  stat: 0x10,
  deleteq: 0x14,
} as const

/** The reply statuses this store tells apart. */
export const Status = {
  ok: 0x00,
  keyNotFound: 0x01,
  notStored: 0x05,
  nonNumeric: 0x06,
  outOfMemory: 0x82,
} as const

/** Bytes in every request and reply header. */
export const HEADER_BYTES = 24
/** Extras of an increment or decrement: amount (8), initial value (8), expiry (4). */
export const COUNTER_EXTRAS_BYTES = 20
/** memcached reads an expiry above this many seconds (30 days) as an absolute Unix time. */
export const RELATIVE_EXPIRY_LIMIT = 2_592_000
/** The expiry of a counter operation that must not create a missing counter. */
export const NO_CREATE = 0xffffffff
/** The latest absolute expiry that can be sent (the next value is {@link NO_CREATE}). */
export const LAST_EXPIRY = NO_CREATE - 1
/** The longest key memcached accepts, in bytes. */
export const MAX_KEY_BYTES = 250

/**
 * The expiry field for a time to live: relative seconds up to 30 days, and beyond that the
 * absolute Unix time, which is how memcached reads larger values (a relative TTL above 30 days
 * would be taken as a time in 1970: already expired).
 */
export function expiryField(ttlSeconds: number, nowMs: number): number {
  const ttl = Math.max(1, Math.ceil(ttlSeconds))
  // The field has 32 bits, and its largest value means "do not create" to an increment: a
  // counter that would outlive 2106 lives until then.
  return ttl <= RELATIVE_EXPIRY_LIMIT ? ttl : Math.min(Math.floor(nowMs / 1000) + ttl, LAST_EXPIRY)
}

/** A counter operation's extras: add `amount`, or create at `initial` living until `expiry`. */
export interface CounterExtras {
  amount: number
  initial: number
  /** From {@link expiryField}, or {@link NO_CREATE}. */
  expiry: number
}

/** Bytes of one request with an ASCII key of `keyBytes` bytes and no value. */
export function requestBytes(keyBytes: number, counter: boolean): number {
  return HEADER_BYTES + (counter ? COUNTER_EXTRAS_BYTES : 0) + keyBytes
}

/**
 * Writes one request at `offset` (no value; for counter operations the extras); returns the
 * offset after it. Keys are ASCII (the store hashes requester ids into them).
 */
export function writeRequest(
  buf: Buffer,
  offset: number,
  opcode: number,
  key: string,
  opaque: number,
  counter?: CounterExtras,
): number {
  const at = writeHead(buf, offset, opcode, key.length, opaque, counter)
  const keyBytes = key.length
  if (keyBytes <= 64) {
    // Short keys (all of this store's) byte by byte: cheaper than a call into Buffer#write.
    for (let i = 0; i < keyBytes; i++) {
      buf[at + i] = key.charCodeAt(i)
    }
  } else {
    buf.write(key, at, 'latin1')
  }
  return at + keyBytes
}

/** Characters of `String(slot)`: its decimal digits and sign for a safe integer. */
export function slotDigits(slot: number): number {
  if (!Number.isSafeInteger(slot)) {
    return String(slot).length
  }
  let n = Math.abs(slot)
  let digits = slot < 0 ? 2 : 1
  while (n >= 10) {
    n = Math.floor(n / 10)
    digits++
  }
  return digits
}

/**
 * {@link writeRequest} for the key made of `base` (its ASCII bytes) and `String(slot)`, without
 * making that string (a counter operation's key is a requester's base and a slot).
 */
export function writeSlotRequest(
  buf: Buffer,
  offset: number,
  opcode: number,
  base: Uint8Array,
  slot: number,
  opaque: number,
  counter?: CounterExtras,
): number {
  const digits = slotDigits(slot)
  let at = writeHead(buf, offset, opcode, base.length + digits, opaque, counter)
  for (let i = 0; i < base.length; i++) {
    buf[at + i] = base[i] as number
  }
  at += base.length
  if (!Number.isSafeInteger(slot)) {
    // Not a slot the limiter makes: spelled as String() spells it, as every other key is.
    const text = String(slot)
    for (let i = 0; i < text.length; i++) {
      buf[at + i] = text.charCodeAt(i)
    }
    return at + digits
  }
  let n = Math.abs(slot)
  for (let end = at + digits - 1; end >= at; end--) {
    buf[end] = 48 + (n % 10)
    n = Math.floor(n / 10)
  }
  if (slot < 0) {
    buf[at] = 45 // '-'
  }
  return at + digits
}

/** Writes a request's header and extras at `offset`; returns where its key goes. */
function writeHead(
  buf: Buffer,
  offset: number,
  opcode: number,
  keyBytes: number,
  opaque: number,
  counter: CounterExtras | undefined,
): number {
  const extras = counter === undefined ? 0 : COUNTER_EXTRAS_BYTES
  buf[offset] = REQUEST_MAGIC
  buf[offset + 1] = opcode
  buf.writeUInt16BE(keyBytes, offset + 2)
  buf[offset + 4] = extras
  buf[offset + 5] = 0 // data type
  buf.writeUInt16BE(0, offset + 6) // vbucket
  buf.writeUInt32BE(extras + keyBytes, offset + 8)
  buf.writeUInt32BE(opaque, offset + 12)
  buf.writeUInt32BE(0, offset + 16) // cas
  buf.writeUInt32BE(0, offset + 20)
  let at = offset + HEADER_BYTES
  if (counter !== undefined) {
    buf.writeUInt32BE(Math.floor(counter.amount / 2 ** 32), at)
    buf.writeUInt32BE(counter.amount % 2 ** 32, at + 4)
    buf.writeUInt32BE(Math.floor(counter.initial / 2 ** 32), at + 8)
    buf.writeUInt32BE(counter.initial % 2 ** 32, at + 12)
    buf.writeUInt32BE(counter.expiry, at + 16)
    at += COUNTER_EXTRAS_BYTES
  }
  return at
}

/** One request in a buffer of its own. */
export function encodeRequest(
  opcode: number,
  key: string,
  opaque: number,
  counter?: CounterExtras,
): Buffer {
  const buf = Buffer.allocUnsafe(requestBytes(key.length, counter !== undefined))
  writeRequest(buf, 0, opcode, key, opaque, counter)
  return buf
}

/** One request of a batch: no value; for counter operations, their extras. */
export interface BatchRequest {
  opcode: number
  key: string
  counter?: CounterExtras
}

/**
 * The requests under one opaque, then a no-op whose answer ends the batch (memcached answers
 * the requests of a connection in order, and quiet ones only when they have something to say).
 */
export function encodeBatch(opaque: number, requests: readonly BatchRequest[]): Buffer {
  let bytes = HEADER_BYTES // the closing no-op
  for (const { key, counter } of requests) {
    bytes += requestBytes(key.length, counter !== undefined)
  }
  const buf = Buffer.allocUnsafe(bytes)
  let at = 0
  for (const { opcode, key, counter } of requests) {
    at = writeRequest(buf, at, opcode, key, opaque, counter)
  }
  writeRequest(buf, at, Opcode.noop, '', opaque)
  return buf
}

/** One framed packet (request or reply). */
export interface Packet {
  magic: number
  opcode: number
  /** The status of a reply (the vbucket field of a request). */
  status: number
  opaque: number
  extras: Buffer
  key: Buffer
  value: Buffer
  /** Bytes the packet takes, header included. */
  bytes: number
}

/** The packet starting at `offset`, or undefined when `buf` does not hold all of it yet. */
export function readPacket(buf: Buffer, offset = 0): Packet | undefined {
  if (buf.length - offset < HEADER_BYTES) {
    return undefined
  }
  const keyBytes = buf.readUInt16BE(offset + 2)
  const extrasBytes = buf[offset + 4] as number
  const bodyBytes = buf.readUInt32BE(offset + 8)
  const bytes = HEADER_BYTES + bodyBytes
  if (buf.length - offset < bytes) {
    return undefined
  }
  const body = offset + HEADER_BYTES
  return {
    magic: buf[offset] as number,
    opcode: buf[offset + 1] as number,
    status: buf.readUInt16BE(offset + 6),
    opaque: buf.readUInt32BE(offset + 12),
    extras: buf.subarray(body, body + extrasBytes),
    key: buf.subarray(body + extrasBytes, body + extrasBytes + keyBytes),
    value: buf.subarray(body + extrasBytes + keyBytes, offset + bytes),
    bytes,
  }
}

/** Every whole packet in `buf`, and how many bytes they take. */
export function readPackets(buf: Buffer): { packets: Packet[]; bytes: number } {
  const packets: Packet[] = []
  let at = 0
  for (let packet = readPacket(buf, at); packet !== undefined; packet = readPacket(buf, at)) {
    packets.push(packet)
    at += packet.bytes
  }
  return { packets, bytes: at }
}

/**
 * The value of a successful increment or decrement reply (8 bytes, big-endian), or undefined
 * when the value is not 8 bytes long.
 */
export function counterReplyValue(value: Buffer): number | undefined {
  return value.length === 8 ? value.readUInt32BE(0) * 2 ** 32 + value.readUInt32BE(4) : undefined
}

/**
 * A counter as memcached stores it and a get returns it: ASCII digits, space-padded after a
 * decrement. Undefined for anything else (text that something else wrote).
 */
export function parseCounterText(value: Buffer): number | undefined {
  const text = value.toString('latin1').trim()
  return /^\d{1,15}$/.test(text) ? Number(text) : undefined
}

/** What the reply to an increment or decrement means for its counter. */
export type CounterOutcome =
  | { kind: 'value'; value: number }
  /** Created by another client at the same moment: nothing was counted; safe to repeat. */
  | { kind: 'lost-create-race' }
  /** The counter holds something that is not a number. */
  | { kind: 'not-a-number' }
  /** A decrement of a missing counter (sent with NO_CREATE): nothing to take back. */
  | { kind: 'missing' }
  /** Anything else: the server's problem (out of memory, a server error). */
  | { kind: 'server-error'; status: number; message: string }

/** Reads the reply to an increment or decrement. */
export function counterOutcome(status: number, value: Buffer): CounterOutcome {
  if (status === Status.ok) {
    const counted = counterReplyValue(value)
    return counted === undefined
      ? { kind: 'server-error', status, message: `a ${value.length}-byte counter value` }
      : { kind: 'value', value: counted }
  }
  if (status === Status.notStored) {
    return { kind: 'lost-create-race' }
  }
  if (status === Status.nonNumeric) {
    return { kind: 'not-a-number' }
  }
  if (status === Status.keyNotFound) {
    return { kind: 'missing' }
  }
  return { kind: 'server-error', status, message: value.toString('latin1').slice(0, 100) }
}
