// End to end: `pnpm dev` from the repository root (turbo -> pnpm -> tsx watch -> node) honours
// the environment as `pnpm start` does, and everything it started is stopped afterwards.

import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { readFileSync, readdirSync } from 'node:fs'
import { createServer } from 'node:net'
import { fileURLToPath } from 'node:url'
import { afterEach, describe, expect, it } from 'vitest'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
let dev: ChildProcess | undefined

/** A port nothing listens on now. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer()
    probe.on('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address()
      probe.close(() => {
        resolve(typeof address === 'object' && address !== null ? address.port : 0)
      })
    })
  })
}

function portIsFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createServer()
    probe.on('error', () => {
      resolve(false)
    })
    probe.listen(port, '127.0.0.1', () => {
      probe.close(() => {
        resolve(true)
      })
    })
  })
}

/**
 * The processes of the session `pnpm dev` was started in (detached: a session of its own).
 * turbo gives each task a process group of its own, so the session, not the group, holds the
 * whole tree; read from /proc (Linux), else the group alone.
 */
function sessionMembers(sessionId: number): number[] {
  let entries: string[]
  try {
    entries = readdirSync('/proc').filter((entry) => /^\d+$/.test(entry))
  } catch {
    return groupAlive(sessionId) ? [-sessionId] : []
  }
  const members: number[] = []
  for (const entry of entries) {
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
      // pid (comm) state ppid pgrp session ...: comm may hold spaces, so read after its ')'.
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      if (Number(fields[3]) === sessionId && fields[0] !== 'Z') {
        members.push(Number(entry))
      }
    } catch {
      // Gone meanwhile.
    }
  }
  return members
}

function groupAlive(groupId: number): boolean {
  try {
    process.kill(-groupId, 0)
    return true
  } catch {
    return false
  }
}

function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name)
  } catch {
    // Already gone.
  }
}

/**
 * SIGTERM to the group (turbo passes it on to its tasks, which shut down gracefully), then
 * SIGKILL to whatever of the session is left after 10 s.
 */
async function stopTree(child: ChildProcess): Promise<void> {
  const session = child.pid
  if (session === undefined) {
    return
  }
  signal(-session, 'SIGTERM')
  const deadline = Date.now() + 10_000
  while (sessionMembers(session).length > 0 && Date.now() < deadline) {
    await sleep(100)
  }
  for (const pid of sessionMembers(session)) {
    signal(pid, 'SIGKILL')
  }
  while (sessionMembers(session).length > 0) {
    await sleep(50)
  }
}

afterEach(async () => {
  if (dev !== undefined) {
    await stopTree(dev)
    dev = undefined
  }
})

describe('pnpm dev', () => {
  it('serves on PORT with RATE_LIMIT from the environment: 200, 200, 200, 429', async () => {
    const port = await freePort()
    const child = spawn('pnpm', ['dev'], {
      cwd: ROOT,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        PORT: String(port),
        HOST: '127.0.0.1',
        RATE_LIMIT: '3',
        RATE_WINDOW_SECONDS: '60',
        LOG_LEVEL: 'info',
      },
    })
    dev = child
    let output = ''
    child.stdout.on('data', (d: Buffer) => (output += d.toString()))
    child.stderr.on('data', (d: Buffer) => (output += d.toString()))
    const started = Date.now()
    // The app's log line, after turbo's `@slidelimit/hello:dev: ` prefix.
    let listening: string | undefined
    while (listening === undefined) {
      expect(child.exitCode, output).toBeNull()
      expect(Date.now() - started, output).toBeLessThan(90_000)
      await sleep(100)
      listening = output.split('\n').find((line) => line.includes('"listening"'))
    }
    expect(JSON.parse(listening.slice(listening.indexOf('{'))), output).toMatchObject({
      address: '127.0.0.1',
      port,
      limit: 3,
      windowSeconds: 60,
    })
    const statuses: number[] = []
    for (let i = 0; i < 4; i++) {
      const res = await fetch(`http://127.0.0.1:${port}/`, { headers: { connection: 'close' } })
      await res.text()
      statuses.push(res.status)
      if (i === 3) {
        expect(res.headers.get('ratelimit-policy')).toBe('"default";q=3;w=60')
      }
    }
    expect(statuses, output).toEqual([200, 200, 200, 429])

    await stopTree(child)
    dev = undefined
    expect(sessionMembers(child.pid ?? 0)).toEqual([])
    expect(await portIsFree(port)).toBe(true)
  }, 120_000)
})
