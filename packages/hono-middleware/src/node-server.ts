// The one place that relies on @hono/node-server's internals (an optional peer dependency;
// versions 1.19 and 2.x are tested in node-server.test.ts).
//
// Its light Response keeps `[status, body, headers]` under a symbol described `cache` until
// someone asks for more, and when `headers` is a plain object (or absent) hands it to Node's
// `writeHead` as it is. Adding the rate-limit fields to that object costs a fraction of what a
// `Headers` object costs (building it, then converting it for Node). Nothing here is public
// API, so the shape is checked the first time the symbol is found on a class of response: a
// class whose cache does not look like `[number, body, headers]` is never used this way again,
// and its responses take the public path (`res.headers`). Responses of any other class (the
// global Response, another server adapter) take the public path too.

/** A light response's parts: status, body, headers (a plain object, a Headers, or undefined). */
export type LightParts = [number, unknown, unknown]

/** Responses of a class looked at without finding the symbol before that class is given up. */
const LOOKS = 64

interface ClassState {
  /** The symbol, once found and checked; null once given up. */
  marker: symbol | null | undefined
  looks: number
}

const classes = new WeakMap<object, ClassState>()
// The last class seen, checked first: one response class per process is the common case.
let lastClass: object | undefined
let lastState: ClassState | undefined

function stateOf(res: Response): ClassState {
  const cls = (res as { constructor?: unknown }).constructor
  const key = typeof cls === 'function' ? cls : Object.prototype
  if (key === lastClass) {
    return lastState as ClassState
  }
  let state = classes.get(key)
  if (state === undefined) {
    state = { marker: undefined, looks: 0 }
    classes.set(key, state)
  }
  lastClass = key
  lastState = state
  return state
}

const isParts = (value: unknown): value is LightParts =>
  Array.isArray(value) && value.length === 3 && typeof value[0] === 'number'

/**
 * The parts of a light @hono/node-server response, to change in place; undefined for any other
 * response (or a light one already turned into a full Response).
 */
export function lightParts(res: Response): LightParts | undefined {
  const state = stateOf(res)
  let marker = state.marker
  if (marker === null) {
    return undefined
  }
  if (marker === undefined) {
    const found = Object.getOwnPropertySymbols(res).find((s) => s.description === 'cache')
    if (found === undefined) {
      state.looks++
      if (state.looks >= LOOKS) {
        state.marker = null
      }
      return undefined
    }
    // Checked once: a class whose cache has another shape is never written to.
    if (!isParts((res as unknown as Record<symbol, unknown>)[found])) {
      state.marker = null
      return undefined
    }
    state.marker = marker = found
  }
  const parts = (res as unknown as Record<symbol, unknown>)[marker]
  return isParts(parts) ? parts : undefined
}

/** What the adapter knows of a response's class (for tests): found, given up, or looking. */
export function lightPartsState(res: Response): 'found' | 'given up' | 'looking' {
  const marker = stateOf(res).marker
  return marker === null ? 'given up' : marker === undefined ? 'looking' : 'found'
}
