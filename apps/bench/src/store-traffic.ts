// Store operations per decision, counted on a simulated clock: what one process's limiter asks
// of a shared store (each increment and each read is one memcached operation) for clients that
// keep asking at a steady pace, hot or slow, over hours of clock. Deterministic: the same run
// gives the same figures on any machine.
//
// The limiter runs on the memory store behind a counting wrapper without `updateSync`, so that
// it takes the path it takes with memcached (the same plans, reads and caching).

import { createLimiter } from '@slidelimit/core'
import type { SlotIncrement, Store } from '@slidelimit/core'
import { MemoryStore } from '@slidelimit/store-memory'

export interface TrafficOptions {
  /** Clients, each asking at its own pace. */
  clients: number
  /** The shortest and longest time between two requests of a client, in milliseconds. */
  intervalMs: readonly [number, number]
  /** Hours of clock simulated; the first hour (clients new, windows filling) is not reported. */
  hours: number
  /** The limit per hour (high: every request admitted, the costliest steady state). */
  limit?: number
  seed?: number
}

export interface TrafficRow {
  clients: number
  intervalMs: readonly [number, number]
  /** Decisions after the first hour. */
  decisions: number
  /** Store operations (increments and reads) per decision after the first hour. */
  opsPerDecision: number
  /** The most operations one decision sent after the first hour, and how often that many. */
  maxOps: number
  /** Decisions after the first hour that sent more than their two increments. */
  readShare: number
  /** A new client's first decision: its operations. */
  firstOps: number
}

/** A small deterministic generator (an LCG), so that runs repeat exactly. */
function random(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0
    return state / 2 ** 32
  }
}

export async function storeTraffic({
  clients,
  intervalMs: [shortest, longest],
  hours,
  limit = 1_000_000_000,
  seed = 1,
}: TrafficOptions): Promise<TrafficRow> {
  let clock = Date.UTC(2026, 0, 1)
  const now = (): number => clock
  const inner = new MemoryStore({ now, sweepIntervalMs: 0 })
  let ops = 0
  const store: Store = {
    name: 'counting',
    update: (key: string, increments: readonly SlotIncrement[], reads: readonly number[], ttl) => {
      ops += increments.length + reads.length
      return inner.update(key, increments, reads, ttl)
    },
    ping: () => inner.ping(),
    close: () => inner.close(),
  }
  const limiter = createLimiter({ store, now, limit, windowSeconds: 3600 })
  const next = random(seed)
  const due = Array.from({ length: clients }, () => clock + next() * longest)
  const start = clock
  const end = start + hours * 3_600_000
  const counted = { decisions: 0, ops: 0, max: 0, withReads: 0 }
  let firstOps = -1
  for (;;) {
    let client = 0
    for (let i = 1; i < clients; i++) {
      if ((due[i] as number) < (due[client] as number)) {
        client = i
      }
    }
    clock = due[client] as number
    if (clock >= end) {
      break
    }
    const before = ops
    await limiter.decide(`client-${client}`)
    const spent = ops - before
    if (firstOps < 0) {
      firstOps = spent
    }
    if (clock - start >= 3_600_000) {
      counted.decisions++
      counted.ops += spent
      counted.max = Math.max(counted.max, spent)
      if (spent > 2) {
        counted.withReads++
      }
    }
    due[client] = clock + shortest + next() * (longest - shortest)
  }
  await inner.close()
  return {
    clients,
    intervalMs: [shortest, longest],
    decisions: counted.decisions,
    opsPerDecision: counted.decisions === 0 ? 0 : counted.ops / counted.decisions,
    maxOps: counted.max,
    readShare: counted.decisions === 0 ? 0 : counted.withReads / counted.decisions,
    firstOps,
  }
}

export function trafficTable(rows: readonly TrafficRow[]): string {
  const lines = [
    '| clients | one request every (ms) | decisions counted | store ops/decision | decisions that read | most ops in one decision | first decision ops |',
    '| ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  ]
  for (const r of rows) {
    lines.push(
      `| ${r.clients} | ${r.intervalMs[0]}-${r.intervalMs[1]} | ${r.decisions} | ${r.opsPerDecision.toFixed(2)} | ${(r.readShare * 100).toFixed(1)}% | ${r.maxOps} | ${r.firstOps} |`,
    )
  }
  return lines.join('\n')
}
