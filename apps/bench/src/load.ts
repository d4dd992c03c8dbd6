// Load generation and parsing of its output: wrk where installed, otherwise autocannon (run in
// its own process). Both report requests per second, the p99 latency and the request count.

import { spawn, spawnSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export interface LoadResult {
  requests: number
  rps: number
  p99Ms: number
  /** Responses other than 2xx/3xx, as wrk counts them. */
  non2xx: number
}

export interface LoadOptions {
  url: string
  seconds: number
  connections: number
  /** Distinct x-client values, rotated per request; 1 means one hot client. */
  clients: number
  /** A CPU to pin the load generator to, when taskset exists. */
  cpu?: number
}

const UNIT_MS: Record<string, number> = { us: 0.001, ms: 1, s: 1000, m: 60_000 }

/** Parses wrk's report (run with --latency). */
export function parseWrk(output: string): LoadResult {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(output)
  const p99 = /^\s*99(?:\.0+)?%\s+([\d.]+)(us|ms|s|m)\s*$/m.exec(output)
  const total = /(\d+) requests in/.exec(output)
  if (rps === null || p99 === null || total === null) {
    throw new Error(`cannot parse wrk output:\n${output}`)
  }
  const non2xx = /Non-2xx or 3xx responses:\s+(\d+)/.exec(output)
  return {
    rps: Number(rps[1]),
    p99Ms: Number(p99[1]) * (UNIT_MS[p99[2] ?? 'ms'] ?? 1),
    requests: Number(total[1]),
    non2xx: non2xx === null ? 0 : Number(non2xx[1]),
  }
}

/** Parses the JSON line printed by autocannon-load.js. */
export function parseAutocannon(output: string): LoadResult {
  const parsed = JSON.parse(output.trim().split('\n').at(-1) ?? '{}') as Partial<LoadResult>
  if (typeof parsed.rps !== 'number' || typeof parsed.p99Ms !== 'number') {
    throw new Error(`cannot parse autocannon output:\n${output}`)
  }
  return {
    rps: parsed.rps,
    p99Ms: parsed.p99Ms,
    requests: parsed.requests ?? 0,
    non2xx: parsed.non2xx ?? 0,
  }
}

export function hasCommand(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0
}

export const loadTool = hasCommand('wrk') ? 'wrk' : 'autocannon'

export function wrkScript(clients: number): string {
  const path = join(tmpdir(), `slidelimit-bench-${process.pid}-${clients}.lua`)
  const lua =
    clients <= 1
      ? 'wrk.headers["x-client"] = "hot-client"\n'
      : `local n = 0\nrequest = function()\n  n = (n + 1) % ${clients}\n  return wrk.format("GET", nil, { ["x-client"] = "client-" .. n })\nend\n`
  writeFileSync(path, lua)
  return path
}

function run(command: string, args: string[], cpu: number | undefined): Promise<string> {
  const pinned = cpu !== undefined && hasCommand('taskset')
  const [bin, argv] = pinned ? ['taskset', ['-c', String(cpu), command, ...args]] : [command, args]
  return new Promise((resolve, reject) => {
    const child = spawn(bin, argv, { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (out += d.toString()))
    child.on('error', reject)
    child.on('exit', (code) => {
      if (code === 0) {
        resolve(out)
      } else {
        reject(new Error(`${command} exited with ${code}:\n${out}`))
      }
    })
  })
}

/** Applies load from a separate process and returns what it measured. */
export async function load({
  url,
  seconds,
  connections,
  clients,
  cpu,
}: LoadOptions): Promise<LoadResult> {
  if (loadTool === 'wrk') {
    const args = [
      '-t1',
      `-c${connections}`,
      `-d${seconds}s`,
      '--latency',
      '-s',
      wrkScript(clients),
      url,
    ]
    return parseWrk(await run('wrk', args, cpu))
  }
  const script = fileURLToPath(new URL('./autocannon-load.js', import.meta.url))
  const args = [script, url, String(seconds), String(connections), String(clients)]
  return parseAutocannon(await run(process.execPath, args, cpu))
}
