// Captures protocol.fixtures.json from a real memcached: the bytes this package sends for each
// kind of request it makes, and the bytes memcached answers. protocol.test.ts checks the
// encoder and the reply readers against them. Rerun with `pnpm capture-fixtures` (it starts its
// own memcached processes); commit the result.

import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { NO_CREATE, Opcode, encodeRequest, expiryField, readPackets } from './protocol.js'
import type { CounterExtras } from './protocol.js'
import { startMemcached } from './testing/memcached.js'
import type { Memcached } from './testing/memcached.js'

/** One request of a fixture, as the encoder is called for it. */
export interface FixtureRequest {
  opcode: number
  key: string
  opaque: number
  counter?: CounterExtras
}

export interface Fixture {
  /** What the exchange shows. */
  name: string
  requests: FixtureRequest[]
  /** The requests' bytes, hex. */
  sent: string
  /** memcached's reply bytes, hex. */
  received: string
  /** memcached's version. */
  memcached: string
}

const OUT = fileURLToPath(new URL('./protocol.fixtures.json', import.meta.url))

function encode(requests: FixtureRequest[]): Buffer {
  return Buffer.concat(
    requests.map(({ opcode, key, opaque, counter }) => encodeRequest(opcode, key, opaque, counter)),
  )
}

const NOW_MS = Date.UTC(2026, 10, 28, 12, 0, 0)
const add = (amount: number, ttl = 60): CounterExtras => ({
  amount,
  initial: amount,
  expiry: expiryField(ttl, NOW_MS),
})
const takeBack = (amount: number): CounterExtras => ({ amount, initial: 0, expiry: NO_CREATE })

async function main(): Promise<void> {
  const memcached = await startMemcached()
  const version = (await memcached.command('version')).trim().replace(/^VERSION /, '')
  const fixtures: Fixture[] = []
  const capture = async (name: string, requests: FixtureRequest[], packets: number) => {
    const sent = encode(requests)
    const received = await memcached.exchange(sent, packets)
    fixtures.push({
      name,
      requests,
      sent: sent.toString('hex'),
      received: received.toString('hex'),
      memcached: version,
    })
  }
  try {
    await memcached.command('set fx:text 0 60 5\r\nhello')
    await capture(
      'a decision: two increments creating their counters, two quiet gets (one hit), a no-op',
      [
        { opcode: Opcode.increment, key: 'fx:a:1000', opaque: 7, counter: add(1) },
        { opcode: Opcode.increment, key: 'fx:a:-17', opaque: 7, counter: add(1) },
        { opcode: Opcode.getkq, key: 'fx:a:1000', opaque: 7 },
        { opcode: Opcode.getkq, key: 'fx:a:999', opaque: 7 },
        { opcode: Opcode.noop, key: '', opaque: 7 },
      ],
      4,
    )
    await capture(
      'the same increment again, then a rollback, then a rollback of a missing counter',
      [
        { opcode: Opcode.increment, key: 'fx:a:1000', opaque: 2 ** 31 + 9, counter: add(1) },
        { opcode: Opcode.decrement, key: 'fx:a:1000', opaque: 2 ** 31 + 9, counter: takeBack(1) },
        { opcode: Opcode.decrement, key: 'fx:a:gone', opaque: 2 ** 31 + 9, counter: takeBack(1) },
        { opcode: Opcode.noop, key: '', opaque: 2 ** 31 + 9 },
      ],
      4,
    )
    await capture(
      'an increment and a quiet get of a counter holding text',
      [
        { opcode: Opcode.increment, key: 'fx:text', opaque: 0xffffffff, counter: add(1) },
        { opcode: Opcode.getkq, key: 'fx:text', opaque: 0xffffffff },
        { opcode: Opcode.noop, key: '', opaque: 0xffffffff },
      ],
      3,
    )
    await capture(
      'an increment whose time to live is over 30 days (absolute expiry), and a quiet delete',
      [
        { opcode: Opcode.increment, key: 'fx:long', opaque: 1, counter: add(5, 40 * 86_400) },
        { opcode: Opcode.deleteq, key: 'fx:text', opaque: 1 },
        { opcode: Opcode.noop, key: '', opaque: 1 },
      ],
      2,
    )
    fixtures.push(await captureCreateRace(memcached, version))
  } finally {
    await memcached.stop()
  }
  fixtures.push(await captureOutOfMemory(version))
  writeFileSync(OUT, `${JSON.stringify(fixtures, null, 2)}\n`)
  process.stdout.write(`wrote ${fixtures.length} fixtures to ${OUT}\n`)
}

/** Two connections create the same counters until memcached answers one NOT_STORED. */
async function captureCreateRace(memcached: Memcached, version: string): Promise<Fixture> {
  for (let round = 0; round < 100_000; round++) {
    const requests = [
      { opcode: Opcode.increment, key: `fx:race:${round}`, opaque: 3, counter: add(1) },
    ]
    const sent = encode(requests)
    const replies = await Promise.all([memcached.exchange(sent), memcached.exchange(sent)])
    for (const received of replies) {
      if (readPackets(received).packets[0]?.status === 0x05) {
        return {
          name: 'an increment that lost the race to create its counter (NOT_STORED)',
          requests,
          sent: sent.toString('hex'),
          received: received.toString('hex'),
          memcached: version,
        }
      }
    }
  }
  throw new Error('no create race in 100000 rounds')
}

/** A memcached started with -M and filled up answers a new counter out of memory. */
async function captureOutOfMemory(version: string): Promise<Fixture> {
  const full = await startMemcached({ megabytes: 2, args: ['-M', '-I', '512k'] })
  try {
    await full.fill()
    const requests = [
      {
        opcode: Opcode.increment,
        key: `fx:oom:${'x'.repeat(27)}:12345`,
        opaque: 4,
        counter: add(1),
      },
    ]
    const sent = encode(requests)
    const received = await full.exchange(sent)
    if (readPackets(received).packets[0]?.status !== 0x82) {
      throw new Error('memcached -M did not run out of memory')
    }
    return {
      name: 'an increment creating a counter in a full memcached started with -M',
      requests,
      sent: sent.toString('hex'),
      received: received.toString('hex'),
      memcached: version,
    }
  } finally {
    await full.stop()
  }
}

await main()
