// Test helpers: start the built server as a real process and talk to it over HTTP.

import { spawn } from 'node:child_process'
import type { ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'

export const MAIN = fileURLToPath(new URL('../dist/main.js', import.meta.url))

export interface RunningServer {
  url: string
  port: number
  process: ChildProcess
  output: () => string
  /**
   * Resolves once the server's output matches `pattern` (its output reaches this process a
   * little after its HTTP answers do); rejects with the output after `timeoutMs`.
   */
  waitForOutput: (pattern: RegExp, timeoutMs?: number) => Promise<void>
  /** Sends a signal and resolves with the exit code. */
  stop: (signal?: NodeJS.Signals) => Promise<number | null>
}

export interface Exited {
  code: number | null
  stdout: string
  stderr: string
}

/** Runs the server until it exits by itself (e.g. refusing its configuration). */
export function runToExit(env: Record<string, string>, timeoutMs = 10_000): Promise<Exited> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN], { env: { ...baseEnv(), ...env } })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`server did not exit within ${timeoutMs} ms:\n${stdout}${stderr}`))
    }, timeoutMs)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

function baseEnv(): Record<string, string> {
  const env: Record<string, string> = {}
  for (const name of ['PATH', 'HOME', 'NODE_OPTIONS', 'SYSTEMROOT']) {
    const value = process.env[name]
    if (value !== undefined) {
      env[name] = value
    }
  }
  return env
}

/** Starts the server on a free port and waits until it listens. */
export function startServer(
  env: Record<string, string> = {},
  timeoutMs = 10_000,
): Promise<RunningServer> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN], {
      env: { ...baseEnv(), PORT: '0', HOST: '127.0.0.1', LOG_LEVEL: 'info', ...env },
    })
    let out = ''
    let started = false
    // 'close', not 'exit': by then everything the server wrote has been read.
    const exited = new Promise<number | null>((done) => {
      child.on('close', (code) => {
        done(code)
      })
    })
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(new Error(`server did not start within ${timeoutMs} ms:\n${out}`))
    }, timeoutMs)
    const watchers = new Set<() => void>()
    const waitForOutput = (pattern: RegExp, ms = 5000): Promise<void> =>
      new Promise((done, fail) => {
        const check = (): void => {
          if (pattern.test(out)) {
            clearTimeout(timeout)
            watchers.delete(check)
            done()
          }
        }
        const timeout = setTimeout(() => {
          watchers.delete(check)
          fail(new Error(`no output matching ${String(pattern)} within ${ms} ms:\n${out}`))
        }, ms)
        watchers.add(check)
        check()
      })
    const append = (d: Buffer): void => {
      out += d.toString()
      for (const check of [...watchers]) {
        check()
      }
    }
    child.stderr.on('data', append)
    child.stdout.on('data', (d: Buffer) => {
      append(d)
      const match = /"msg":"listening".*?"port":(\d+)/.exec(out)
      if (!started && match !== null) {
        started = true
        clearTimeout(timer)
        const port = Number(match[1])
        resolve({
          url: `http://127.0.0.1:${port}`,
          port,
          process: child,
          output: () => out,
          waitForOutput,
          stop: (signal = 'SIGTERM') => {
            if (child.exitCode === null && child.signalCode === null) {
              child.kill(signal)
            }
            return exited
          },
        })
      }
    })
    child.on('close', (code) => {
      if (!started) {
        clearTimeout(timer)
        reject(new Error(`server exited with ${code} before listening:\n${out}`))
      }
    })
  })
}

/**
 * The memcached connection changes a server logged, in order: `up` (first answer), `lost`,
 * `restored`.
 */
export function connectionChanges(output: string): string[] {
  return [...output.matchAll(/"msg":"memcached connection (up|lost|restored)"/g)].map(
    (match) => match[1] as string,
  )
}

/**
 * Checks that each change was logged once: `lost` and `up` / `restored` taking turns, `up` only
 * first (a real blip on a loaded machine is a change like any other, and is logged once too).
 */
export function expectLoggedOncePerChange(output: string): string[] {
  const changes = connectionChanges(output)
  const problems = changes.filter(
    (change, i) =>
      (change === 'up' && i !== 0) ||
      (i > 0 && (change === 'lost') === (changes[i - 1] === 'lost')),
  )
  if (problems.length > 0) {
    throw new Error(`connection changes not logged once each: ${changes.join(', ')}\n${output}`)
  }
  return changes
}
