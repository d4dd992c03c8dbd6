// Statistics over benchmark rounds and the Markdown table.

export interface Measurement {
  scenario: string
  server: string
  round: number
  rps: number
  p99Ms: number
  requests: number
  non2xx: number
  /** memcached operations per request, from memcached's own stats, where it applies. */
  memcachedOpsPerRequest?: number
}

export interface Row {
  scenario: string
  server: string
  medianRps: number
  medianP99Ms: number
  /** The server this one is paired with, round by round. */
  baseline: string
  /** Median over rounds of rps / the baseline's rps measured in the same round. */
  ratio: number
  /** Interquartile range of those ratios. */
  ratioQ1: number
  ratioQ3: number
  ratioMin: number
  ratioMax: number
  non2xxShare: number
  memcachedOpsPerRequest?: number
}

export interface MemoryRow {
  limiter: string
  requesters: number
  /** Requests each requester made, one second apart. */
  requestsEach?: number
  heapBytesPerRequester: number
  rssBytesPerRequester: number
}

export function median(values: readonly number[]): number {
  return quantile(values, 0.5)
}

/** The `q` quantile, interpolating between the closest ranks (numpy's default). */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) {
    return NaN
  }
  const sorted = [...values].sort((a, b) => a - b)
  const at = (sorted.length - 1) * q
  const below = Math.floor(at)
  const low = sorted[below] as number
  const high = sorted[Math.min(below + 1, sorted.length - 1)] as number
  return low + (high - low) * (at - below)
}

/**
 * Summarises rounds into one row per scenario and server; ratios are paired by round with the
 * server's baseline (bare Hono unless `baselineOf` says otherwise).
 */
export function summarise(
  measurements: readonly Measurement[],
  baselineOf: (server: string) => string = () => 'bare',
): Row[] {
  const rows: Row[] = []
  const groups = new Map<string, Measurement[]>()
  for (const m of measurements) {
    const id = `${m.scenario}\u0000${m.server}`
    groups.set(id, [...(groups.get(id) ?? []), m])
  }
  for (const group of groups.values()) {
    const first = group[0] as Measurement
    const baseline = baselineOf(first.server)
    const ratios = group.flatMap((m) => {
      const base = measurements.find(
        (b) => b.scenario === m.scenario && b.server === baseline && b.round === m.round,
      )
      return base === undefined || base.rps === 0 ? [] : [m.rps / base.rps]
    })
    const ops = group.flatMap((m) =>
      m.memcachedOpsPerRequest === undefined ? [] : [m.memcachedOpsPerRequest],
    )
    const requests = group.reduce((sum, m) => sum + m.requests, 0)
    rows.push({
      scenario: first.scenario,
      server: first.server,
      medianRps: median(group.map((m) => m.rps)),
      medianP99Ms: median(group.map((m) => m.p99Ms)),
      baseline,
      ratio: median(ratios),
      ratioQ1: quantile(ratios, 0.25),
      ratioQ3: quantile(ratios, 0.75),
      ratioMin: Math.min(...ratios),
      ratioMax: Math.max(...ratios),
      non2xxShare: requests === 0 ? 0 : group.reduce((sum, m) => sum + m.non2xx, 0) / requests,
      ...(ops.length > 0 && { memcachedOpsPerRequest: median(ops) }),
    })
  }
  return rows
}

const fixed = (value: number, digits: number): string =>
  Number.isFinite(value) ? value.toFixed(digits) : '-'

export function table(rows: readonly Row[]): string {
  const lines = [
    '| scenario | server | req/s (median) | p99 ms | baseline | x baseline (median) | IQR | min-max | non-2xx | memcached ops/req |',
    '| --- | --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |',
  ]
  for (const r of rows) {
    lines.push(
      `| ${r.scenario} | ${r.server} | ${Math.round(r.medianRps)} | ${fixed(r.medianP99Ms, 2)} | ${r.baseline} | ${fixed(r.ratio, 2)} | ${fixed(r.ratioQ1, 2)}-${fixed(r.ratioQ3, 2)} | ${fixed(r.ratioMin, 2)}-${fixed(r.ratioMax, 2)} | ${(r.non2xxShare * 100).toFixed(0)}% | ${r.memcachedOpsPerRequest === undefined ? '' : fixed(r.memcachedOpsPerRequest, 2)} |`,
    )
  }
  return lines.join('\n')
}

/** Where one server's busy time went under one scenario (profile.ts). */
export interface ProfileRow {
  scenario: string
  server: string
  slidelimit: number
  headers: number
  gc: number
  busyMs: number
}

const percent = (share: number): string => `${(share * 100).toFixed(1)}%`

/**
 * The throughput ratio to the baseline that the profiles imply, when the rest of the work per
 * request is the same in both: the baseline's time per request over the server's, that is
 * (1 - slidelimit - head - GC) / (1 - its head - its GC).
 */
export function impliedRatio(row: ProfileRow, base: ProfileRow): number {
  return (1 - row.slidelimit - row.headers - row.gc) / (1 - base.headers - base.gc)
}

/**
 * The profile shares, each slidelimit server beside its baseline's: the response head and the
 * garbage collector cost something in every app, so what slidelimit adds to them is the
 * difference.
 */
export function profileTable(
  rows: readonly ProfileRow[],
  baselineOf: (server: string) => string,
): string {
  const lines = [
    '| scenario | server | slidelimit code | response head | GC | baseline | its head | its GC | implied x baseline |',
    '| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |',
  ]
  for (const r of rows) {
    if (!r.server.startsWith('slidelimit')) {
      continue
    }
    const baseline = baselineOf(r.server)
    const base = rows.find((b) => b.scenario === r.scenario && b.server === baseline)
    lines.push(
      `| ${r.scenario} | ${r.server} | ${percent(r.slidelimit)} | ${percent(r.headers)} | ${percent(r.gc)} | ${baseline} | ${base === undefined ? '-' : percent(base.headers)} | ${base === undefined ? '-' : percent(base.gc)} | ${base === undefined ? '-' : impliedRatio(r, base).toFixed(2)} |`,
    )
  }
  return lines.join('\n')
}

export function memoryTable(rows: readonly MemoryRow[]): string {
  const lines = [
    '| memory limiter | requesters | requests each | heap bytes/requester | RSS bytes/requester |',
    '| --- | ---: | ---: | ---: | ---: |',
  ]
  for (const r of rows) {
    lines.push(
      `| ${r.limiter} | ${r.requesters} | ${r.requestsEach ?? 1} | ${r.heapBytesPerRequester} | ${r.rssBytesPerRequester} |`,
    )
  }
  return lines.join('\n')
}

/** memcached operations between two `stats` snapshots. A creating increment shows only in total_items. */
export function memcachedOps(
  before: Record<string, number>,
  after: Record<string, number>,
): number {
  const delta = (name: string): number => (after[name] ?? 0) - (before[name] ?? 0)
  const sets = delta('cmd_set')
  const counted =
    delta('cmd_get') +
    sets +
    delta('incr_hits') +
    delta('incr_misses') +
    delta('decr_hits') +
    delta('decr_misses') +
    delta('cmd_touch')
  // Items created by increments (not by sets) are operations the counters above miss.
  return counted + Math.max(0, delta('total_items') - sets)
}
