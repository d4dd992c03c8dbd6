// The server's leveled logger: one JSON object per line on stdout, written by pino through its
// asynchronous destination (lines are buffered and written in batches off the request path).
//
// A line reads `{"level":"info","time":"<ISO 8601>","msg":"request",...fields}`: the level as
// its name, the time as an ISO string, the message, then the fields in the order given (fields
// whose value is undefined are left out).

import { pino } from 'pino'
import type { LogLevel } from './config.js'

type Level = Exclude<LogLevel, 'silent'>

export interface Logger {
  readonly level: LogLevel
  enabled(level: Level): boolean
  debug(msg: string, fields?: Record<string, unknown>): void
  info(msg: string, fields?: Record<string, unknown>): void
  warn(msg: string, fields?: Record<string, unknown>): void
  error(msg: string, fields?: Record<string, unknown>): void
  /**
   * Writes every line logged so far, then stops writing: call it last, before `process.exit`.
   * Resolves once the lines are written, or after `timeoutMs` when stdout does not take them
   * (a reader that stopped reading). Defaults to 1000 ms.
   */
  close(timeoutMs?: number): Promise<void>
}

const noop = (): void => undefined

const RANK: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40, silent: 100 }

/** A field's value as JSON; one that cannot be (a cycle, a BigInt) as its string. */
function serialize(value: unknown): string {
  if (typeof value === 'string') {
    // Most values (methods, paths, addresses) need no escaping.
    return NEEDS_ESCAPE.test(value) ? JSON.stringify(value) : `"${value}"`
  }
  if (typeof value === 'number' || typeof value === 'boolean') {
    return Number.isFinite(value) || typeof value === 'boolean' ? String(value) : 'null'
  }
  try {
    // undefined for a function or a symbol
    const json = JSON.stringify(value) as unknown
    return typeof json === 'string' ? json : 'null'
  } catch {
    return JSON.stringify(String(value))
  }
}

/** Characters a JSON string must escape (and lone surrogates, which JSON.stringify escapes). */
// eslint-disable-next-line no-control-regex -- control characters are what it looks for
const NEEDS_ESCAPE = /["\\\u0000-\u001f\ud800-\udfff]/

/**
 * Makes the logger. Lines go to stdout (fd 1) through pino's asynchronous destination, or to
 * `write` when given (tests), one call per line, each ending in a newline.
 *
 * @example
 * const logger = createLogger('info')
 * logger.info('listening', { port: 3000 })
 * // {"level":"info","time":"2026-01-01T00:00:00.000Z","msg":"listening","port":3000}
 */
export function createLogger(level: LogLevel, write?: (line: string) => void): Logger {
  const stdout = write === undefined ? pino.destination({ dest: 1, sync: false }) : undefined
  // Lines of one turn of the event loop go to the destination together, at the end of the turn:
  // one write call per turn instead of one per line (a request's line costs about a quarter as
  // much). `flush` hands them over at once (close, exit).
  let pending = ''
  let scheduled = false
  /** Set by close(): lines logged after it are dropped (close is the last call). */
  let closed = false
  /** Set when close() gave up on a stdout that takes nothing (a reader that stopped). */
  let abandoned = false
  const flush = (): void => {
    scheduled = false
    if (pending !== '' && stdout !== undefined && !abandoned) {
      const lines = pending
      pending = ''
      try {
        stdout.write(lines)
      } catch {
        // a destination that stopped (EPIPE, closed): the lines cannot be written anywhere
      }
    }
  }
  if (stdout !== undefined) {
    // What is buffered is written when the process exits without close() (pino's logger does
    // the same with its destination), all but a write already under way.
    process.once('exit', () => {
      if (abandoned) {
        // close() gave up on a reader that stopped reading: a synchronous write would block
        return
      }
      try {
        flush()
        stdout.flushSync()
      } catch {
        // a write under way, or stdout closed: nothing more can be done at exit
      }
    })
  }
  const write_ =
    stdout === undefined
      ? (write ?? noop)
      : (line: string): void => {
          if (closed) {
            return
          }
          pending += line
          if (!scheduled) {
            scheduled = true
            setImmediate(flush)
          }
        }
  const rank = RANK[level]
  const enabled = (at: Level): boolean => RANK[at] >= rank
  // The line is built here rather than by pino's serializer: it is the access log's cost on
  // every request, and its shape is fixed. The time string is made once per millisecond.
  let lastMs = -1
  let lastTime = ''
  const method = (at: Level) =>
    enabled(at)
      ? (msg: string, fields?: Record<string, unknown>): void => {
          const ms = Date.now()
          if (ms !== lastMs) {
            lastMs = ms
            lastTime = new Date(ms).toISOString()
          }
          let line = `{"level":"${at}","time":"${lastTime}","msg":${JSON.stringify(msg)}`
          if (fields !== undefined) {
            for (const key in fields) {
              const value = fields[key]
              if (value !== undefined) {
                line += `,${JSON.stringify(key)}:${serialize(value)}`
              }
            }
          }
          write_(`${line}}\n`)
        }
      : noop
  return {
    level,
    enabled,
    debug: method('debug'),
    info: method('info'),
    warn: method('warn'),
    error: method('error'),
    close: (timeoutMs = 1000) =>
      stdout === undefined
        ? Promise.resolve()
        : new Promise<void>((resolve) => {
            const done = (): void => {
              clearTimeout(timer)
              resolve()
            }
            const timer = setTimeout(() => {
              // stdout does not take the lines (a reader that stopped reading): give them up,
              // so that no exit hook (ours, pino's) blocks the exit on a full pipe.
              abandoned = true
              stdout.destroy()
              done()
            }, timeoutMs)
            stdout.once('close', done)
            stdout.once('error', done)
            try {
              flush()
              closed = true
              // Waits for a write under way, writes the rest, then emits 'close' (fd 1 stays
              // open).
              stdout.end()
            } catch {
              done()
            }
          }),
  }
}
