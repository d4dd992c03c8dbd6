import memjs from 'memjs'
import { describe, expect, it } from 'vitest'
import { MEMJS_VERSION, checkMemjs } from './memjs-adapter.js'

describe('the memjs adapter', () => {
  it('accepts the pinned memjs', () => {
    expect(() => {
      checkMemjs()
    }).not.toThrow()
    expect(MEMJS_VERSION).toBe('1.3.2')
  })

  it('refuses another memjs version, saying which and why', () => {
    expect(() => {
      checkMemjs(memjs, '1.3.3')
    }).toThrow(
      '@slidelimit/store-memcache needs memjs 1.3.2 exactly, whose internals it uses: memjs 1.3.3 is installed',
    )
  })

  it('refuses a memjs whose Server lacks what the adapter uses', () => {
    class Server {
      sock(): void {}
      close(): void {}
    }
    expect(() => {
      checkMemjs({ Server }, MEMJS_VERSION)
    }).toThrow(/memjs.Server.prototype.respond is not a function; .*error is not a function/)
    expect(() => {
      checkMemjs({}, MEMJS_VERSION)
    }).toThrow(/memjs.Server.prototype.sock is not a function/)
  })

  it('refuses a memjs whose servers lack the fields the adapter resets', () => {
    class Server {
      sock(): void {}
      respond(): void {}
      error(): void {}
      close(): void {}
      responseHandler(): void {}
    }
    expect(() => {
      checkMemjs({ Server }, MEMJS_VERSION)
    }).toThrow(/instances lack responseBuffer, connected or connectCallbacks/)
  })
})
