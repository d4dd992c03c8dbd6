// pnpm bench: every server under every scenario in short interleaved rounds (the order reversed
// every other round), each paired with its baseline in the same round; then a sampled CPU
// profile of the slidelimit servers and their baselines under the same load (the share of the
// busy time in slidelimit's code and in the response head: a ratio taken in one process, which
// neighbours move far less than throughput); store operations per decision on a simulated
// clock; memory per requester. Prints Markdown tables and writes the results as JSON.
//
// The server runs on core 0; wrk and memcached on core 1 (memcached stands in for one on
// another machine: on the server's core, its work would be counted against the server).
//
//   node dist/run.js [--quick] [--out FILE]

import { spawn, spawnSync } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, tmpdir, totalmem } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startMemcached } from '@slidelimit/store-memcache/testing'
import type { Memcached } from '@slidelimit/store-memcache/testing'
import { HELLO_SERVERS, startHello } from './hello-server.js'
import type { HelloKind } from './hello-server.js'
import { hasCommand, load, loadTool } from './load.js'
import { MEMORY_LIMITERS } from './memory-limiters.js'
import { profileShares } from './profile.js'
import { packageVersions } from './versions.js'
import type { CpuProfile } from './profile.js'
import { memcachedOps, memoryTable, profileTable, summarise, table } from './report.js'
import type { Measurement, MemoryRow, ProfileRow } from './report.js'
import { storeTraffic, trafficTable } from './store-traffic.js'
import type { TrafficRow } from './store-traffic.js'
import { SERVERS, baselineOf, pathOf } from './servers.js'
import type { ServerKind } from './servers.js'

const quick = process.argv.includes('--quick')
const outIndex = process.argv.indexOf('--out')
const here = dirname(fileURLToPath(import.meta.url))
const outFile =
  outIndex > 0
    ? (process.argv[outIndex + 1] as string)
    : join(here, '..', 'results', quick ? 'latest-quick.json' : 'latest.json')

const settings = quick
  ? {
      seconds: 1,
      warmupSeconds: 1,
      rounds: 1,
      connections: 32,
      memoryRequesters: 20_000,
      profileSeconds: 1,
      trafficHours: 2,
    }
  : {
      seconds: 2,
      warmupSeconds: 2,
      rounds: 10,
      connections: 64,
      memoryRequesters: 100_000,
      profileSeconds: 4,
      trafficHours: 3,
    }

/** Servers profiled (the slidelimit ones and their baselines), in every scenario. */
const PROFILED: readonly ServerKind[] = [
  'bare',
  'noop',
  'noop-api',
  'slidelimit-memory',
  'slidelimit-memory-middleware',
  'slidelimit-memory-use-api',
  'slidelimit-memcache',
]

/** Clients of the store traffic table: how often each asks, in milliseconds. */
const TRAFFIC = [
  { clients: 1, intervalMs: [1, 1] },
  { clients: 20, intervalMs: [500, 800] },
  { clients: 20, intervalMs: [5_000, 8_000] },
  { clients: 20, intervalMs: [60_000, 90_000] },
] as const

const SCENARIOS = [
  { name: 'hot client', clients: 1, limit: 1_000_000_000 },
  { name: '10,000 clients', clients: 10_000, limit: 1_000_000_000 },
  { name: 'denied (limit 1)', clients: 1, limit: 1 },
] as const

const pin = hasCommand('taskset')
const SERVER_CPU = 0
const LOAD_CPU = 1

interface Running {
  kind: ServerKind | HelloKind
  url: string
  child: ChildProcess
  stop?: () => void
}

function startServer(
  kind: ServerKind,
  limit: number,
  memcached: string,
  nodeArgs: readonly string[] = [],
): Promise<Running> {
  const script = join(here, 'server.js')
  const [bin, args] = pin
    ? ['taskset', ['-c', String(SERVER_CPU), process.execPath, ...nodeArgs, script]]
    : [process.execPath, [...nodeArgs, script]]
  const child = spawn(bin, args, {
    env: {
      ...process.env,
      BENCH_SERVER: kind,
      BENCH_LIMIT: String(limit),
      BENCH_MEMCACHED: memcached,
      PORT: '0',
    },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  return new Promise((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString()
      const match = /listening (\d+)/.exec(out)
      if (match !== null) {
        resolve({ kind, url: `http://127.0.0.1:${match[1]}${pathOf(kind)}`, child })
      }
    })
    child.on('exit', (code) => {
      reject(new Error(`${kind} exited with ${code}`))
    })
  })
}

/** Waits for a child process to exit (at once when it has). */
function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null
    ? Promise.resolve()
    : new Promise((resolve) => {
        child.once('exit', () => {
          resolve()
        })
      })
}

/**
 * One server under a scenario's load with V8's sampling profiler on (a sample every 100 µs):
 * where its busy time goes. Its warm-up load is in the profile too (a second of it).
 */
async function profileServer(
  kind: ServerKind,
  scenario: (typeof SCENARIOS)[number],
  memcached: string,
): Promise<ProfileRow> {
  const dir = mkdtempSync(join(tmpdir(), 'slidelimit-profile-'))
  try {
    const server = await startServer(kind, scenario.limit, memcached, [
      '--cpu-prof',
      `--cpu-prof-dir=${dir}`,
      '--cpu-prof-interval=100',
    ])
    // The ready line has been read: keep draining stdout so the server never blocks on it.
    server.child.stdout?.resume()
    server.child.removeAllListeners('exit')
    for (const seconds of [1, settings.profileSeconds]) {
      await load({
        url: server.url,
        seconds,
        connections: settings.connections,
        clients: scenario.clients,
        ...(pin && { cpu: LOAD_CPU }),
      })
    }
    // server.js exits on SIGTERM, and Node writes the profile as it exits.
    server.child.kill('SIGTERM')
    await exited(server.child)
    const file = readdirSync(dir).find((name) => name.endsWith('.cpuprofile'))
    if (file === undefined) {
      throw new Error(`${kind} wrote no CPU profile`)
    }
    const shares = profileShares(JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile)
    return { scenario: scenario.name, server: kind, ...shares }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

async function measureMemory(
  limiter: string,
  requesters: number,
  requests: number,
): Promise<MemoryRow> {
  const script = join(here, 'memory.js')
  const output = await new Promise<string>((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--expose-gc', script, limiter, String(requesters), String(requests)],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    )
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.on('exit', (code) => {
      if (code === 0) {
        resolve(out)
      } else {
        reject(new Error(`memory ${limiter} exited with ${code}`))
      }
    })
  })
  return JSON.parse(output.trim()) as MemoryRow
}

async function main(): Promise<void> {
  const memcached: Memcached = await startMemcached()
  if (pin && memcached.process.pid !== undefined) {
    // Every thread of memcached on the load core, beside wrk.
    spawnSync('taskset', ['-a', '-p', '-c', String(LOAD_CPU), String(memcached.process.pid)], {
      stdio: 'ignore',
    })
  }
  const measurements: Measurement[] = []
  const profiles: ProfileRow[] = []
  process.stderr.write(
    `bench: ${loadTool}, ${settings.rounds} round(s) of ${settings.seconds} s, ${settings.connections} connections, ${pin ? 'pinned with taskset' : 'not pinned'}\n`,
  )
  // Progress: rounds measured so far, and the time left at the pace so far (the profiles take
  // about two minutes more, the store traffic and memory measurements about one).
  const total = SCENARIOS.length * settings.rounds * (SERVERS.length + HELLO_SERVERS.length)
  let done = 0
  const started = performance.now()
  try {
    for (const scenario of SCENARIOS) {
      const servers: Running[] = await Promise.all([
        ...SERVERS.map((kind) => startServer(kind, scenario.limit, memcached.address)),
        ...HELLO_SERVERS.map(async (kind) => ({
          kind,
          ...(await startHello(
            kind,
            scenario.limit,
            pin ? ['taskset', '-c', String(SERVER_CPU)] : [],
          )),
        })),
      ])
      try {
        for (const server of servers) {
          await load({
            url: server.url,
            seconds: settings.warmupSeconds,
            connections: settings.connections,
            clients: scenario.clients,
            ...(pin && { cpu: LOAD_CPU }),
          })
        }
        for (let round = 0; round < settings.rounds; round++) {
          // Every other round in reverse: a drift of the machine's speed during a round
          // favours neither end of the list.
          for (const server of round % 2 === 0 ? servers : [...servers].reverse()) {
            const before = server.kind.endsWith('memcache') ? await memcached.stats() : undefined
            const result = await load({
              url: server.url,
              seconds: settings.seconds,
              connections: settings.connections,
              clients: scenario.clients,
              ...(pin && { cpu: LOAD_CPU }),
            })
            const after = before === undefined ? undefined : await memcached.stats()
            measurements.push({
              scenario: scenario.name,
              server: server.kind,
              round,
              ...result,
              ...(before !== undefined &&
                after !== undefined &&
                result.requests > 0 && {
                  memcachedOpsPerRequest: memcachedOps(before, after) / result.requests,
                }),
            })
            done++
            const left = ((performance.now() - started) / done) * (total - done)
            process.stderr.write(
              `  [${done}/${total}, about ${Math.ceil(left / 60_000)} min left] ${scenario.name} / ${server.kind} round ${round + 1}: ${Math.round(result.rps)} req/s\n`,
            )
          }
        }
      } finally {
        for (const server of servers) {
          if (server.stop === undefined) {
            server.child.kill('SIGKILL')
          } else {
            server.stop()
          }
        }
      }
    }
    process.stderr.write('bench: CPU profiles\n')
    for (const scenario of SCENARIOS) {
      for (const kind of PROFILED) {
        const row = await profileServer(kind, scenario, memcached.address)
        profiles.push(row)
        process.stderr.write(
          `  ${scenario.name} / ${kind}: slidelimit ${(row.slidelimit * 100).toFixed(1)}%, head ${(row.headers * 100).toFixed(1)}%, GC ${(row.gc * 100).toFixed(1)}%\n`,
        )
      }
    }
  } finally {
    await memcached.stop()
  }

  const traffic: TrafficRow[] = []
  for (const { clients, intervalMs } of TRAFFIC) {
    traffic.push(await storeTraffic({ clients, intervalMs, hours: settings.trafficHours }))
  }

  const memory: MemoryRow[] = []
  for (const limiter of MEMORY_LIMITERS) {
    memory.push(await measureMemory(limiter, settings.memoryRequesters, 1))
  }
  // A requester that used its window: 100 requests in 100 different seconds.
  memory.push(await measureMemory('slidelimit-memory', settings.memoryRequesters / 10, 100))

  const rows = summarise(measurements, baselineOf)
  // The hello app's default configuration (access log on) against the same app with it off.
  const helloRows = summarise(
    measurements.filter((m) => m.server.startsWith('hello-')),
    () => 'hello-nolog',
  ).filter((row) => row.server === 'hello-default')
  const helloTable = table(helloRows)
  const report = [
    table(rows),
    helloTable,
    profileTable(profiles, baselineOf),
    trafficTable(traffic),
    memoryTable(memory),
  ].join('\n\n')
  process.stdout.write(`${report}\n`)
  const result = {
    date: new Date().toISOString(),
    quick,
    settings,
    loadTool,
    pinned: pin,
    machine: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model ?? 'unknown',
      memoryBytes: totalmem(),
      platform: process.platform,
      arch: process.arch,
    },
    node: process.version,
    versions: packageVersions(),
    rows,
    helloRows,
    profiles,
    traffic,
    memory,
    measurements,
  }
  mkdirSync(dirname(outFile), { recursive: true })
  writeFileSync(outFile, `${JSON.stringify(result, null, 2)}\n`)
  process.stderr.write(`bench: results written to ${outFile}\n`)
}

await main()
