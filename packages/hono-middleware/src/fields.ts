// Adding header fields to a response, cheaply.
//
// Building a `Headers` object (what `c.header()` does) costs several times more than the fields
// themselves. So where the response is a light @hono/node-server one (node-server.ts), the
// fields are added to its plain header object; anywhere else they are set on
// `response.headers` (on a copy when those are immutable).

import { lightParts } from './node-server.js'

/** Header fields to add: name to value. */
export type Fields = Record<string, string>

/** What @hono/node-server sends for a body without a content type. */
const DEFAULT_CONTENT_TYPE = 'text/plain; charset=UTF-8'

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
