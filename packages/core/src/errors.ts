// Errors raised by slidelimit. Every error has a stable `code` so callers can branch on it
// without matching message text, and a `name` taken from its class.

/** The base class of every error slidelimit throws. */
export class RateLimitError extends Error {
  /** A stable identifier, `ERR_SLIDELIMIT_*`. */
  readonly code: string

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.name = new.target.name
  }
}

/**
 * A bad option, thrown when a limiter, store or middleware is constructed.
 * `option` names the option and `value` holds what was given.
 */
export class ConfigError extends RateLimitError {
  readonly option: string
  readonly value: unknown

  constructor(option: string, value: unknown, expected: string) {
    super(
      'ERR_SLIDELIMIT_CONFIG',
      `Invalid option ${option}: got ${describeValue(value)}, expected ${expected}`,
    )
    this.option = option
    this.value = value
  }
}

/** A store call failed or missed its deadline; `cause` holds the client's error, if any. */
export class StoreError extends RateLimitError {
  /** The store's name, e.g. `memory` or `memcache`. */
  readonly store: string

  constructor(
    store: string,
    message: string,
    options?: { cause?: unknown },
    code = 'ERR_SLIDELIMIT_STORE',
  ) {
    super(code, `${store} store: ${message}`, options)
    this.store = store
  }
}

/**
 * The store answers, but one key's data is unusable (a counter holding text that something else
 * wrote). Only the requester of that key is affected: a FailoverStore decides that one request
 * as its failure mode says and keeps every other key on the store. The store has already
 * removed the bad data, so the key's next call starts afresh.
 */
export class StoreKeyError extends StoreError {
  /** The store key (the limiter's prefix and the requester id) whose data was unusable. */
  readonly key: string

  constructor(store: string, key: string, message: string, options?: { cause?: unknown }) {
    super(store, message, options, 'ERR_SLIDELIMIT_STORE_KEY')
    this.key = key
  }
}

/** The store has no `operation` (an optional part of the Store contract that a caller needs). */
export function unsupported(store: string, operation: string): StoreError {
  return new StoreError(
    store,
    `has no ${operation} operation (an optional part of the Store contract)`,
    undefined,
    'ERR_SLIDELIMIT_STORE_UNSUPPORTED',
  )
}

/**
 * Whatever a store threw or rejected with, as a StoreError: a StoreError as it is, anything else
 * (a RangeError from a client library, a string) wrapped with the original as `cause`.
 */
export function asStoreError(store: string, error: unknown): StoreError {
  if (error instanceof StoreError) {
    return error
  }
  const message = error instanceof Error ? `${error.name}: ${error.message}` : String(error)
  return new StoreError(store, `failed: ${message}`, { cause: error })
}

/** Renders a value for an error message: strings quoted, long values cut short. */
export function describeValue(value: unknown): string {
  let text: string
  if (typeof value === 'string') {
    text = JSON.stringify(value)
  } else if (typeof value === 'function') {
    text = 'a function'
  } else if (typeof value === 'bigint') {
    text = `${value.toString()}n`
  } else {
    try {
      // JSON.stringify answers undefined for undefined and symbols, whatever its type says.
      const json: unknown = JSON.stringify(value)
      text = typeof json === 'string' ? json : String(value)
    } catch {
      text = Object.prototype.toString.call(value)
    }
  }
  return text.length > 80 ? `${text.slice(0, 77)}...` : text
}
