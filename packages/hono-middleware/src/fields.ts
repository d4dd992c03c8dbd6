// Adding header fields to a response, cheaply.
//
// @hono/node-server answers with a light Response that keeps [status, body, headers] until
// someone asks for more; when `headers` is a plain object (or absent) it is handed to Node's
// `writeHead` as it is. Building a `Headers` object (what `c.header()` does), or calling Node's
// `setHeader`, costs several times more than the fields themselves. So where the response is
// such a light one, the fields are added to its plain object; anywhere else they are set on
// `response.headers` (on a copy when those are immutable).

/** Header fields to add: name to value. */
export type Fields = Record<string, string>

/** What @hono/node-server sends for a body without a content type. */
const DEFAULT_CONTENT_TYPE = 'text/plain; charset=UTF-8'
/** Responses looked at for the light-response marker before giving up on finding one. */
const LOOKS = 64

let marker: symbol | null | undefined
let looks = 0

/** The [status, body, headers] of a light @hono/node-server response, when it is one. */
function lightParts(res: Response): unknown[] | undefined {
  if (marker === null) {
    return undefined
  }
  if (marker === undefined) {
    marker = Object.getOwnPropertySymbols(res).find((s) => s.description === 'cache')
    if (marker === undefined) {
      looks++
      if (looks >= LOOKS) {
        marker = null
      }
      return undefined
    }
  }
  const parts = (res as unknown as Record<symbol, unknown>)[marker]
  return Array.isArray(parts) && parts.length === 3 && typeof parts[0] === 'number'
    ? (parts as unknown[])
    : undefined
}

const DEFAULT_HEADERS: Fields = { 'content-type': DEFAULT_CONTENT_TYPE }

/** A new object with the fields of `a`, then of `b` (loops: spreading is many times slower). */
function merge(a: Fields | undefined, b: Fields): Fields {
  const out: Fields = {}
  for (const name in a) {
    out[name] = a[name] as string
  }
  for (const name in b) {
    out[name] = b[name] as string
  }
  return out
}

/** Adds `fields` to `res`; returns it, or a copy when its headers cannot change. */
export function withFields(res: Response, fields: Fields): Response {
  const parts = lightParts(res)
  if (parts !== undefined) {
    const headers = parts[2]
    if (headers === undefined || headers === null) {
      parts[2] = merge(
        parts[1] === null || parts[1] === undefined ? undefined : DEFAULT_HEADERS,
        fields,
      )
      return res
    }
    if (typeof headers === 'object' && !Array.isArray(headers) && !(headers instanceof Headers)) {
      // A new object: the route's may be shared between responses.
      parts[2] = merge(headers as Fields, fields)
      return res
    }
  }
  try {
    for (const name in fields) {
      res.headers.set(name, fields[name] as string)
    }
    return res
  } catch {
    // Immutable headers (Response.redirect, a fetched response): answer with a copy.
    const copy = new Response(res.body, res)
    for (const name in fields) {
      copy.headers.set(name, fields[name] as string)
    }
    return copy
  }
}
