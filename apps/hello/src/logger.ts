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
  // Written once every line before it is: a process that exits without close() still gets
  // what is buffered from pino's own exit hook (flushSync), all but a write already under way.
  const stdout = write === undefined ? pino.destination({ dest: 1, sync: false }) : undefined
  const log = pino(
    {
      level,
      // No pid and hostname on every line.
      base: null,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    stdout ?? { write: write ?? noop },
  )
  // The message goes in the object so that it comes before the fields (pino puts a message
  // given apart after them).
  const method = (at: Level) =>
    log.isLevelEnabled(at)
      ? (msg: string, fields?: Record<string, unknown>): void => {
          log[at]({ msg, ...fields })
        }
      : noop
  return {
    level,
    enabled: (at) => log.isLevelEnabled(at),
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
            const timer = setTimeout(done, timeoutMs)
            stdout.once('close', done)
            stdout.once('error', done)
            try {
              // Waits for a write under way, writes the rest, then emits 'close' (fd 1 stays
              // open).
              stdout.end()
            } catch {
              done()
            }
          }),
  }
}
