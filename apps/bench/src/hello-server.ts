// The hello app (apps/hello, built) as a benchmark server, as it is deployed: its access log
// at the default LOG_LEVEL=info, stdout going to a file, beside the same app with the access log
// off (LOG_LEVEL=warn). The hello app keys clients by address, not by the x-client header, so
// it sees one client in every scenario; the ratio that matters is hello-default / hello-nolog.

import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { mkdtempSync, openSync, closeSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const HELLO_SERVERS = ['hello-default', 'hello-nolog'] as const
export type HelloKind = (typeof HELLO_SERVERS)[number]

const MAIN = fileURLToPath(import.meta.resolve('@slidelimit/hello'))

/** A port free right now on loopback (the hello app logs its port to stdout, a file here). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer()
    probe.once('error', reject)
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address()
      probe.close(() => {
        resolve(typeof address === 'object' && address !== null ? address.port : 0)
      })
    })
  })
}

async function waitUntilReady(url: string, child: ChildProcess): Promise<void> {
  for (let attempt = 0; attempt < 200; attempt++) {
    if (child.exitCode !== null) {
      throw new Error(`hello exited with ${child.exitCode}`)
    }
    try {
      if ((await fetch(`${url}readyz`)).ok) {
        return
      }
    } catch {
      // Not listening yet.
    }
    await new Promise((done) => setTimeout(done, 50))
  }
  throw new Error(`hello at ${url} was not ready within 10 s`)
}

/**
 * Starts the hello app under `prefix` (taskset) with RATE_LIMIT=`limit`; its stdout goes to a
 * file in a temporary folder that `stop()` removes.
 */
export async function startHello(
  kind: HelloKind,
  limit: number,
  prefix: readonly string[],
): Promise<{ url: string; child: ChildProcess; stop: () => void }> {
  const port = await freePort()
  const folder = mkdtempSync(join(tmpdir(), 'slidelimit-bench-'))
  const log = openSync(join(folder, 'stdout.log'), 'w')
  const command = [...prefix, process.execPath, MAIN]
  const child = spawn(command[0] as string, command.slice(1), {
    env: {
      ...process.env,
      PORT: String(port),
      HOST: '127.0.0.1',
      RATE_LIMIT: String(limit),
      LOG_LEVEL: kind === 'hello-default' ? 'info' : 'warn',
      NODE_ENV: 'production',
    },
    stdio: ['ignore', log, 'inherit'],
  })
  closeSync(log)
  const url = `http://127.0.0.1:${port}/`
  const stop = (): void => {
    child.kill('SIGKILL')
    rmSync(folder, { recursive: true, force: true })
  }
  try {
    await waitUntilReady(url, child)
  } catch (err) {
    stop()
    throw err
  }
  return { url, child, stop }
}
