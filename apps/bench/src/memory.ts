// Memory per tracked requester, in its own process (run with --expose-gc):
// node --expose-gc memory.js LIMITER COUNT [REQUESTS]. Prints one JSON line with heap and RSS
// bytes per requester after COUNT distinct clients made REQUESTS requests each (default 1), one
// second apart on a simulated clock (slidelimit; the others keep one counter per window).

import { createLimiter } from '@slidelimit/core'
import { MemoryStore } from '@slidelimit/store-memory'
import { MemoryStore as HonoMemoryStore } from 'hono-rate-limiter'
import { RateLimiterMemory } from 'rate-limiter-flexible'

const [name = 'slidelimit-memory', countText = '100000', requestsText = '1'] = process.argv.slice(2)
const count = Number(countText)
const requests = Number(requestsText)
let clock = Date.now()
const now = (): number => clock
const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) {
  throw new Error('run with --expose-gc')
}

function makeConsumer(): { consume: (key: string) => Promise<unknown>; keep: unknown } {
  switch (name) {
    case 'slidelimit-memory': {
      const store = new MemoryStore({ now })
      const limiter = createLimiter({ store, now, limit: 100, windowSeconds: 3600 })
      return { consume: (key) => limiter.consume(key), keep: [store, limiter] }
    }
    case 'hono-rate-limiter': {
      const store = new HonoMemoryStore()
      store.init({ windowMs: 3_600_000 } as Parameters<HonoMemoryStore['init']>[0])
      return { consume: (key) => Promise.resolve(store.increment(key)), keep: store }
    }
    case 'rlf-memory': {
      const limiter = new RateLimiterMemory({ points: 100, duration: 3600 })
      return { consume: (key) => limiter.consume(key), keep: limiter }
    }
    default:
      throw new Error(`unknown limiter ${name}`)
  }
}

const settle = async (): Promise<void> => {
  for (let i = 0; i < 3; i++) {
    gc()
    await new Promise((r) => setTimeout(r, 20))
  }
}

const { consume, keep } = makeConsumer()
const keys = Array.from({ length: count }, (_, i) => `198.51.${(i >> 8) & 255}.${i & 255}:${i}`)
await settle()
const heapBefore = process.memoryUsage().heapUsed
const rssBefore = process.memoryUsage().rss
for (let r = 0; r < requests; r++) {
  for (const key of keys) {
    await consume(key)
  }
  clock += 1000
}
await settle()
const heapAfter = process.memoryUsage().heapUsed
const rssAfter = process.memoryUsage().rss
process.stdout.write(
  `${JSON.stringify({
    limiter: name,
    requesters: count,
    requestsEach: requests,
    heapBytesPerRequester: Math.round((heapAfter - heapBefore) / count),
    rssBytesPerRequester: Math.round((rssAfter - rssBefore) / count),
    kept: keep !== undefined,
  })}\n`,
)
process.exit(0)
