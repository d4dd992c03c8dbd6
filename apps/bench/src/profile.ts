// Where a server's CPU goes, from a sampled V8 CPU profile (node --cpu-prof) taken under load:
// a ratio measured at one moment in one process, which neighbours on a shared machine move far
// less than throughput.
//
// Each sample is given to the code that owns it: the nearest frame of a file of our own, of a
// package, or of the application, walking up from the leaf past Node's internals and V8's
// natives (a Map lookup, a buffer write, a string build belong to whoever asked for them).
// The header path is told apart first: a sample under Node's writing of the response head (or
// @hono/node-server's building of it) is the cost of the header fields, whoever owns the frame
// below.

/** The parts of a .cpuprofile this reads. */
export interface CpuProfile {
  nodes: {
    id: number
    callFrame: { functionName: string; url: string }
    children?: number[]
  }[]
  samples: number[]
  timeDeltas: number[]
}

/** Shares of the busy time (every sample but idle ones), from 0 to 1. */
export interface ProfileShares {
  /** slidelimit's packages (and memjs, the memcache store's client). */
  slidelimit: number
  /** Node's and @hono/node-server's writing of the response head: every field's cost. */
  headers: number
  /** The garbage collector. */
  gc: number
  /** Busy milliseconds in the profile. */
  busyMs: number
}

/** Files of slidelimit's own code, built or in source, in the workspace or installed. */
const SLIDELIMIT =
  /\/packages\/(core|store-memory|store-memcache|hono-middleware)\/|\/@slidelimit\/(core|store-memory|store-memcache|hono-middleware)\/|\/node_modules\/memjs\//
/**
 * Functions that write a response head: Node's (in node:_http_*), and @hono/node-server's header
 * building; a function of the same name elsewhere (a memcached request's `writeHead`) is not.
 */
const HEADER_FILES = /^node:_http_|\/@hono\/node-server\//
const HEADER_FUNCTIONS = new Set([
  'writeHead',
  '_storeHeader',
  'processHeader',
  'setHeader',
  'appendHeader',
  'buildOutgoingHttpHeaders',
])

/** Whether a frame is Node's or V8's own (not owned by any file of the application). */
const internal = (url: string): boolean => url === '' || url.startsWith('node:')

export function profileShares(profile: CpuProfile): ProfileShares {
  const byId = new Map(profile.nodes.map((node) => [node.id, node]))
  const parent = new Map<number, number>()
  for (const node of profile.nodes) {
    for (const child of node.children ?? []) {
      parent.set(child, node.id)
    }
  }
  // The owner of each node's samples, found once per node.
  const owners = new Map<number, 'slidelimit' | 'headers' | 'gc' | 'idle' | 'other'>()
  const ownerOf = (id: number): 'slidelimit' | 'headers' | 'gc' | 'idle' | 'other' => {
    const known = owners.get(id)
    if (known !== undefined) {
      return known
    }
    const leaf = byId.get(id)?.callFrame
    let owner: 'slidelimit' | 'headers' | 'gc' | 'idle' | 'other' = 'other'
    if (leaf?.functionName === '(idle)') {
      owner = 'idle'
    } else if (leaf?.functionName === '(garbage collector)') {
      owner = 'gc'
    } else {
      let decided = false
      for (let at: number | undefined = id; at !== undefined; at = parent.get(at)) {
        const frame = byId.get(at)?.callFrame
        if (frame === undefined) {
          break
        }
        if (HEADER_FUNCTIONS.has(frame.functionName) && HEADER_FILES.test(frame.url)) {
          owner = 'headers'
          break
        }
        if (!decided && !internal(frame.url)) {
          decided = true
          owner = SLIDELIMIT.test(frame.url) ? 'slidelimit' : 'other'
        }
      }
    }
    owners.set(id, owner)
    return owner
  }
  const time = { slidelimit: 0, headers: 0, gc: 0, idle: 0, other: 0 }
  profile.samples.forEach((id, i) => {
    time[ownerOf(id)] += profile.timeDeltas[i] ?? 0
  })
  const busy = time.slidelimit + time.headers + time.gc + time.other
  const share = (t: number): number => (busy === 0 ? 0 : t / busy)
  return {
    slidelimit: share(time.slidelimit),
    headers: share(time.headers),
    gc: share(time.gc),
    busyMs: busy / 1000,
  }
}
