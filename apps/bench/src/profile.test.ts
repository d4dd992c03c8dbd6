import { describe, expect, it } from 'vitest'
import { profileShares } from './profile.js'
import type { CpuProfile } from './profile.js'

const CORE = 'file:///app/packages/core/dist/limiter.js'
const HONO = 'file:///app/node_modules/hono/dist/hono-base.js'
const SERVER = 'file:///app/node_modules/@hono/node-server/dist/index.mjs'

/** A profile from a tree of [functionName, url, children] and the time spent in each node. */
function profileOf(tree: [string, string, ...unknown[]], time: Record<string, number>): CpuProfile {
  const nodes: CpuProfile['nodes'] = []
  const samples: number[] = []
  const timeDeltas: number[] = []
  const add = ([functionName, url, ...children]: [string, string, ...unknown[]]): number => {
    const id = nodes.length + 1
    const node = { id, callFrame: { functionName, url }, children: [] as number[] }
    nodes.push(node)
    for (const child of children) {
      node.children.push(add(child as [string, string, ...unknown[]]))
    }
    const spent = time[functionName] ?? 0
    if (spent > 0) {
      samples.push(id)
      timeDeltas.push(spent)
    }
    return id
  }
  add(tree)
  return { nodes, samples, timeDeltas }
}

describe('profileShares', () => {
  it('gives each sample to the nearest file of the application, past Node and V8 natives', () => {
    const profile = profileOf(
      [
        '(root)',
        '',
        ['(idle)', ''],
        ['(garbage collector)', ''],
        [
          'dispatch',
          HONO,
          // A Map lookup (native) in the limiter is the limiter's.
          ['decide', CORE, ['get', ''], ['write', 'node:buffer']],
          // The route called by the middleware is the application's, not the limiter's.
          [
            'middleware',
            'file:///app/packages/hono-middleware/dist/rate-limiter.js',
            ['route', HONO],
          ],
        ],
        // The head: Node's and the adapter's, whatever the leaf.
        [
          'responseViaCache',
          SERVER,
          ['writeHead', 'node:_http_server', ['checkInvalidHeaderChar', 'node:_http_common']],
        ],
      ],
      {
        '(idle)': 5000,
        '(garbage collector)': 1000,
        dispatch: 1000,
        decide: 500,
        get: 1000,
        write: 500,
        middleware: 500,
        route: 1500,
        responseViaCache: 1000,
        writeHead: 500,
        checkInvalidHeaderChar: 500,
      },
    )
    const shares = profileShares(profile)
    expect(shares.busyMs).toBe(8)
    expect(shares.slidelimit).toBeCloseTo(2.5 / 8)
    expect(shares.headers).toBeCloseTo(1 / 8)
    expect(shares.gc).toBeCloseTo(1 / 8)
  })

  it('tells the response head by its file, not only by its function name', () => {
    const profile = profileOf(
      [
        '(root)',
        '',
        [
          'send',
          'file:///app/packages/store-memcache/dist/counter-batch.js',
          [
            'writeHead',
            'file:///app/packages/store-memcache/dist/protocol.js',
            ['writeUInt32BE', 'node:internal/buffer'],
          ],
        ],
        ['writeHead', 'node:_http_server', ['_storeHeader', 'node:_http_outgoing']],
      ],
      { send: 1000, writeUInt32BE: 1000, _storeHeader: 2000 },
    )
    const shares = profileShares(profile)
    expect(shares.slidelimit).toBeCloseTo(0.5)
    expect(shares.headers).toBeCloseTo(0.5)
  })

  it('counts the memcache store client (memjs) and installed copies as slidelimit', () => {
    const profile = profileOf(
      [
        '(root)',
        '',
        [
          'responseHandler',
          'file:///app/node_modules/.pnpm/memjs@1.3.2/node_modules/memjs/lib/memjs/server.js',
        ],
        ['decide', 'file:///app/node_modules/@slidelimit/core/dist/limiter.js'],
        ['other', HONO],
      ],
      { responseHandler: 1000, decide: 1000, other: 2000 },
    )
    expect(profileShares(profile).slidelimit).toBeCloseTo(0.5)
  })

  it('answers zeros for a profile with no busy time', () => {
    expect(profileShares(profileOf(['(root)', '', ['(idle)', '']], { '(idle)': 10 }))).toEqual({
      slidelimit: 0,
      headers: 0,
      gc: 0,
      busyMs: 0,
    })
  })
})
