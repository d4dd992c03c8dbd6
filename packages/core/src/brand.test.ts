import { describe, expect, it } from 'vitest'
import { isLimiter } from './brand.js'
import { createLimiter } from './limiter.js'
import { MapStore } from './reference-model.test-helpers.js'

describe('isLimiter', () => {
  it('recognises a limiter of this copy of core', () => {
    expect(isLimiter(createLimiter({ store: new MapStore(Date.now) }))).toBe(true)
  })

  it("recognises another copy's limiter by its brand, not by its class", () => {
    // What a second installed copy of @slidelimit/core makes: another class, the same brand.
    class OtherCopyLimiter {
      readonly limit = 100
    }
    Object.defineProperty(OtherCopyLimiter.prototype, Symbol.for('slidelimit.limiter'), {
      value: true,
    })
    expect(isLimiter(new OtherCopyLimiter())).toBe(true)
  })

  it('refuses anything else', () => {
    for (const value of [
      undefined,
      null,
      0,
      'limiter',
      {},
      { consume: () => undefined },
      { [Symbol.for('slidelimit.limiter')]: 'yes' },
      { [Symbol('slidelimit.limiter')]: true },
    ]) {
      expect(isLimiter(value)).toBe(false)
    }
  })
})
