import { describe, expect, it } from 'vitest'
import { isLimiter, isStoreError } from './brand.js'
import { ConfigError, StoreError } from './errors.js'
import { StoreUnavailableError } from './failover-store.js'
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

describe('isStoreError', () => {
  it('knows a store error of any copy of core by its code, and nothing else', () => {
    expect(isStoreError(new StoreError('memcache', 'down'))).toBe(true)
    expect(isStoreError(new StoreUnavailableError('memcache'))).toBe(true)
    // Another copy's error: another class, the same code.
    expect(isStoreError(Object.assign(new Error('x'), { code: 'ERR_SLIDELIMIT_STORE_KEY' }))).toBe(
      true,
    )
    for (const other of [
      new ConfigError('limit', 0, 'a whole number'),
      new Error('ERR_SLIDELIMIT_STORE'),
      { code: 'ERR_SLIDELIMIT_STOREFRONT' },
      { code: 42 },
      null,
      'ERR_SLIDELIMIT_STORE',
    ]) {
      expect(isStoreError(other)).toBe(false)
    }
  })
})
