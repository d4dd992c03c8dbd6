// The one module that touches memjs's internals.
//
// What memjs is used for: one `memjs.Server` per memcached server connects, authenticates with
// SASL when credentials are given (options, or MEMCACHIER_* / MEMCACHE_* variables) and frames
// the replies. Everything else is this package's own: request encoding (protocol.ts), request
// ids, deadlines, batching and retries (connection.ts, memcache-store.ts). memjs's Client is not
// used at all: its `seq` turns negative after 2^31 requests (`seq &= 0xffffffff`) and
// `writeUInt32BE` then throws, and its deadline queue holds `process.hrtime` milliseconds.
//
// memjs.Server is used through internals that its type declarations leave out, and its socket
// handling has gaps this adapter closes, each found by a fault test:
// - `responseBuffer` is per server, not per socket, and is not cleared when a socket dies: bytes
//   of a reply cut in the middle would be glued in front of the next socket's replies and break
//   its framing for good. It is cleared for every new socket.
// - Its 'close' and 'error' listeners clear or destroy whichever socket is current when they
//   fire, which may be a newer one. They are replaced by listeners that act on their own socket.
// - Its connect timeout `end()`s a socket without destroying it, and `Server.write` keeps a
//   deadline queue. Neither is used: a socket not ready within `connectTimeoutMs` is destroyed,
//   and connection.ts drops a socket that misses a request's deadline.
// - A callback waiting for a socket may be called with a newer socket; it never writes there.
// - Its SASL handshake waits on an 'authenticated' listener on the server, which outlives a
//   socket that never authenticates (credentials refused, socket dropped): one leaked listener,
//   holding the socket, per attempt. It is removed when its socket closes.
// - `respond` looks callbacks up in maps that leak when a socket closes without an error; it is
//   replaced by one function that hands every reply to this package.
// - `close()` ends a socket that is still connecting before the writes waiting for it: the end
//   is queued behind them instead.
// - The writes waiting for a socket to connect are kept when the peer closes it during a SASL
//   handshake (memjs clears them only on an error): they are cleared when it closes.
//
// memjs is pinned to exactly MEMJS_VERSION in package.json, and `checkMemjs` refuses any other
// version, or one whose shape differs, when a store is constructed.

import { createRequire } from 'node:module'
import type { Socket } from 'node:net'
import memjs from 'memjs'

/** The memjs version this adapter was written and tested against. */
export const MEMJS_VERSION = '1.3.2'

/** A reply as memjs frames it. */
export interface MemjsReply {
  header: { opcode: number; status: number; opaque: number }
  key: Buffer
  val: Buffer
}

/** The memjs.Server members used here (several are missing from its type declarations). */
interface ServerInternals extends NodeJS.EventEmitter {
  _socket?: Socket
  connectCallbacks: ((socket: Socket) => void)[]
  connected: boolean
  timeoutSet: boolean
  responseBuffer: Buffer
  respond: (reply: MemjsReply) => void
  sock: (sasl: boolean, go: (socket: Socket) => void) => void
  error: (error: Error | string) => void
  close: () => void
}

const PROTOTYPE_METHODS = ['sock', 'respond', 'error', 'close', 'responseHandler'] as const

function installedVersion(): string {
  const require = createRequire(import.meta.url)
  return (require('memjs/package.json') as { version: string }).version
}

/**
 * Checks that memjs is the version this adapter knows and has the shape it relies on; throws an
 * Error saying what differs otherwise.
 */
export function checkMemjs(
  module: { Server?: unknown } = memjs,
  version: string = installedVersion(),
): void {
  const problems: string[] = []
  if (version !== MEMJS_VERSION) {
    problems.push(`memjs ${version} is installed`)
  }
  const Server = module.Server as { prototype?: Record<string, unknown> } | undefined
  for (const method of PROTOTYPE_METHODS) {
    if (typeof Server?.prototype?.[method] !== 'function') {
      problems.push(`memjs.Server.prototype.${method} is not a function`)
    }
  }
  if (problems.length === 0) {
    const probe = new (module.Server as typeof memjs.Server)('127.0.0.1', 1) as unknown as Record<
      string,
      unknown
    >
    if (
      !Buffer.isBuffer(probe.responseBuffer) ||
      typeof probe.connected !== 'boolean' ||
      !Array.isArray(probe.connectCallbacks)
    ) {
      problems.push('memjs.Server instances lack responseBuffer, connected or connectCallbacks')
    }
  }
  if (problems.length > 0) {
    throw new Error(
      `@slidelimit/store-memcache needs memjs ${MEMJS_VERSION} exactly, whose internals it uses: ${problems.join('; ')}`,
    )
  }
}

/** What a {@link MemjsLink} reports. */
export interface LinkEvents {
  /** Every reply (SASL's excepted). Must not throw. */
  reply: (reply: MemjsReply) => void
  /**
   * A socket is gone, with the reason when it failed. Requests written on it get no answer
   * any more.
   */
  close: (socket: Socket, error: Error | undefined) => void
}

/** Options of a {@link MemjsLink}. */
export interface LinkOptions {
  /** TCP keep-alive on the sockets. */
  keepAlive: boolean
  /**
   * Milliseconds a new socket has to connect (and authenticate) before it is dropped. Apart
   * from request deadlines: a handshake of several round trips may take longer than one request.
   */
  connectTimeoutMs: number
  /** SASL credentials; memjs falls back to MEMCACHIER_* / MEMCACHE_* variables. */
  username?: string
  password?: string
}

/** One memcached server's socket, through memjs.Server, with the gaps above closed. */
export class MemjsLink {
  readonly #server: ServerInternals
  readonly #events: LinkEvents
  readonly #connectTimeoutMs: number
  /** The socket written on last. */
  #current: Socket | undefined
  /** Why each failed socket failed, for its close event. */
  readonly #reasons = new WeakMap<Socket, Error>()
  /** Sockets that connected (and authenticated): requests are written on them. */
  readonly #ready = new WeakSet<Socket>()
  /** The timer that drops a socket still not ready after connectTimeoutMs. */
  readonly #connectTimers = new WeakMap<Socket, NodeJS.Timeout>()
  /** memjs's 'authenticated' listener of a socket that is still authenticating. */
  readonly #authListeners = new WeakMap<Socket, (...args: unknown[]) => void>()

  constructor(
    host: string,
    port: number,
    { keepAlive, connectTimeoutMs, username, password }: LinkOptions,
    events: LinkEvents,
  ) {
    checkMemjs()
    this.#events = events
    this.#connectTimeoutMs = connectTimeoutMs
    const server = new memjs.Server(host, port, username, password, {
      keepAlive,
      // memjs's own timers stay out of the way: this package drops silent sockets itself.
      timeout: 3600,
      conntimeout: 3600,
    }) as unknown as ServerInternals
    server.respond = (reply) => {
      events.reply(reply)
    }
    const memjsError = server.error.bind(server)
    server.error = (error) => {
      const socket = server._socket
      if (socket !== undefined && !this.#reasons.has(socket)) {
        this.#reasons.set(socket, typeof error === 'string' ? new Error(error) : error)
      }
      memjsError(error)
    }
    this.#server = server
  }

  /** The socket now in use, if any. */
  get socket(): Socket | undefined {
    return this.#server._socket
  }

  /**
   * Writes `bytes` on the current socket, first connecting (and authenticating) when there is
   * none; returns the socket they go out on. `handOver` is called when they are about to be
   * handed to the socket (at once on a ready socket, else once it is ready) and says whether
   * they are still wanted. Throws when memjs makes no socket.
   */
  write(bytes: Buffer, handOver: () => boolean): Socket {
    const server = this.#server
    // The socket these bytes are for, known once sock() returns; a callback that runs later
    // with another (newer) socket must not write there.
    const target: { socket?: Socket; known: boolean } = { known: false }
    server.sock(false, (ready) => {
      if (!target.known || ready === target.socket) {
        this.#becameReady(ready)
        if (handOver()) {
          ready.write(bytes)
        }
      }
    })
    const socket = server._socket
    target.socket = socket
    target.known = true
    if (socket === undefined || typeof socket.destroy !== 'function') {
      throw new Error('memjs did not open a socket')
    }
    if (socket !== this.#current) {
      this.#adopt(socket)
    }
    return socket
  }

  /** Gives up on `socket`: it is destroyed, and the next write connects afresh. */
  drop(socket: Socket, error: Error): void {
    if (!this.#reasons.has(socket)) {
      this.#reasons.set(socket, error)
    }
    if (this.#server._socket === socket) {
      this.#server.error(error)
    } else {
      socket.destroy()
    }
  }

  /** Destroys the current socket at once (what was not answered fails). */
  destroy(): void {
    this.#server._socket?.destroy()
  }

  /**
   * Ends the current socket once what was written on it, or is waiting for it to connect, has
   * gone out; its close event follows. Resolves when it has closed (at once when there is none).
   */
  close(): Promise<void> {
    const server = this.#server
    const socket = server._socket
    if (socket === undefined) {
      return Promise.resolve()
    }
    const closed = new Promise<void>((resolve) => {
      socket.once('close', () => {
        resolve()
      })
    })
    // After the writes queued for the connect, in order; at once on a connected socket.
    server.sock(false, (ready) => {
      if (ready === socket) {
        ready.end()
      }
    })
    return closed
  }

  #becameReady(socket: Socket): void {
    if (!this.#ready.has(socket)) {
      this.#ready.add(socket)
      clearTimeout(this.#connectTimers.get(socket))
      this.#authListeners.delete(socket)
    }
  }

  /** Takes over a socket memjs just made. */
  #adopt(socket: Socket): void {
    const server = this.#server
    this.#current = socket
    // A new byte stream: nothing a dead socket left half-read may be glued in front of it.
    server.responseBuffer = Buffer.alloc(0)
    // memjs's connect timeout end()s without destroying: this one destroys.
    socket.setTimeout(0)
    server.timeoutSet = false
    const timer = setTimeout(() => {
      if (!this.#ready.has(socket)) {
        this.drop(socket, new Error(`not connected within ${this.#connectTimeoutMs} ms`))
      }
    }, this.#connectTimeoutMs)
    timer.unref()
    this.#connectTimers.set(socket, timer)
    // Requests and replies are small and awaited: no Nagle delay behind an unacknowledged write.
    socket.setNoDelay(true)
    socket.once('connect', () => {
      // memjs's connect callback (which ran just before) waits for SASL with a listener on the
      // server that outlives this socket if it never authenticates: remember it to remove it.
      const waiting = server.rawListeners('authenticated')
      const listener = waiting[waiting.length - 1]
      if (!this.#ready.has(socket) && listener !== undefined) {
        this.#authListeners.set(socket, listener as (...args: unknown[]) => void)
      }
    })
    socket.removeAllListeners('error')
    socket.removeAllListeners('close')
    socket.on('error', (error) => {
      if (!this.#reasons.has(socket)) {
        this.#reasons.set(socket, error)
      }
      if (server._socket === socket) {
        server.error(error)
      } else {
        socket.destroy()
      }
    })
    socket.on('close', () => {
      clearTimeout(timer)
      const listener = this.#authListeners.get(socket)
      if (listener !== undefined) {
        server.removeListener('authenticated', listener)
        this.#authListeners.delete(socket)
      }
      if (server._socket === socket) {
        server._socket = undefined
        server.connected = false
        // Writes that waited for this socket to connect: memjs clears them only on an error,
        // not when the peer closes during the handshake.
        server.connectCallbacks = []
      }
      this.#events.close(socket, this.#reasons.get(socket))
    })
  }
}
