// memcached memory per requester, for sizing `-m`: runs the hello app's policy (100 per hour,
// 1 s buckets) against a fresh memcached and reads memcached's own slab statistics.
//
//   pnpm --filter @slidelimit/bench sizing
//
// Prints, for requesters making 1, 10 and 100 requests in the window (spread over the hour on a
// simulated clock), the items each keeps in memcached and the bytes of slab chunks they use,
// and how many such requesters fit in 64 MB (the compose file's `-m 64`).

import { createLimiter } from '@slidelimit/core'
import { MemcacheStore } from '@slidelimit/store-memcache'
import { startMemcached } from '@slidelimit/store-memcache/testing'

const REQUESTERS = 2000
const MEGABYTE = 1024 * 1024

/** Bytes of slab chunks in use, from `stats slabs` (chunk size times used chunks, per class). */
async function chunkBytes(command: (line: string) => Promise<string>): Promise<number> {
  const reply = await command('stats slabs')
  const size = new Map<string, number>()
  const used = new Map<string, number>()
  for (const [, slab, stat, value] of reply.matchAll(
    /STAT (\d+):(chunk_size|used_chunks) (\d+)/g,
  )) {
    ;(stat === 'chunk_size' ? size : used).set(slab as string, Number(value))
  }
  let bytes = 0
  for (const [slab, chunks] of used) {
    bytes += chunks * (size.get(slab) ?? 0)
  }
  return bytes
}

const rows: string[] = []
for (const requests of [1, 10, 100]) {
  const memcached = await startMemcached()
  const store = new MemcacheStore({ servers: memcached.address, deadlineMs: 5000 })
  const start = Date.now()
  for (let i = 0; i < REQUESTERS; i += 100) {
    await Promise.all(
      Array.from({ length: 100 }, async (_, j) => {
        const id = `203.0.${(i + j) >> 8}.${(i + j) & 255}`
        let clock = start
        const limiter = createLimiter({ store, limit: 100, windowSeconds: 3600, now: () => clock })
        for (let r = 0; r < requests; r++) {
          clock = start + Math.floor((r * 3_600_000) / requests)
          await limiter.consume(id)
        }
      }),
    )
  }
  const stats = await memcached.stats()
  const items = stats.curr_items ?? 0
  const bytes = await chunkBytes(memcached.command)
  const perRequester = bytes / REQUESTERS
  rows.push(
    `| ${requests} | ${(items / REQUESTERS).toFixed(1)} | ${Math.round((stats.bytes ?? 0) / items)} | ${Math.round(perRequester)} | ${Math.floor((64 * MEGABYTE) / perRequester).toLocaleString('en-US')} |`,
  )
  await store.close()
  await memcached.stop()
}
process.stdout.write(
  `memcached memory per requester (limit 100 per 3600 s, 1 s buckets; ${REQUESTERS} requesters each)\n` +
    '| requests in the window | items | bytes per item | slab bytes per requester | requesters in 64 MB |\n' +
    '|---:|---:|---:|---:|---:|\n' +
    `${rows.join('\n')}\n`,
)
