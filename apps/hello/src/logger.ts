// The server's leveled logger: one JSON object per line on stdout. Lines are copied into a
// buffer and written in batches off the request path: to a pipe or a socket through
// `process.stdout` (a libuv stream), to a file or a terminal through pino's destination,
// sonic-boom.
//
// A line reads `{"level":"info","time":"<ISO 8601>","msg":"request",...fields}`: the level as
// its name, the time as an ISO string, the message, then the fields in the order given (fields
// whose value is undefined are left out).

import { EventEmitter } from 'node:events'
import { fstatSync, writeSync } from 'node:fs'
// sonic-boom is CommonJS: its class is a property of the module's default export.
import sonicBoom from 'sonic-boom'
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
   * The access line, at info: the same line as `info('request', { method, path, status, ms,
   * client })`, built without a fields object (it is written for every request).
   */
  request(method: string, path: string, status: number, ms: number, client?: string): void
  /**
   * Writes every line logged so far, then stops writing: call it last, before `process.exit`.
   * Resolves once the lines are written, or after `timeoutMs` when stdout does not take them
   * (a reader that stopped reading). Defaults to 1000 ms.
   */
  close(timeoutMs?: number): Promise<void>
}

const noop = (): void => undefined

/** Milliseconds a line waits for others before the batch is written. */
const FLUSH_MS = 10
/** Bytes of lines written at once, without waiting for FLUSH_MS. */
const FLUSH_BYTES = 64 * 1024
/**
 * Bytes the destination holds for a stdout that takes nothing (a reader that stopped) before
 * it drops lines: the server's memory is not the log's buffer.
 */
const MAX_PENDING_BYTES = 16 * 1024 * 1024

/** What the logger writes through: sonic-boom in its `contentMode: 'buffer'`, or a pipe. */
interface Destination extends EventEmitter {
  write(data: Buffer): boolean
  flushSync(): void
  end(): void
  destroy(): void
}

/**
 * fd 1 as a pipe or a socket (docker, systemd, a log shipper), through `process.stdout`, a
 * libuv stream: writes never block a thread, and a full pipe is written to again as soon as
 * its reader takes more (sonic-boom, through libuv's thread pool, either blocks a thread in
 * write(2), which Node's exit waits for, so a SIGTERM never ends while the reader has stopped,
 * or on a non-blocking fd retries only every 100 ms, a few hundred KB a second). At most
 * `maxLength` bytes wait; past that a write is dropped ('drop'). 'write' says how many bytes
 * were written; 'close' comes once everything is written after end().
 */
class PipeDestination extends EventEmitter implements Destination {
  readonly #stream = process.stdout
  #destroyed = false
  constructor(readonly maxLength: number) {
    super()
    this.#stream.on('error', (error: Error) => {
      this.emit('error', error)
    })
  }
  write(data: Buffer): boolean {
    if (this.#destroyed) {
      throw new Error('destination destroyed')
    }
    if (this.#stream.writableLength + data.length > this.maxLength) {
      this.emit('drop', data)
      return false
    }
    this.#stream.write(data, (error) => {
      if (error === null || error === undefined) {
        this.emit('write', data.length)
      }
    })
    return true
  }
  /** Nothing: libuv wrote what the pipe took at once; what waits for a full pipe is lost. */
  flushSync(): void {
    // nothing to do
  }
  end(): void {
    // Called back once everything before it is written.
    this.#stream.write(Buffer.alloc(0), () => {
      this.emit('close')
    })
  }
  destroy(): void {
    this.#destroyed = true
    this.emit('close')
  }
}

/**
 * fd 1: a pipe or a socket through PipeDestination; a file or a terminal through pino's
 * destination, sonic-boom, writing bytes (used without pino's wrapper, whose exit hook would
 * wait for stdout).
 */
function openStdout(opts: { retry: () => boolean; onDrop: (data: Buffer) => void }): Destination {
  // `retry`: whether a write that met EAGAIN (a non-blocking terminal) is tried again.
  let kind: 'pipe' | 'file' | 'other' = 'other'
  try {
    const stat = fstatSync(1)
    kind = stat.isFIFO() || stat.isSocket() ? 'pipe' : stat.isFile() ? 'file' : 'other'
  } catch {
    // fd 1 closed: the destination reports it when it writes
  }
  const destination: Destination =
    kind === 'pipe'
      ? new PipeDestination(MAX_PENDING_BYTES)
      : (new sonicBoom.SonicBoom({
          dest: 1,
          // A file takes a batch at once (a copy into the page cache, every 10 ms at most):
          // written on this thread, in order, with nothing under way when the process exits.
          // A terminal can stop reading (Ctrl-S): written by libuv's thread pool.
          sync: kind === 'file',
          contentMode: 'buffer',
          maxLength: MAX_PENDING_BYTES,
          retryEAGAIN: opts.retry,
        }) as unknown as Destination)
  destination.on('drop', opts.onDrop)
  return destination
}

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
 * Makes the logger. Lines go to stdout (fd 1), or to
 * `write` when given (tests), one call per line, each ending in a newline.
 *
 * @example
 * const logger = createLogger('info')
 * logger.info('listening', { port: 3000 })
 * // {"level":"info","time":"2026-01-01T00:00:00.000Z","msg":"listening","port":3000}
 */
export function createLogger(level: LogLevel, write?: (line: string) => void): Logger {
  /** Set at exit: a write that would wait (EAGAIN) is given up instead of retried. */
  let exiting = false
  /** Set when close() gave up on a stdout that takes nothing (a reader that stopped). */
  let abandoned = false
  /** Bytes of lines dropped because stdout took nothing for too long, not yet reported. */
  let dropped = 0
  /** The batch that reports `dropped`, while it is handed over, and the count it says. */
  let report: Buffer | undefined
  let reported = 0
  /** Bytes of the warning at the head of `report`. */
  let reportHead = 0
  /** Bytes the destination took, and those it has written: lines end in the difference. */
  let accepted = 0
  let written = 0
  const stdout =
    write === undefined
      ? openStdout({
          retry: () => !exiting && !abandoned,
          onDrop: (data) => {
            // Counted as taken by hand(), after this: not taken.
            accepted -= data.length
            // A dropped report leaves its count, and its lines, for the next one.
            dropped += data === report ? reported + data.length - reportHead : data.length
          },
        })
      : undefined
  // Lines are copied as UTF-8 into `chunk`, and go to the destination together FLUSH_MS after
  // the first of them, or when the chunk is full: one write for many requests' lines instead
  // of one per line or per turn of the event loop (each write costs a hand-over to libuv's
  // thread pool and a system call). `flush` hands them over at once (close, exit).
  const chunk = Buffer.allocUnsafeSlow(write === undefined ? FLUSH_BYTES : 0)
  let used = 0
  let scheduled = false
  let flushTimer: NodeJS.Timeout | undefined
  /** Set by close(): lines logged after it are dropped (close is the last call). */
  let closed = false
  const hand = (bytes: Buffer): void => {
    if (stdout === undefined || abandoned) {
      return
    }
    try {
      stdout.write(bytes)
      accepted += bytes.length
    } catch {
      // a destination that stopped (EPIPE, closed): the lines cannot be written anywhere
    }
  }
  const flush = (): void => {
    scheduled = false
    clearTimeout(flushTimer)
    if (used === 0) {
      return
    }
    // A copy of the size of the lines: the destination keeps it until it is written (the chunk
    // is 64 KB, and a batch of one line would hold all of it), and the chunk is used again.
    let bytes = Buffer.allocUnsafeSlow(used)
    chunk.copy(bytes, 0, 0, used)
    used = 0
    if (dropped > 0) {
      // Said at the head of the first batch stdout takes again; a dropped batch leaves the
      // count for the next.
      reported = dropped
      dropped = 0
      const warning = `{"level":"warn","time":"${new Date().toISOString()}","msg":"log lines were dropped: stdout took nothing while more than ${MAX_PENDING_BYTES} bytes waited","bytesDropped":${reported}}\n`
      const head = Buffer.from(warning)
      reportHead = head.length
      bytes = report = Buffer.concat([head, bytes])
    }
    hand(bytes)
    report = undefined
  }
  /**
   * Giving up on stdout: the last write may have stopped inside a line (a pipe takes part of a
   * write); a newline, if the pipe takes one byte, ends it, so the next writer's first line
   * (another process on the same pipe) is not glued to it.
   */
  const endCutLine = (): void => {
    if (accepted > written) {
      try {
        writeSync(1, '\n')
      } catch {
        // the pipe is full: nothing can end the line
      }
    }
  }
  if (stdout !== undefined) {
    stdout.on('write', (n: number) => {
      written += n
    })
    stdout.on('error', () => {
      // EPIPE (the reader closed the pipe), or a full pipe at exit: nothing more can be written
      abandoned = true
    })
    // What is buffered is handed over when the process exits without close() (as pino's
    // logger does): a file or a terminal writes it at once; a pipe takes what it has room
    // for, and the rest, at the end of the log, is lost rather than waited for.
    process.once('exit', () => {
      exiting = true
      if (abandoned) {
        return
      }
      try {
        flush()
        stdout.flushSync()
      } catch {
        // a write under way, a full pipe, or stdout closed: nothing more can be done at exit
        endCutLine()
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
          // A UTF-16 code unit takes at most 3 bytes in UTF-8.
          if (line.length * 3 > FLUSH_BYTES - used) {
            flush()
            if (line.length * 3 > FLUSH_BYTES) {
              hand(Buffer.from(line))
              return
            }
          }
          used += chunk.write(line, used)
          if (!scheduled) {
            scheduled = true
            // unref: lines waiting do not keep the process alive; the exit hook writes them
            flushTimer = setTimeout(flush, FLUSH_MS).unref()
          }
        }
  const rank = RANK[level]
  const enabled = (at: Level): boolean => RANK[at] >= rank
  // The line is built here rather than by pino's serializer: it is the access log's cost on
  // every request, and its shape is fixed. The time string is made once per millisecond.
  let lastMs = -1
  let lastTime = ''
  const time = (): string => {
    const ms = Date.now()
    if (ms !== lastMs) {
      lastMs = ms
      lastTime = new Date(ms).toISOString()
    }
    return lastTime
  }
  const method = (at: Level) =>
    enabled(at)
      ? (msg: string, fields?: Record<string, unknown>): void => {
          let line = `{"level":"${at}","time":"${time()}","msg":${JSON.stringify(msg)}`
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
    request: enabled('info')
      ? (method, path, status, ms, client) => {
          const tail = client === undefined ? '}\n' : `,"client":${serialize(client)}}\n`
          write_(
            `{"level":"info","time":"${time()}","msg":"request","method":${serialize(method)},"path":${serialize(path)},"status":${serialize(status)},"ms":${serialize(ms)}${tail}`,
          )
        }
      : noop,
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
              // so that the exit hook does not wait for a full pipe.
              abandoned = true
              stdout.destroy()
              endCutLine()
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
