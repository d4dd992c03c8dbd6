// pnpm bench: every server under every scenario, alternating servers round by round, then
// memory per requester. Prints one Markdown table and writes the results as JSON.
//
//   node dist/run.js [--quick] [--out FILE]

import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { cpus, totalmem } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startMemcached } from '@slidelimit/store-memcache/testing'
import type { Memcached } from '@slidelimit/store-memcache/testing'
import { HELLO_SERVERS, startHello } from './hello-server.js'
import type { HelloKind } from './hello-server.js'
import { hasCommand, load, loadTool } from './load.js'
import { MEMORY_LIMITERS } from './memory-limiters.js'
import { memcachedOps, memoryTable, summarise, table } from './report.js'
import type { Measurement, MemoryRow } from './report.js'
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
  ? { seconds: 1, warmupSeconds: 1, rounds: 1, connections: 32, memoryRequesters: 20_000 }
  : { seconds: 4, warmupSeconds: 2, rounds: 5, connections: 64, memoryRequesters: 100_000 }

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

function startServer(kind: ServerKind, limit: number, memcached: string): Promise<Running> {
  const script = join(here, 'server.js')
  const [bin, args] = pin
    ? ['taskset', ['-c', String(SERVER_CPU), process.execPath, script]]
    : [process.execPath, [script]]
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

/**
 * The installed version of `pkg`: the package.json above its entry point (most packages do not
 * export their package.json, so it cannot be resolved directly).
 */
function versionOf(pkg: string): string {
  try {
    let dir = dirname(fileURLToPath(import.meta.resolve(pkg)))
    for (;;) {
      try {
        const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as {
          name?: string
          version?: string
        }
        if (manifest.name === pkg && manifest.version !== undefined) {
          return manifest.version
        }
      } catch {
        // no package.json here
      }
      const up = dirname(dir)
      if (up === dir) {
        return 'unknown'
      }
      dir = up
    }
  } catch {
    return 'unknown'
  }
}

async function main(): Promise<void> {
  const memcached: Memcached = await startMemcached()
  const measurements: Measurement[] = []
  process.stderr.write(
    `bench: ${loadTool}, ${settings.rounds} round(s) of ${settings.seconds} s, ${settings.connections} connections, ${pin ? 'pinned with taskset' : 'not pinned'}\n`,
  )
  // Progress: rounds measured so far, and the time left at the pace so far (the memory
  // measurements after the rounds take about a minute more).
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
          for (const server of servers) {
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
  } finally {
    await memcached.stop()
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
  const report = `${table(rows)}\n\n${helloTable}\n\n${memoryTable(memory)}\n`
  process.stdout.write(report)
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
    versions: Object.fromEntries(
      [
        'hono',
        '@hono/node-server',
        'hono-rate-limiter',
        'rate-limiter-flexible',
        'memjs',
        'memcached',
        'autocannon',
      ].map((p) => [p, versionOf(p)]),
    ),
    rows,
    helloRows,
    memory,
    measurements,
  }
  mkdirSync(dirname(outFile), { recursive: true })
  writeFileSync(outFile, `${JSON.stringify(result, null, 2)}\n`)
  process.stderr.write(`bench: results written to ${outFile}\n`)
}

await main()
