// One memcached server as the store sees it: requests queued in this turn of the event loop
// leave in one socket write; requests in flight wait for their replies against one deadline;
// a socket that misses it is dropped, so the next request connects afresh.
//
// memcached answers the requests of one connection in order, so the oldest request in flight
// is the first to miss its deadline, and one timer for the oldest is enough.
//
// A deadline means "memcached did not answer", never "this process was busy". A request's
// deadline counts from the moment its bytes are handed to the socket (after the connect, for a
// socket still connecting). When the timer fires, the check waits for the next poll phase of
// the event loop, which reads every reply that had arrived when it began (Node runs timers
// before it reads sockets, and a busy process can spend 100 ms and more in one poll phase).
// Only requests whose deadline had passed when the timer fired, and whose reply that poll
// phase did not bring, fail; the others are checked again after a poll phase of their own.

import type { Socket } from 'node:net'
import { StoreError } from '@slidelimit/core'
import { MemjsLink } from './memjs-adapter.js'
import type { MemjsReply } from './memjs-adapter.js'

/** A request's conversation with memcached. */
export interface Request {
  /** Takes one reply packet; returns true when it was the request's last. */
  onReply(reply: MemjsReply): boolean
  /** The request failed (deadline missed, connection lost); called at most once. */
  onFail(error: StoreError): void
}

/** A change of a server's state: `up` when it answers, `down` when its connection is lost. */
export interface ConnectionState {
  server: string
  state: 'up' | 'down'
  /** Why, when `down`. */
  error?: string
  /** When `up`: it was `down` before (not a first answer). */
  restored?: boolean
}

/** Options of a {@link Connection}. */
export interface ConnectionOptions {
  deadlineMs: number
  /** Milliseconds a new socket has to connect and authenticate before it is dropped. */
  connectTimeoutMs: number
  keepAlive: boolean
  username: string | undefined
  password: string | undefined
  /** The store's name, for errors. */
  store: string
  onState: (change: ConnectionState) => void
  /** This process's recent event-loop delay in milliseconds, for deadline messages. */
  loopDelayMs: () => number
}

interface InFlight {
  id: number
  request: Request
  /** The socket it went out on. */
  socket: Socket | undefined
  /** performance.now() after which it has missed its deadline. */
  deadline: number
  /** Handed to the socket (not still waiting for it to connect). */
  written: boolean
  done: boolean
}

export class Connection {
  /** `host:port`. */
  readonly server: string
  readonly #options: ConnectionOptions
  readonly #link: MemjsLink
  readonly #byId = new Map<number, InFlight>()
  /** Written requests, oldest first, from `#head` on. */
  #inFlight: InFlight[] = []
  #head = 0
  #queuedBytes: Buffer[] = []
  #queued: InFlight[] = []
  #flushScheduled = false
  #timer: NodeJS.Timeout | undefined
  #state: 'unknown' | 'up' | 'down' = 'unknown'
  #closed = false
  #closing: Promise<void> | undefined

  constructor(host: string, port: number, server: string, options: ConnectionOptions) {
    this.server = server
    this.#options = options
    this.#link = new MemjsLink(
      host,
      port,
      {
        keepAlive: options.keepAlive,
        connectTimeoutMs: options.connectTimeoutMs,
        ...(options.username !== undefined && { username: options.username }),
        ...(options.password !== undefined && { password: options.password }),
      },
      {
        reply: (reply) => {
          this.#reply(reply)
        },
        close: (socket, error) => {
          this.#socketClosed(socket, error)
        },
      },
    )
  }

  /** `up` once it answered, `down` after its connection was lost, `unknown` before either. */
  get state(): 'unknown' | 'up' | 'down' {
    return this.#state
  }

  /** Queues a request under `id`; it leaves with everything else queued in this turn. */
  send(id: number, bytes: Buffer, request: Request): void {
    if (this.#closed) {
      request.onFail(new StoreError(this.#options.store, 'the store is closed'))
      return
    }
    const entry: InFlight = {
      id,
      request,
      socket: undefined,
      deadline: 0,
      written: false,
      done: false,
    }
    this.#byId.set(id, entry)
    this.#queuedBytes.push(bytes)
    this.#queued.push(entry)
    if (!this.#flushScheduled) {
      this.#flushScheduled = true
      setImmediate(() => {
        this.#flush()
      })
    }
  }

  /**
   * Sends what is queued, then ends the connection once it has gone out; resolves when the
   * socket has closed (memcached answers what it received first).
   */
  close(): Promise<void> {
    if (this.#closing === undefined) {
      this.#flush()
      this.#closed = true
      this.#closing = this.#link.close()
    }
    return this.#closing
  }

  /** Destroys the socket at once: for a close that took too long. */
  destroy(): void {
    this.#link.destroy()
  }

  #flush(): void {
    this.#flushScheduled = false
    const entries = this.#queued
    if (entries.length === 0) {
      return
    }
    const parts = this.#queuedBytes
    this.#queued = []
    this.#queuedBytes = []
    const deadlineMs = this.#options.deadlineMs
    // A socket that never connects misses the deadline counted from now.
    const flushed = performance.now() + deadlineMs
    for (const entry of entries) {
      entry.deadline = flushed
    }
    let socket: Socket
    try {
      const bytes = parts.length === 1 ? (parts[0] as Buffer) : Buffer.concat(parts)
      socket = this.#link.write(bytes, () => {
        // Handed to the socket: memcached's time starts now (later than the flush when the
        // socket was still connecting). Requests that all failed while it connected are not
        // sent at all: their operations must not land after their callers were told they failed.
        const written = performance.now() + deadlineMs
        let wanted = false
        for (const entry of entries) {
          entry.deadline = written
          entry.written = true
          wanted ||= !entry.done
        }
        return wanted
      })
    } catch (error) {
      const failure = new StoreError(
        this.#options.store,
        `cannot write to ${this.server}: ${error instanceof Error ? error.message : String(error)}`,
        { cause: error },
      )
      for (const entry of entries) {
        this.#fail(entry, failure)
      }
      return
    }
    for (const entry of entries) {
      if (!entry.done) {
        entry.socket = socket
        this.#inFlight.push(entry)
      }
    }
    if (this.#timer === undefined) {
      this.#arm(deadlineMs)
    }
  }

  #reply(reply: MemjsReply): void {
    if (this.#state !== 'up') {
      this.#setState('up')
    }
    const entry = this.#byId.get(reply.header.opaque)
    if (entry === undefined || entry.done) {
      return // the answer to a request that already failed, or to nobody
    }
    let last: boolean
    try {
      last = entry.request.onReply(reply)
    } catch (error) {
      this.#fail(
        entry,
        new StoreError(this.#options.store, `cannot read a reply from ${this.server}`, {
          cause: error,
        }),
      )
      return
    }
    if (last) {
      entry.done = true
      this.#byId.delete(entry.id)
    }
  }

  #fail(entry: InFlight, error: StoreError): void {
    if (entry.done) {
      return
    }
    entry.done = true
    this.#byId.delete(entry.id)
    try {
      entry.request.onFail(error)
    } catch {
      // A request's own failure handler failing must not stop the others'.
    }
  }

  #arm(ms: number): void {
    this.#timer = setTimeout(
      () => {
        const fired = performance.now()
        // The poll phase between now and the immediate reads the replies that arrived.
        setImmediate(() => {
          this.#timer = undefined
          this.#expire(fired)
        })
      },
      Math.max(1, Math.ceil(ms)),
    )
  }

  /**
   * Fails the requests whose deadline had passed at `cutoff` (when the timer fired, before the
   * last poll phase), dropping their socket; re-arms for the rest.
   */
  #expire(cutoff: number): void {
    const list = this.#inFlight
    while (this.#head < list.length) {
      const oldest = list[this.#head] as InFlight
      if (oldest.done) {
        this.#head++
        continue
      }
      if (oldest.deadline > cutoff) {
        this.#compact()
        this.#arm(oldest.deadline - performance.now())
        return
      }
      if (!oldest.written && oldest.socket?.connecting === false) {
        // Connected, still authenticating: this request fails, the socket stays (a SASL
        // handshake of several round trips may take longer than one request's deadline; the
        // socket's own connect timeout drops it if it never becomes ready). A socket whose TCP
        // connect has not even completed is given up like a silent one, below: its SYN may be
        // lost, and the next request should try a new one.
        this.#fail(
          oldest,
          new StoreError(
            this.#options.store,
            `no connection to ${this.server} within the ${this.#options.deadlineMs} ms deadline`,
          ),
        )
        continue
      }
      const delay = this.#options.loopDelayMs()
      const error = new StoreError(
        this.#options.store,
        `no answer from ${this.server} within the ${this.#options.deadlineMs} ms deadline` +
          (delay >= 1
            ? ` (this process's event loop was delayed up to ${Math.round(delay)} ms)`
            : ''),
      )
      this.#giveUp(oldest.socket, error)
    }
    this.#compact()
  }

  /** Fails every request in flight on `socket` and drops it. */
  #giveUp(socket: Socket | undefined, error: StoreError): void {
    for (let i = this.#head; i < this.#inFlight.length; i++) {
      const entry = this.#inFlight[i] as InFlight
      if (entry.socket === socket) {
        this.#fail(entry, error)
      }
    }
    if (socket !== undefined) {
      this.#link.drop(socket, error)
    }
    this.#setState('down', error.message)
  }

  #socketClosed(socket: Socket, error: Error | undefined): void {
    const reason =
      error === undefined
        ? `${this.server} closed the connection`
        : `connection to ${this.server} failed: ${error.message}`
    const failure = new StoreError(this.#options.store, reason, { cause: error })
    let lost = false
    for (let i = this.#head; i < this.#inFlight.length; i++) {
      const entry = this.#inFlight[i] as InFlight
      if (entry.socket === socket && !entry.done) {
        lost = true
        this.#fail(entry, failure)
      }
    }
    this.#compact()
    // A socket closing after a newer one took over says nothing about the server now.
    if (!this.#closed && (lost || this.#link.socket === undefined)) {
      this.#setState('down', reason)
    }
  }

  /** Forgets answered requests at the head of the list. */
  #compact(): void {
    const list = this.#inFlight
    while (this.#head < list.length && (list[this.#head] as InFlight).done) {
      this.#head++
    }
    if (this.#head === list.length) {
      this.#inFlight = []
      this.#head = 0
    } else if (this.#head > 1024 && this.#head * 2 > list.length) {
      this.#inFlight = list.slice(this.#head)
      this.#head = 0
    }
  }

  #setState(state: 'up' | 'down', error?: string): void {
    if (this.#state === state || this.#closed) {
      return
    }
    const restored = this.#state === 'down'
    this.#state = state
    this.#options.onState(
      state === 'up'
        ? { server: this.server, state, restored }
        : { server: this.server, state, error: error ?? 'connection lost' },
    )
  }
}
