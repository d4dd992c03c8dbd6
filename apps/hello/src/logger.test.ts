// The logger's line shape, and that lines logged just before the process exits reach stdout
// (sonic-boom writes them asynchronously). The process tests run the built dist/.

import { spawn } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { createLogger } from './logger.js'
import { startServer } from './server.test-helpers.js'

const BUILT_LOGGER = new URL('../dist/logger.js', import.meta.url).href

/**
 * Runs `body` as an ES module with `createLogger` in scope; stdout is read `readDelayMs` late
 * (never with Infinity). A script still running after `killAfterMs` is killed (code null).
 */
function runScript(
  body: string,
  readDelayMs = 0,
  killAfterMs = 20_000,
): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const started = performance.now()
  const source = `import { createLogger } from ${JSON.stringify(BUILT_LOGGER)}\n${body}`
  const child = spawn(process.execPath, ['--input-type=module', '-e', source], {
    cwd: fileURLToPath(new URL('..', import.meta.url)),
  })
  const stdout: Buffer[] = []
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  // A reader that starts late fills the pipe, so writes are still under way at exit.
  child.stdout.pause()
  const reader = Number.isFinite(readDelayMs)
    ? setTimeout(() => {
        child.stdout.on('data', (d: Buffer) => stdout.push(d))
        child.stdout.resume()
      }, readDelayMs)
    : undefined
  const killer = setTimeout(() => child.kill('SIGKILL'), killAfterMs)
  return new Promise((resolve) => {
    child.on('exit', (code) => {
      clearTimeout(killer)
      clearTimeout(reader)
      const ms = performance.now() - started
      // A pipe nobody reads holds what was written: drain it so that 'close' comes.
      child.stdout.resume()
      child.on('close', () => {
        resolve({ code, stdout: Buffer.concat(stdout).toString(), stderr, ms })
      })
    })
  })
}

describe('createLogger', () => {
  it('writes one JSON line: level name, ISO time, message, then the fields in order', () => {
    const lines: string[] = []
    const logger = createLogger('info', (line) => lines.push(line))
    logger.info('request', { method: 'GET', path: '/', status: 200, ms: 0.42, client: undefined })
    logger.warn('memcached connection lost', { server: '127.0.0.1:11211', error: 'ECONNRESET' })
    expect(lines).toHaveLength(2)
    for (const line of lines) {
      expect(line.endsWith('}\n')).toBe(true)
      expect(line.slice(0, -1)).not.toContain('\n')
    }
    const first = JSON.parse(lines[0] as string) as Record<string, unknown>
    expect(Object.keys(first)).toEqual(['level', 'time', 'msg', 'method', 'path', 'status', 'ms'])
    expect(first).toMatchObject({ level: 'info', msg: 'request', status: 200, ms: 0.42 })
    expect(new Date(first.time as string).toISOString()).toBe(first.time)
    expect(lines[1]).toMatch(/^\{"level":"warn","time":"[^"]+","msg":"memcached connection lost",/)
  })

  it('writes the access line from request() exactly as info() writes it', () => {
    const lines: string[] = []
    const logger = createLogger('info', (line) => lines.push(line))
    const cases: [string, string, number, number, string | undefined][] = [
      ['GET', '/', 200, 0.42, '203.0.113.7'],
      ['POST', '/a"b\\c\n', 429, 12, undefined],
      ['GET', '/\ud800', 503, NaN, '2001:db8::/56'],
    ]
    for (const [method, path, status, ms, client] of cases) {
      logger.request(method, path, status, ms, client)
      logger.info('request', { method, path, status, ms, client })
    }
    const withoutTime = (line: string): string => line.replace(/"time":"[^"]+"/, '')
    for (let i = 0; i < lines.length; i += 2) {
      expect(withoutTime(lines[i] as string)).toBe(withoutTime(lines[i + 1] as string))
      expect(() => JSON.parse(lines[i] as string) as unknown).not.toThrow()
    }
    const silent: string[] = []
    createLogger('warn', (line) => silent.push(line)).request('GET', '/', 200, 1)
    expect(silent).toEqual([])
  })

  it('writes every line to a file, with close() and at an exit without it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'slidelimit-log-'))
    try {
      for (const ending of ['await logger.close()\nprocess.exit(0)', 'process.exit(0)']) {
        const file = join(dir, 'out.log')
        const fd = openSync(file, 'w')
        const source = `import { createLogger } from ${JSON.stringify(BUILT_LOGGER)}
          const logger = createLogger('info')
          for (let i = 0; i < 20000; i++) logger.request('GET', '/' + i, 200, 0.5, 'c')
          ${ending}`
        const child = spawn(process.execPath, ['--input-type=module', '-e', source], {
          stdio: ['ignore', fd, 'inherit'],
        })
        closeSync(fd)
        expect(await new Promise((done) => child.on('exit', done))).toBe(0)
        const lines = readFileSync(file, 'utf8').trimEnd().split('\n')
        expect(lines).toHaveLength(20000)
        lines.forEach((line, i) => {
          expect((JSON.parse(line) as { path: string }).path).toBe(`/${i}`)
        })
      }
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('writes valid JSON whatever the values hold: quotes, control characters, lone surrogates, cycles', () => {
    const lines: string[] = []
    const logger = createLogger('info', (line) => lines.push(line))
    const cycle: Record<string, unknown> = {}
    cycle.self = cycle
    const odd = ['a"b', 'back\\slash', 'new\nline', '\u0000', '\ud800', 'é/ok', '😀']
    logger.info('odd "message"\n', {
      ...Object.fromEntries(odd.map((value, i) => [`k${i}`, value])),
      nan: NaN,
      big: 10n,
      fn: () => 1,
      cycle,
    })
    const parsed = JSON.parse(lines[0] as string) as Record<string, unknown>
    expect(parsed.msg).toBe('odd "message"\n')
    odd.forEach((value, i) => {
      expect(parsed[`k${i}`]).toBe(value)
    })
    expect(parsed).toMatchObject({ nan: null, big: '10', fn: null, cycle: '[object Object]' })
  })

  it('writes nothing below its level and says which levels it writes', () => {
    const lines: string[] = []
    const warn = createLogger('warn', (line) => lines.push(line))
    warn.debug('d')
    warn.info('i')
    expect(lines).toEqual([])
    expect([warn.enabled('info'), warn.enabled('warn'), warn.enabled('error')]).toEqual([
      false,
      true,
      true,
    ])
    const silent = createLogger('silent', (line) => lines.push(line))
    silent.error('e')
    expect(lines).toEqual([])
    expect(silent.enabled('error')).toBe(false)
    expect(warn.level).toBe('warn')
  })

  it('drops a line logged after close(), never crashing the process', async () => {
    const { code, stdout, stderr } = await runScript(
      `const logger = createLogger('info')
       logger.info('before')
       await logger.close()
       logger.info('after close')
       setTimeout(() => process.exit(0), 100)`,
      0,
    )
    expect(stderr).toBe('')
    expect(code).toBe(0)
    expect(stdout).toMatch(/^\{"level":"info","time":"[^"]+","msg":"before"\}\n$/)
  })

  it('writes every line logged before close() to stdout, even when stdout is slow to read', async () => {
    // About 4 MB: far more than a pipe holds, so writes are under way when close() is called.
    const { code, stdout, stderr } = await runScript(
      `const logger = createLogger('info')
       for (let i = 0; i < 40000; i++) logger.info('line', { i, pad: 'x'.repeat(60) })
       logger.info('stopped')
       void logger.close().then(() => process.exit(0))`,
      300,
    )
    expect(stderr).toBe('')
    expect(code).toBe(0)
    const lines = stdout.split('\n')
    expect(lines.pop()).toBe('')
    expect(lines).toHaveLength(40001)
    lines.slice(0, -1).forEach((line, i) => {
      expect(line).toContain(`"msg":"line","i":${i},`)
    })
    expect(lines.at(-1)).toMatch(/"msg":"stopped"\}$/)
  })

  // About 4 MB into a pipe that holds 64 KB and is never read. A write blocked in one of
  // libuv's threads would hold the exit forever (the SIGTERM that never ended).
  it.each([
    ['close() gives up', 'await logger.close(500)\n       process.exit(0)', 0],
    ['no close(): the exit hook meets a full pipe', 'process.exit(4)', 4],
  ])('exits on time when stdout is a pipe nobody reads: %s', async (_, ending, exitCode) => {
    const { code, stderr, ms } = await runScript(
      `const logger = createLogger('info')
       for (let i = 0; i < 40000; i++) logger.info('line', { i, pad: 'x'.repeat(60) })
       await new Promise((done) => setTimeout(done, 300))
       ${ending}`,
      Infinity,
      10_000,
    )
    expect(stderr).toBe('')
    expect(code).toBe(exitCode)
    expect(ms).toBeLessThan(5_000)
  })

  it('holds at most 16 MB for a reader that stopped, then says how much it dropped', async () => {
    // 64 MB of lines while nobody reads: memory stays bounded, the first lines are kept, and
    // once the reader is back a warning counts the bytes dropped.
    const { code, stdout, stderr } = await runScript(
      `const logger = createLogger('info')
       const pad = 'x'.repeat(1000)
       for (let i = 0; i < 64000; i++) {
         logger.info('line', { i, pad })
         if (i % 1000 === 0) await new Promise((done) => setImmediate(done))
       }
       const held = process.memoryUsage().arrayBuffers
       await new Promise((done) => setTimeout(done, 1500))
       logger.info('after', { held })
       await logger.close(5000)
       process.exit(0)`,
      1200,
      20_000,
    )
    expect(stderr).toBe('')
    expect(code).toBe(0)
    const lines = stdout
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>)
    expect(lines[0]).toMatchObject({ msg: 'line', i: 0 })
    const kept = lines.filter((line) => line.msg === 'line')
    expect(kept.length).toBeGreaterThan(10_000)
    expect(kept.length).toBeLessThan(40_000)
    // One warning, or a few if the reader came back while lines were still being logged.
    const warnings = lines.filter((line) => String(line.msg).startsWith('log lines were dropped'))
    expect(warnings.length).toBeGreaterThan(0)
    expect(warnings.every((line) => line.level === 'warn')).toBe(true)
    const bytesDropped = warnings.reduce((sum, line) => sum + (line.bytesDropped as number), 0)
    // Every line not written was counted, to the byte.
    const lineBytes = (i: number): number =>
      Buffer.byteLength(
        `{"level":"info","time":"2026-01-01T00:00:00.000Z","msg":"line","i":${i},"pad":""}\n`,
      ) + 1000
    const all = Array.from({ length: 64_000 }, (_, i) => lineBytes(i)).reduce((a, b) => a + b)
    const written = kept.reduce((sum, line) => sum + lineBytes(line.i as number), 0)
    expect(bytesDropped).toBe(all - written)
    const after = lines.at(-1) as { msg: string; held: number }
    expect(after.msg).toBe('after')
    expect(after.held).toBeLessThan(40 * 1024 * 1024)
  })

  it('holds only the bytes of its lines for a stopped reader, however small each batch', async () => {
    // One line per batch (a quiet server): each held batch must cost its own bytes, not a
    // whole 64 KB chunk (300 batches held 19 MB that way).
    const { code, stdout, stderr } = await runScript(
      `const logger = createLogger('info')
       for (let i = 0; i < 20000; i++) logger.info('fill', { i, pad: 'x'.repeat(60) })
       await new Promise((done) => setTimeout(done, 100))
       const base = process.memoryUsage().arrayBuffers
       for (let i = 0; i < 300; i++) {
         logger.info('quiet', { i })
         await new Promise((done) => setTimeout(done, 11))
       }
       const held = process.memoryUsage().arrayBuffers - base
       logger.info('held', { held })
       await logger.close(5000)
       process.exit(0)`,
      4500,
      20_000,
    )
    expect(stderr).toBe('')
    expect(code).toBe(0)
    const last = JSON.parse(stdout.trimEnd().split('\n').at(-1) as string) as { held: number }
    expect(last.held).toBeLessThan(4 * 1024 * 1024)
  })

  it('writes what it holds when the process exits without close()', async () => {
    // The exit hook writes the buffered lines synchronously (nothing is under way yet: the
    // first write starts after this tick).
    const { code, stdout } = await runScript(
      `const logger = createLogger('info')
       logger.info('one')
       logger.info('two')
       process.exit(3)`,
    )
    expect(code).toBe(3)
    expect(stdout).toMatch(/"msg":"one"\}\n.*"msg":"two"\}\n$/)
  })

  it('the server logs every request, then shutting down and stopped, on SIGTERM', async () => {
    const server = await startServer({ RATE_LIMIT: '1000' })
    await Promise.all(Array.from({ length: 200 }, () => fetch(server.url)))
    expect(await server.stop('SIGTERM')).toBe(0)
    const lines = server
      .output()
      .trimEnd()
      .split('\n')
      .map((line) => JSON.parse(line) as Record<string, unknown>)
    expect(lines.filter((line) => line.msg === 'request')).toHaveLength(200)
    expect(lines.slice(-2).map((line) => line.msg)).toEqual(['shutting down', 'stopped'])
  })

  it('the server stops on SIGTERM within a second or two while its stdout is not read', async () => {
    const server = await startServer({ RATE_LIMIT: '1000000' })
    // The reader stops; a few thousand access lines fill the socket's buffer and more wait.
    server.process.stdout?.pause()
    for (let round = 0; round < 40; round++) {
      await Promise.all(Array.from({ length: 100 }, () => fetch(server.url).then((r) => r.text())))
    }
    const signalled = performance.now()
    const exited = new Promise<number | null>((done) => server.process.once('exit', done))
    server.process.kill('SIGTERM')
    const code = await Promise.race([
      exited,
      new Promise<'hung'>((done) =>
        setTimeout(() => {
          done('hung')
        }, 8_000),
      ),
    ])
    const ms = performance.now() - signalled
    server.process.stdout?.resume()
    if (code === 'hung') {
      server.process.kill('SIGKILL')
    }
    await server.stop()
    expect(code).toBe(0)
    // The drain has nothing in flight; close() gives stdout 1 s.
    expect(ms).toBeLessThan(4_000)
  })
})
