// End to end: the HTTP server's own limits (headers timeout, connection cap) on the real server
// process, against clients that hold connections open without finishing a request.

import { request } from 'node:http'
import { connect } from 'node:net'
import type { Socket } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { startServer } from './server.test-helpers.js'
import type { RunningServer } from './server.test-helpers.js'

const running: RunningServer[] = []
const sockets = new Set<Socket>()
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

afterEach(async () => {
  for (const socket of sockets) {
    socket.destroy()
  }
  sockets.clear()
  await Promise.all(running.splice(0).map((s) => s.stop('SIGKILL')))
})

async function server(env: Record<string, string>): Promise<RunningServer> {
  const started = await startServer({ RATE_LIMIT: '1000000', ...env })
  running.push(started)
  return started
}

/** One GET on a connection of its own; resolves with its status (0: refused or cut) and time. */
function getOnce(port: number): Promise<{ status: number; ms: number }> {
  const started = performance.now()
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, path: '/', agent: false }, (res) => {
      res.resume()
      res.on('end', () => {
        resolve({ status: res.statusCode ?? 0, ms: performance.now() - started })
      })
    })
    req.on('error', () => {
      resolve({ status: 0, ms: performance.now() - started })
    })
    req.end()
  })
}

interface SlowConnection {
  /** Milliseconds from connecting to the server closing it; undefined while open. */
  cutAfterMs: number | undefined
  /** What the server wrote before closing. */
  reply: string
}

/** A slowloris connection: a request line, then one header byte every `everyMs`, never done. */
function slowConnection(port: number, everyMs: number, done: (c: SlowConnection) => void): void {
  const connection: SlowConnection = { cutAfterMs: undefined, reply: '' }
  const socket = connect(port, '127.0.0.1')
  sockets.add(socket)
  const header = 'X-Slow: ' + 'a'.repeat(10_000)
  let sent = 0
  let timer: NodeJS.Timeout | undefined
  let started = 0
  socket.on('connect', () => {
    started = performance.now()
    socket.write('GET / HTTP/1.1\r\nHost: localhost\r\n')
    timer = setInterval(() => {
      socket.write(header[sent++ % header.length] as string)
    }, everyMs)
  })
  socket.on('data', (data: Buffer) => {
    connection.reply += data.toString()
  })
  socket.on('error', () => {
    // A reset is a cut like a close.
  })
  socket.on('close', () => {
    clearInterval(timer)
    if (sockets.delete(socket) && started > 0) {
      // Not destroyed by this test: the server cut it.
      connection.cutAfterMs = performance.now() - started
      done(connection)
    }
  })
}

describe('the HTTP server under slow clients', () => {
  it('cuts slowloris connections after the headers timeout while other clients get answers at once', async () => {
    const app = await server({ HEADERS_TIMEOUT_MS: '1000', REQUEST_TIMEOUT_MS: '2000' })
    const cut: SlowConnection[] = []
    let attacking = true
    // 300 connections that each send a header byte every 300 ms, opened again when cut.
    const open = (): void => {
      slowConnection(app.port, 300, (connection) => {
        cut.push(connection)
        if (attacking) {
          open()
        }
      })
    }
    for (let i = 0; i < 300; i++) {
      open()
    }
    // Meanwhile four clients send requests one after another, each on a new connection.
    const answers: { status: number; ms: number }[] = []
    const until = performance.now() + 3500
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (performance.now() < until) {
          answers.push(await getOnce(app.port))
          await sleep(20)
        }
      }),
    )
    attacking = false
    expect(answers.length).toBeGreaterThan(40)
    expect(answers.filter((answer) => answer.status !== 200)).toEqual([])
    const slowest = Math.max(...answers.map((answer) => answer.ms))
    expect(slowest, app.output().slice(-2000)).toBeLessThan(1000)
    // Every connection of the first wave was cut after the 1 s headers timeout (checked every
    // 250 ms), told 408, and so was the second wave.
    expect(cut.length).toBeGreaterThanOrEqual(600)
    const times = cut.map((connection) => connection.cutAfterMs ?? 0)
    expect(Math.min(...times)).toBeGreaterThanOrEqual(900)
    expect(Math.max(...times)).toBeLessThan(2500)
    expect(cut.every((connection) => connection.reply.startsWith('HTTP/1.1 408'))).toBe(true)
  })

  it('closes connections past MAX_CONNECTIONS and accepts again once one is gone', async () => {
    const app = await server({ MAX_CONNECTIONS: '20' })
    expect(app.output()).toMatch(/"maxConnections":20/)
    const idle: Socket[] = []
    for (let i = 0; i < 20; i++) {
      const socket = connect(app.port, '127.0.0.1')
      sockets.add(socket)
      socket.on('error', () => {})
      idle.push(socket)
      await new Promise((r) => socket.once('connect', r))
    }
    await sleep(100)
    expect((await getOnce(app.port)).status).toBe(0)
    idle[0]?.destroy()
    await sleep(100)
    expect((await getOnce(app.port)).status).toBe(200)
  })
})
