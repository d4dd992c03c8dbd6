// The encoder and reply readers against bytes captured from a real memcached
// (protocol.fixtures.json, made by protocol.capture.ts).

import { readFileSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import type { Fixture } from './protocol.capture.js'
import {
  LAST_EXPIRY,
  NO_CREATE,
  Opcode,
  RELATIVE_EXPIRY_LIMIT,
  Status,
  counterOutcome,
  encodeRequest,
  expiryField,
  parseCounterText,
  readPacket,
  readPackets,
  requestBytes,
  slotDigits,
  writeRequest,
  writeSlotRequest,
} from './protocol.js'

const fixtures = JSON.parse(
  readFileSync(new URL('./protocol.fixtures.json', import.meta.url), 'utf8'),
) as Fixture[]

function fixture(name: string): { fixture: Fixture; replies: ReturnType<typeof readPackets> } {
  const found = fixtures.find((f) => f.name.startsWith(name))
  if (found === undefined) {
    throw new Error(`no fixture ${name}`)
  }
  return { fixture: found, replies: readPackets(Buffer.from(found.received, 'hex')) }
}

describe('the binary protocol against bytes from a real memcached', () => {
  it('encodes every request of every fixture byte for byte', () => {
    expect(fixtures.length).toBeGreaterThanOrEqual(6)
    for (const { requests, sent } of fixtures) {
      const encoded = Buffer.concat(
        requests.map(({ opcode, key, opaque, counter }) =>
          encodeRequest(opcode, key, opaque, counter),
        ),
      )
      expect(encoded.toString('hex')).toBe(sent)
      // And the requests frame back into what was encoded.
      const framed = readPackets(encoded).packets
      expect(framed.map((p) => [p.opcode, p.key.toString('latin1'), p.opaque])).toEqual(
        requests.map((r) => [r.opcode, r.key, r.opaque]),
      )
    }
  })

  it('reads a decision: new values, the hit of a quiet get with its key, the closing no-op', () => {
    const { replies } = fixture('a decision')
    const [first, second, hit, end] = replies.packets
    expect(replies.packets).toHaveLength(4)
    expect(counterOutcome(first?.status ?? -1, first?.value ?? Buffer.alloc(0))).toEqual({
      kind: 'value',
      value: 1,
    })
    expect(counterOutcome(second?.status ?? -1, second?.value ?? Buffer.alloc(0))).toEqual({
      kind: 'value',
      value: 1,
    })
    expect(hit?.opcode).toBe(Opcode.getkq)
    expect(hit?.key.toString('latin1')).toBe('fx:a:1000')
    expect(parseCounterText(hit?.value ?? Buffer.alloc(0))).toBe(1)
    expect(end?.opcode).toBe(Opcode.noop)
    expect(replies.packets.every((p) => p.opaque === 7)).toBe(true)
  })

  it('reads a rollback, and a rollback of a missing counter as nothing to take back', () => {
    const { replies } = fixture('the same increment again')
    const outcomes = replies.packets.slice(0, 3).map((p) => counterOutcome(p.status, p.value))
    expect(outcomes).toEqual([
      { kind: 'value', value: 2 },
      { kind: 'value', value: 1 },
      { kind: 'missing' },
    ])
    // Opaques above 2^31 come back as they were sent.
    expect(replies.packets.every((p) => p.opaque === 2 ** 31 + 9)).toBe(true)
  })

  it('reads a counter holding text as not a number, by increment and by get', () => {
    const { replies } = fixture('an increment and a quiet get of a counter holding text')
    const [increment, get] = replies.packets
    expect(counterOutcome(increment?.status ?? -1, increment?.value ?? Buffer.alloc(0))).toEqual({
      kind: 'not-a-number',
    })
    expect(get?.value.toString('latin1')).toBe('hello')
    expect(parseCounterText(get?.value ?? Buffer.alloc(0))).toBeUndefined()
    expect(replies.packets.every((p) => p.opaque === 0xffffffff)).toBe(true)
  })

  it('reads NOT_STORED as a lost create race, and out of memory as a server error', () => {
    const race = fixture('an increment that lost the race').replies.packets[0]
    expect(race?.status).toBe(Status.notStored)
    expect(counterOutcome(race?.status ?? -1, race?.value ?? Buffer.alloc(0))).toEqual({
      kind: 'lost-create-race',
    })
    const full = fixture('an increment creating a counter in a full memcached').replies.packets[0]
    expect(counterOutcome(full?.status ?? -1, full?.value ?? Buffer.alloc(0))).toEqual({
      kind: 'server-error',
      status: Status.outOfMemory,
      message: 'Out of memory allocating new item',
    })
  })

  it('sends a time to live over 30 days as an absolute Unix time', () => {
    const { fixture: long, replies } = fixture('an increment whose time to live is over 30 days')
    const expiry = long.requests[0]?.counter?.expiry ?? 0
    expect(expiry).toBe(Date.UTC(2026, 10, 28, 12, 0, 0) / 1000 + 40 * 86_400)
    expect(
      counterOutcome(
        replies.packets[0]?.status ?? -1,
        replies.packets[0]?.value ?? Buffer.alloc(0),
      ),
    ).toEqual({
      kind: 'value',
      value: 5,
    })
    // The quiet delete succeeded silently: the no-op is the only other answer.
    expect(replies.packets.map((p) => p.opcode)).toEqual([Opcode.increment, Opcode.noop])
  })

  it('chooses relative expiry up to 30 days and absolute beyond, never 0', () => {
    const now = 1_800_000_000_500
    expect(expiryField(0, now)).toBe(1)
    expect(expiryField(59.2, now)).toBe(60)
    expect(expiryField(RELATIVE_EXPIRY_LIMIT, now)).toBe(RELATIVE_EXPIRY_LIMIT)
    expect(expiryField(RELATIVE_EXPIRY_LIMIT + 1, now)).toBe(
      1_800_000_000 + RELATIVE_EXPIRY_LIMIT + 1,
    )
    expect(NO_CREATE).toBe(0xffffffff)
    // A window of a century would not fit the 32-bit field: the counter lives until 2106.
    expect(expiryField(100 * 365 * 86_400, now)).toBe(LAST_EXPIRY)
    expect(LAST_EXPIRY).toBe(0xfffffffe)
  })

  it('writes a slot request byte for byte as the request with the key spelled out', () => {
    const base = 'sl:AbC-_09xyz:'
    const slots = [0, 7, 9, 10, 99, -1, -10, 1_764_000_000, -29_400_001, 2 ** 40, -(2 ** 40)]
    slots.push(Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER)
    // Not slots the limiter makes, but spelled as String() spells them, never a hang.
    slots.push(2 ** 60, -(2 ** 60), 1e21, -1e21, 0.5, Infinity, -Infinity, NaN)
    for (const slot of slots) {
      for (const counter of [undefined, { amount: 1, initial: 1, expiry: 3667 }]) {
        const key = base + String(slot)
        const expected = Buffer.alloc(requestBytes(key.length, counter !== undefined) + 3, 0xee)
        const actual = Buffer.alloc(expected.length, 0xee)
        const end = writeRequest(expected, 1, Opcode.increment, key, 0xdeadbeef, counter)
        const bytes = Buffer.from(base, 'latin1')
        expect(
          writeSlotRequest(actual, 1, Opcode.increment, bytes, slot, 0xdeadbeef, counter),
        ).toBe(end)
        expect(actual.toString('hex')).toBe(expected.toString('hex'))
        expect(slotDigits(slot)).toBe(String(slot).length)
      }
    }
  })

  it('parses counters as memcached stores them: digits, trailing spaces of a decrement', () => {
    expect(parseCounterText(Buffer.from('42'))).toBe(42)
    expect(parseCounterText(Buffer.from('9 '))).toBe(9)
    expect(parseCounterText(Buffer.from('nope'))).toBeUndefined()
    expect(parseCounterText(Buffer.from(''))).toBeUndefined()
  })

  it('frames nothing from half a packet', () => {
    const { fixture: decision } = fixture('a decision')
    const bytes = Buffer.from(decision.received, 'hex')
    expect(readPacket(bytes.subarray(0, 23))).toBeUndefined()
    expect(readPacket(bytes.subarray(0, 31))).toBeUndefined()
    expect(readPackets(bytes.subarray(0, 40)).packets).toHaveLength(1)
  })
})
