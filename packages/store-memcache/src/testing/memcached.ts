// Test support: a real memcached process on a free loopback port.
//
// Tests that need memcached call `memcachedAvailable()`: where the binary is missing they are
// skipped with a loud message, except when CI is set, where a missing binary fails the run.

import { spawn, spawnSync } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { createConnection, createServer } from 'node:net'

/** The memcached binary: MEMCACHED_BIN, or `memcached` on the PATH. */
export const MEMCACHED_BIN = process.env.MEMCACHED_BIN ?? 'memcached'

let availability: boolean | undefined

/**
 * Whether memcached can be started here. Prints a loud warning when it cannot; throws when it
 * cannot and CI is set, so that CI never silently skips these tests.
 */
export function memcachedAvailable(): boolean {
  if (availability === undefined) {
    const probe = spawnSync(MEMCACHED_BIN, ['-h'], { stdio: 'ignore' })
    availability = probe.error === undefined && probe.status === 0
    if (!availability) {
      const message = `memcached (${MEMCACHED_BIN}) was not found: the memcached tests are SKIPPED. Install it with: apt-get install memcached`
      if (process.env.CI !== undefined && process.env.CI !== '' && process.env.CI !== 'false') {
        throw new Error(`${message} (CI is set, so this fails the run)`)
      }
      process.stderr.write(`\n!!! ${message}\n\n`)
    }
  }
  return availability
}

/** Finds a free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => {
        resolve(port)
      })
    })
  })
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' })
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => {
      resolve(false)
    })
  })
}

export interface Memcached {
  port: number
  /** `127.0.0.1:<port>`. */
  address: string
  process: ChildProcess
  /** Kills the process (SIGKILL by default) and waits for it to exit. */
  stop: (signal?: NodeJS.Signals) => Promise<void>
  /** Sends one text-protocol command and resolves with the reply up to its terminator. */
  command: (line: string) => Promise<string>
  /** memcached's own `stats`, as numbers where they are numbers. */
  stats: () => Promise<Record<string, number>>
}

/** Starts memcached on `port` (a free one by default) and waits until it accepts connections. */
export async function startMemcached(port?: number): Promise<Memcached> {
  const chosen = port ?? (await freePort())
  const args = ['-p', String(chosen), '-U', '0', '-l', '127.0.0.1', '-m', '64', '-c', '1024']
  if (process.getuid?.() === 0) {
    args.push('-u', 'root')
  }
  const child = spawn(MEMCACHED_BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      resolve()
    })
  })
  const started = Date.now()
  while (!(await canConnect(chosen))) {
    if (child.exitCode !== null || Date.now() - started > 5000) {
      child.kill('SIGKILL')
      throw new Error(`memcached did not start on port ${chosen}: ${stderr}`)
    }
    await new Promise((r) => setTimeout(r, 20))
  }
  const command = (line: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const socket = createConnection({ port: chosen, host: '127.0.0.1' })
      let reply = ''
      socket.setTimeout(2000, () => {
        socket.destroy()
        reject(new Error(`memcached did not answer ${line}`))
      })
      socket.on('error', reject)
      socket.on('data', (d: Buffer) => {
        reply += d.toString('latin1')
        if (/(^|\r\n)(END|STORED|NOT_STORED|DELETED|NOT_FOUND|OK|ERROR[^\r]*)\r\n$/.test(reply)) {
          socket.end()
          resolve(reply)
        }
      })
      socket.write(`${line}\r\n`)
    })
  return {
    port: chosen,
    address: `127.0.0.1:${chosen}`,
    process: child,
    stop: async (signal = 'SIGKILL') => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill(signal)
      }
      await exited
    },
    command,
    stats: async () => {
      const reply = await command('stats')
      const stats: Record<string, number> = {}
      for (const line of reply.split('\r\n')) {
        const [tag, name, value] = line.split(' ')
        if (
          tag === 'STAT' &&
          name !== undefined &&
          value !== undefined &&
          /^-?\d+(\.\d+)?$/.test(value)
        ) {
          stats[name] = Number(value)
        }
      }
      return stats
    },
  }
}
