// Test support: a TCP proxy in front of a real memcached that breaks the path on purpose.
//
// It frames the binary protocol in both directions, so that a fault can strike between two
// reply packets of one batch (cut, reset) or answer one request as memcached would in a rare
// case (NOT_STORED for a lost create race) without touching memcached's counters.

import { fork } from 'node:child_process'
import { createConnection, createServer } from 'node:net'
import type { Server, Socket } from 'node:net'
import { fileURLToPath } from 'node:url'
import {
  HEADER_BYTES,
  Opcode,
  RESPONSE_MAGIC,
  Status,
  encodeRequest,
  readPacket,
} from '../protocol.js'

/** What the proxy does to the path. */
export type Fault =
  /** Passes everything. */
  | { kind: 'none' }
  /**
   * Swallows every byte both ways on every connection, new ones included, and closes nothing:
   * a silent partition. The connections it silenced stay silent after healing.
   */
  | { kind: 'silent' }
  /** Stops listening and resets every connection: connection refused. */
  | { kind: 'refuse' }
  /** Holds every reply for `ms` milliseconds. */
  | { kind: 'delay'; ms: number }
  /**
   * The next reply forwards its first `packets` packets (and `bytes` bytes of the one after),
   * then nothing more ever comes on that connection: a reply cut in the middle of a batch.
   * One-shot.
   */
  | { kind: 'cut'; packets: number; bytes?: number }
  /**
   * The next reply forwards its first `packets` packets (and `bytes` bytes of the one after),
   * then the connection is reset. One-shot.
   */
  | { kind: 'reset'; packets: number; bytes?: number }
  /**
   * The next `times` increments (of counter `key` only, when given) are not sent to memcached
   * and are answered NOT_STORED, as memcached answers an increment that loses the race to
   * create its counter.
   */
  | { kind: 'not-stored'; times: number; key?: string }
  /**
   * Every reply is forwarded `bytes` bytes at a time, each piece in a write of its own a
   * millisecond after the one before (so that the client reads them apart), in order.
   */
  | { kind: 'trickle'; bytes: number }

/** A fault proxy, in this process or in a process of its own. */
export interface FaultPath {
  readonly port: number
  /** `127.0.0.1:<port>`. */
  readonly address: string
  /** Sets the fault; `{ kind: 'none' }` heals (silenced connections stay silent). */
  set: (fault: Fault) => Promise<void>
  close: () => Promise<void>
}

/** A fault proxy in this process. */
export interface FaultProxy extends FaultPath {
  /** Connections accepted so far. */
  readonly accepted: number
  /** Connections the client has not closed (nor half-closed) yet. */
  readonly open: number
}

/** A GET of a key nobody writes: memcached answers it "not found", in order, counting nothing. */
const STAND_IN_KEY = 'slidelimit-fault-proxy-stand-in'

interface Link {
  client: Socket
  upstream: Socket
  /** Dead for good: a silent partition or a cut reached it. */
  silenced: boolean
  requests: Buffer
  replies: Buffer
  /** Opaques of increments answered NOT_STORED, in order. */
  standIns: number[]
  /** When the last delayed reply is released (replies keep their order). */
  releaseAt: number
  /** The client closed or half-closed its side (a silenced link may not pass that on). */
  clientGone: boolean
  /** A cut or reset under way: the packets (and bytes of the next) still to forward. */
  breaking?: { kind: 'cut' | 'reset'; packets: number; bytes: number }
  /** Pieces of trickled replies still to write, in order; written one a millisecond. */
  trickle: Buffer[]
}

/** Writes a link's trickled pieces, one a millisecond, until none is left. */
function drip(link: Link): void {
  const piece = link.trickle[0]
  if (piece === undefined || link.client.destroyed) {
    link.trickle = []
    return
  }
  link.client.write(piece)
  setTimeout(() => {
    link.trickle.shift()
    drip(link)
  }, 1)
}

function replyNotStored(opaque: number): Buffer {
  const body = Buffer.from('Not stored.', 'latin1')
  const packet = Buffer.alloc(HEADER_BYTES + body.length)
  packet[0] = RESPONSE_MAGIC
  packet[1] = Opcode.increment
  packet.writeUInt16BE(Status.notStored, 6)
  packet.writeUInt32BE(body.length, 8)
  packet.writeUInt32BE(opaque, 12)
  body.copy(packet, HEADER_BYTES)
  return packet
}

/** Starts a proxy on a free loopback port in front of memcached at `target` (`host:port`). */
export async function startFaultProxy(target: string): Promise<FaultProxy> {
  const [host, portText] = [
    target.slice(0, target.lastIndexOf(':')),
    target.slice(target.lastIndexOf(':') + 1),
  ]
  const upstreamPort = Number(portText)
  let fault: Fault = { kind: 'none' }
  let notStoredLeft = 0
  let notStoredKey: string | undefined
  let accepted = 0
  const links = new Set<Link>()

  const onRequests = (link: Link, data: Buffer): void => {
    if (link.silenced || fault.kind === 'silent') {
      link.silenced = true
      return
    }
    link.requests = link.requests.length === 0 ? data : Buffer.concat([link.requests, data])
    const out: Buffer[] = []
    let at = 0
    for (let packet = readPacket(link.requests, at); packet !== undefined;) {
      const bytes = link.requests.subarray(at, at + packet.bytes)
      if (
        packet.opcode === Opcode.increment &&
        notStoredLeft > 0 &&
        (notStoredKey === undefined || packet.key.toString('latin1') === notStoredKey)
      ) {
        notStoredLeft--
        link.standIns.push(packet.opaque)
        out.push(encodeRequest(Opcode.get, STAND_IN_KEY, packet.opaque))
      } else {
        out.push(bytes)
      }
      at += packet.bytes
      packet = readPacket(link.requests, at)
    }
    link.requests = link.requests.subarray(at)
    if (out.length > 0) {
      link.upstream.write(out.length === 1 ? (out[0] as Buffer) : Buffer.concat(out))
    }
  }

  const onReplies = (link: Link, data: Buffer): void => {
    if (link.silenced || fault.kind === 'silent') {
      link.silenced = true
      return
    }
    link.replies = link.replies.length === 0 ? data : Buffer.concat([link.replies, data])
    const packets: Buffer[] = []
    let at = 0
    for (let packet = readPacket(link.replies, at); packet !== undefined;) {
      let bytes = link.replies.subarray(at, at + packet.bytes)
      if (
        packet.opcode === Opcode.get &&
        link.standIns.length > 0 &&
        link.standIns[0] === packet.opaque
      ) {
        link.standIns.shift()
        bytes = replyNotStored(packet.opaque)
      }
      packets.push(bytes)
      at += packet.bytes
      packet = readPacket(link.replies, at)
    }
    link.replies = link.replies.subarray(at)
    if (packets.length === 0 && link.breaking === undefined) {
      return
    }
    const current = fault
    if (link.breaking === undefined && (current.kind === 'cut' || current.kind === 'reset')) {
      fault = { kind: 'none' } // one-shot: this connection takes it
      link.breaking = { kind: current.kind, packets: current.packets, bytes: current.bytes ?? 0 }
    }
    const breaking = link.breaking
    if (breaking !== undefined) {
      // Forward the packets still due (the replies may come in several reads), then break.
      const due = packets.splice(0, breaking.packets)
      breaking.packets -= due.length
      if (breaking.packets === 0 && breaking.bytes > 0) {
        const next = packets[0] ?? link.replies
        if (next.length < breaking.bytes) {
          link.client.write(Buffer.concat(due))
          return // wait for the bytes of the packet to cut
        }
        due.push(next.subarray(0, breaking.bytes))
      }
      if (due.length > 0) {
        link.client.write(Buffer.concat(due))
      }
      if (breaking.packets > 0) {
        return
      }
      if (breaking.kind === 'cut') {
        link.silenced = true
      } else {
        link.client.resetAndDestroy()
        link.upstream.destroy()
      }
      return
    }
    const bytes = packets.length === 1 ? (packets[0] as Buffer) : Buffer.concat(packets)
    if (current.kind === 'trickle') {
      const idle = link.trickle.length === 0
      for (let i = 0; i < bytes.length; i += current.bytes) {
        link.trickle.push(bytes.subarray(i, i + current.bytes))
      }
      if (idle) {
        drip(link)
      }
      return
    }
    const delay = current.kind === 'delay' ? current.ms : 0
    const now = performance.now()
    if (delay === 0 && link.releaseAt <= now) {
      link.client.write(bytes)
      return
    }
    link.releaseAt = Math.max(now + delay, link.releaseAt)
    setTimeout(() => {
      if (!link.client.destroyed) {
        link.client.write(bytes)
      }
    }, link.releaseAt - now)
  }

  // Half-open allowed both ways: a silenced connection ignores a FIN too, as a real partition
  // does (it never answers one); the others pass it on.
  const server: Server = createServer({ allowHalfOpen: true }, (client) => {
    accepted++
    const upstream = createConnection({ host, port: upstreamPort, allowHalfOpen: true })
    const link: Link = {
      client,
      upstream,
      silenced: fault.kind === 'silent',
      requests: Buffer.alloc(0),
      replies: Buffer.alloc(0),
      standIns: [],
      releaseAt: 0,
      clientGone: false,
      trickle: [],
    }
    links.add(link)
    client.on('data', (data: Buffer) => {
      onRequests(link, data)
    })
    upstream.on('data', (data: Buffer) => {
      onReplies(link, data)
    })
    const end = (): void => {
      links.delete(link)
      client.destroy()
      upstream.destroy()
    }
    client.on('error', end)
    client.on('close', end)
    client.on('end', () => {
      link.clientGone = true
      if (!link.silenced) {
        upstream.end()
      }
    })
    upstream.on('end', () => {
      if (!link.silenced) {
        client.end()
      }
    })
    upstream.on('error', () => {
      client.resetAndDestroy()
      end()
    })
    upstream.on('close', end)
  })

  const listen = (port: number): Promise<void> =>
    new Promise((resolve, reject) => {
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => {
        server.off('error', reject)
        resolve()
      })
    })
  await listen(0)
  const address = server.address()
  const port = typeof address === 'object' && address !== null ? address.port : 0
  let listening = true

  return {
    port,
    address: `127.0.0.1:${port}`,
    get accepted() {
      return accepted
    },
    get open() {
      let open = 0
      for (const link of links) {
        if (!link.clientGone) {
          open++
        }
      }
      return open
    },
    set: async (next) => {
      fault = next
      if (next.kind === 'silent') {
        for (const link of links) {
          link.silenced = true
        }
      }
      if (next.kind === 'not-stored') {
        notStoredLeft = next.times
        notStoredKey = next.key
      }
      if (next.kind === 'refuse' && listening) {
        listening = false
        const closed = new Promise<void>((resolve) => {
          server.close(() => {
            resolve()
          })
        })
        for (const link of links) {
          link.client.resetAndDestroy()
          link.upstream.destroy()
        }
        await closed
      } else if (next.kind !== 'refuse' && !listening) {
        await listen(port)
        listening = true
      }
    },
    close: async () => {
      for (const link of links) {
        link.client.destroy()
        link.upstream.destroy()
      }
      if (listening) {
        listening = false
        await new Promise<void>((resolve) => {
          server.close(() => {
            resolve()
          })
        })
      }
    },
  }
}

/**
 * Starts a fault proxy in a Node process of its own, so that a test process busy sending load
 * does not delay the path it is testing (a proxy in that process would, and a 50 ms deadline
 * would then see an outage that is not there).
 */
export function spawnFaultProxy(target: string): Promise<FaultPath> {
  const main = fileURLToPath(new URL('./fault-proxy-process.js', import.meta.url))
  const child = fork(main, [target], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  const pending = new Map<number, () => void>()
  let requests = 0
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => {
      resolve()
    })
  })
  return new Promise((resolve, reject) => {
    child.once('error', reject)
    child.once('exit', (code) => {
      reject(new Error(`the fault proxy process exited with ${String(code)}`))
    })
    child.on('message', (message: { type: string; id?: number; port?: number }) => {
      if (message.type === 'ready' && message.port !== undefined) {
        const port = message.port
        resolve({
          port,
          address: `127.0.0.1:${port}`,
          set: (fault) =>
            new Promise<void>((done) => {
              const id = ++requests
              pending.set(id, done)
              child.send({ type: 'set', id, fault })
            }),
          close: async () => {
            if (child.exitCode === null && child.signalCode === null) {
              child.kill('SIGKILL')
            }
            await exited
          },
        })
      } else if (message.type === 'done' && message.id !== undefined) {
        pending.get(message.id)?.()
        pending.delete(message.id)
      }
    })
  })
}
