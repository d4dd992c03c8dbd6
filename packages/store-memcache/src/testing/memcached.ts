// Test support: a real memcached process on a free loopback port.
//
// Tests that need memcached call `memcachedAvailable()`: where the binary is missing they are
// skipped with a loud message, except when CI is set, where a missing binary fails the run.

import { spawn, spawnSync } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { createConnection, createServer } from 'node:net'
import { Opcode, Status, encodeRequest, readPacket, readPackets } from '../protocol.js'

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

/**
 * Whether memcached answers on `port`. The probe asks memcached to close the connection (`quit`)
 * and waits until it has, so that it never shows among memcached's connections afterwards.
 */
function answers(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ port, host: '127.0.0.1' })
    let answered = false
    socket.on('data', () => {
      answered = true
    })
    socket.once('connect', () => {
      socket.write('version\r\nquit\r\n')
    })
    socket.once('error', () => {
      socket.destroy()
    })
    socket.once('close', () => {
      resolve(answered)
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
  /**
   * Counter operations memcached served: gets (hits and misses), increments, decrements, and
   * the items created (an increment that creates its counter shows in none of memcached's incr
   * counters, only in total_items). Pings and stats are not among them.
   */
  operations: () => Promise<number>
  /**
   * Sends binary-protocol bytes on a new connection; resolves with the reply bytes once
   * `packets` whole packets (default 1) have arrived.
   */
  exchange: (bytes: Buffer, packets?: number) => Promise<Buffer>
  /**
   * The client connections memcached has open, from `stats conns`, not counting the one that
   * asks.
   */
  clients: () => Promise<number>
  /**
   * Stores small items of many sizes until memcached cannot create a new counter any more
   * (started with `-M`, it then answers out of memory instead of evicting).
   */
  fill: () => Promise<void>
  /**
   * Every item whose key starts with `prefix`, with its value, read from memcached's own
   * memory (`lru_crawler metadump`, then `get`): what is really stored, whatever a client
   * believes.
   */
  items: (prefix: string) => Promise<Map<string, string>>
}

/** Options of {@link startMemcached}. */
export interface MemcachedOptions {
  /** The port; a free one by default. */
  port?: number
  /** More command-line arguments, e.g. `['-M']` (no evictions: out of memory errors instead). */
  args?: string[]
  /** Megabytes of memory for items (`-m`). Defaults to `64`. */
  megabytes?: number
}

/** Starts memcached (on a free port by default) and waits until it answers. */
export async function startMemcached(options: number | MemcachedOptions = {}): Promise<Memcached> {
  const {
    port,
    args: extra = [],
    megabytes = 64,
  } = typeof options === 'number' ? { port: options } : options
  const chosen = port ?? (await freePort())
  const args = ['-p', String(chosen), '-U', '0', '-l', '127.0.0.1', '-m', String(megabytes)]
  args.push('-c', '1024', ...extra)
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
  while (!(await answers(chosen))) {
    if (child.exitCode !== null || Date.now() - started > 5000) {
      child.kill('SIGKILL')
      throw new Error(`memcached did not start on port ${chosen}: ${stderr}`)
    }
    await new Promise((r) => setTimeout(r, 20))
  }
  /** Sends a command; resolves with the reply and the local port the command came from. */
  const send = (
    line: string,
    done = /(^|\r\n)(END|STORED|NOT_STORED|DELETED|NOT_FOUND|OK|MN|VERSION [^\r]*|(SERVER_|CLIENT_)?ERROR[^\r]*|\d+)\r\n$/,
  ): Promise<{ reply: string; localPort: number }> =>
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
        if (done.test(reply)) {
          const localPort = socket.localPort ?? 0
          socket.end()
          resolve({ reply, localPort })
        }
      })
      socket.write(`${line}\r\n`)
    })
  const command = async (line: string): Promise<string> => (await send(line)).reply
  /**
   * Sends binary-protocol bytes on a new connection; resolves with the reply bytes once
   * `packets` whole packets have arrived.
   */
  const exchange = (bytes: Buffer, packets = 1): Promise<Buffer> =>
    new Promise((resolve, reject) => {
      const socket = createConnection({ port: chosen, host: '127.0.0.1' })
      let received = Buffer.alloc(0)
      socket.setTimeout(2000, () => {
        socket.destroy()
        reject(new Error('memcached did not answer a binary request'))
      })
      socket.on('error', reject)
      socket.on('data', (data: Buffer) => {
        received = Buffer.concat([received, data])
        if (readPackets(received).packets.length >= packets) {
          socket.destroy()
          resolve(received)
        }
      })
      socket.write(bytes)
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
    exchange,
    operations: async () => {
      const s = await command('stats')
      const stat = (name: string): number =>
        Number(new RegExp(`STAT ${name} (\\d+)`).exec(s)?.[1] ?? 0)
      return (
        stat('cmd_get') +
        stat('incr_hits') +
        stat('incr_misses') +
        stat('decr_hits') +
        stat('decr_misses') +
        stat('total_items')
      )
    },
    fill: async () => {
      for (let filled = 0; filled < 1_000_000; filled += 5000) {
        const sets = Array.from(
          { length: 5000 },
          (_, i) => `set ${filled + i}${'x'.repeat(((filled + i) % 60) + 10)} 0 0 1 noreply\r\n1`,
        )
        await command(`${sets.join('\r\n')}\r\nmn`)
        // A counter created the way the store creates them, with a key of a counter's length.
        const key = `sl:fill-${filled}:${'x'.repeat(27)}:1`
        const bytes = encodeRequest(Opcode.increment, key, 1, { amount: 1, initial: 1, expiry: 60 })
        if (readPacket(await exchange(bytes))?.status === Status.outOfMemory) {
          return
        }
      }
      throw new Error('memcached never ran out of memory: was it started with -M?')
    },
    items: async (prefix) => {
      const untilEnd = /(^|\n)(END|(SERVER_|CLIENT_)?ERROR[^\r]*)\r\n$/
      // The crawler walks each LRU while memcached's maintainer thread moves young items between
      // them, so one dump can miss an item that moved under it: dump until a dump finds nothing
      // new (the union of all).
      const found = new Set<string>()
      for (let dumps = 0; dumps < 10; dumps++) {
        const dump = (await send('lru_crawler metadump all', untilEnd)).reply
        const before = found.size
        for (const match of dump.matchAll(/^key=(\S+) /gm)) {
          const key = decodeURIComponent(match[1] as string)
          if (key.startsWith(prefix)) {
            found.add(key)
          }
        }
        if (dumps > 0 && found.size === before) {
          break
        }
      }
      const keys = [...found]
      const items = new Map<string, string>()
      for (let i = 0; i < keys.length; i += 100) {
        const { reply } = await send(`get ${keys.slice(i, i + 100).join(' ')}`, untilEnd)
        for (const match of reply.matchAll(/^VALUE (\S+) \d+ \d+\r\n([^\r]*)\r\n/gm)) {
          items.set(match[1] as string, match[2] as string)
        }
      }
      return items
    },
    clients: async () => {
      const { reply, localPort } = await send('stats conns')
      const addresses = new Map<string, string>()
      const states = new Map<string, string>()
      for (const line of reply.split('\r\n')) {
        const match = /^STAT (\d+):(addr|state) (.*)$/.exec(line)
        if (match !== null) {
          ;(match[2] === 'addr' ? addresses : states).set(match[1] as string, match[3] as string)
        }
      }
      let clients = 0
      for (const [fd, address] of addresses) {
        if (states.get(fd) !== 'conn_listening' && !address.endsWith(`:${localPort}`)) {
          clients++
        }
      }
      return clients
    },
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
