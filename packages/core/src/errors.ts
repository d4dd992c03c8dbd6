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
