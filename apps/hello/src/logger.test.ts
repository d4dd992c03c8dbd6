// The logger's line shape, and that lines logged just before the process exits reach stdout
// (pino's destination writes them asynchronously). The process tests run the built dist/.

import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { createLogger } from './logger.js'
import { startServer } from './server.test-helpers.js'

const BUILT_LOGGER = new URL('../dist/logger.js', import.meta.url).href

/** Runs `body` as an ES module with `createLogger` in scope; stdout is read `readDelayMs` late. */
function runScript(
  body: string,
  readDelayMs = 0,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const source = `import { createLogger } from ${JSON.stringify(BUILT_LOGGER)}\n${body}`
  const child = spawn(process.execPath, ['--input-type=module', '-e', source], {
    cwd: fileURLToPath(new URL('..', import.meta.url)),
  })
  const stdout: Buffer[] = []
  let stderr = ''
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
  // A reader that starts late fills the pipe, so writes are still under way at exit.
  child.stdout.pause()
  setTimeout(() => {
    child.stdout.on('data', (d: Buffer) => stdout.push(d))
    child.stdout.resume()
  }, readDelayMs)
  return new Promise((resolve) => {
    child.on('close', (code) => {
      resolve({ code, stdout: Buffer.concat(stdout).toString(), stderr })
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

  it('writes what it holds when the process exits without close()', async () => {
    // pino's exit hook writes the buffered lines synchronously (nothing is under way yet: the
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
})
