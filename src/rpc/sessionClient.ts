// The node end of a metadata session (see sessionServer.ts): Meta calls on one
// pipelined TCP connection to the root, and the root's callbacks. A connection
// that drops is made again and the calls waiting on it sent again, until each
// call's deadline: every Meta call is safe to repeat, as over gRPC. A call fails
// with EIO once the root has not been heard from for PEER_BOUND_MS since it was
// made (dead, stopped, cut off: it answers pings otherwise, however busy), and
// later calls after CONNECT_TIMEOUT_MS until a session is open again (see
// docs/failures.md).
import tls from 'node:tls';
import { MEMBER_SERVERNAME, tlsClientOptions } from '../security/tls.js';
import net from 'node:net';
import { E, FsError } from '../common/errno.js';
import { CONNECT_TIMEOUT_MS, PEER_BOUND_MS } from '../common/limits.js';
import { log } from '../common/log.js';
import { FrameReader, FrameWriter, frameHead } from './frames.js';
import { CACHE_LEASE_MS } from '../meta/coherence.js';
import type { CallOptions, RpcChannel } from './local.js';
import { serviceDefinition } from './proto.js';
import {
  SESSION_CALLBACK, SESSION_CALLBACK_DONE, SESSION_CALLBACK_TAKEN, SESSION_HELLO, SESSION_PING, SESSION_REPLY, SESSION_REQUEST,
  type Invalidation, type MetaMethods, type SessionHeader, type SessionHello,
} from './messages.js';
import {
  SESSION_PAYLOAD_MAX_BYTES, SESSION_PING_MS, SESSION_SILENCE_MS, invalidationsType, sessionHeader, sessionHello,
} from './sessionServer.js';

const RETRY_FIRST_MS = 20;
const RETRY_MAX_MS = 1000;
/** How often waiting calls are checked against their deadline. */
const DEADLINE_CHECK_MS = 500;
/** Calls one session sends at once; more wait for a free place. */
const IN_FLIGHT_MAX = 1024;
/** How often calls are checked, and pings considered. */
const TICK_MS = Math.min(DEADLINE_CHECK_MS, SESSION_PING_MS / 2);
/** Pings whose reply is awaited, at most (a silent root is dropped long before). */
const PINGS_REMEMBERED_MAX = 16;

interface Pending {
  method: string;
  /** When it was made, and how long it waits for a root that is not heard from. */
  startMs: number;
  boundMs: number;
  /** When it was last sent: its reply renews the lease from then. */
  sentMs: number;
  payload: Buffer;
  deadline: number;
  resolve: (reply: unknown) => void;
  reject: (err: Error) => void;
  /** The connection it was sent on, if any. */
  sentOn: net.Socket | null;
  /** Times sent: a call sent again may have been applied by a service that died before answering. */
  sends: number;
}

class ConnectionLost extends Error {}

/** Handles a callback: resolves once the kernel dropped what it names; calls
 *  taken once this node itself did (see SESSION_CALLBACK_TAKEN). */
export type CallbackHandler = (items: Invalidation[], taken: () => void) => Promise<void>;

export class SessionClient implements RpcChannel<MetaMethods> {
  private readonly definition = serviceDefinition('Meta');
  /** The service refused this node's session (a revoked node): calls fail at once until one is opened. */
  private refused = false;
  private socket: net.Socket | null = null;
  private out: FrameWriter | null = null;
  private connecting: Promise<net.Socket> | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private closed = false;
  private sessions = 0;
  private reconnecting = false;
  private readonly timer: NodeJS.Timeout;
  private waitingForRoom: (() => void)[] = [];
  /** When the root was last heard from, and this node last sent anything. */
  private heardMs = 0;
  private sentMs = 0;
  /** Until when this node may use what it was granted: CACHE_LEASE_MS after it
   *  sent a request the root has answered (the root counts from when it heard
   *  it, later). Pings in flight, by id, with when they were sent. */
  private leaseUntilMs = 0;
  private readonly pings = new Map<number, number>();
  /** When a call last failed for want of an answer from the root (null: it answers). */
  private failedAtMs: number | null = null;
  /** When the last ping went, the last tick ran, and this process last resumed
   *  after standing still (a tick late by much). */
  private pingedMs = 0;
  private tickedMs = Date.now();
  private resumedMs = 0;

  /** onSession: a session was opened, the first or again after one was lost
   *  (then the kernel may have missed callbacks meanwhile). */
  constructor(
    private address: string,
    private hello: SessionHello,
    private readonly deadlineMs: number,
    private readonly onCallback: CallbackHandler,
    private readonly onSession: (first: boolean) => void,
    /** A connection could not be made: the root may have restarted elsewhere (see moveTo). */
    private readonly onUnreachable: () => void = () => {},
    /** How long a call waits for a service not heard from: PEER_BOUND_MS, or
     *  with etcd, the failover's bound (a new leader is elected meanwhile). */
    private readonly peerBoundMs = PEER_BOUND_MS,
    private readonly reconnectBoundMs = CONNECT_TIMEOUT_MS,
  ) {
    this.timer = setInterval(() => this.tick(), TICK_MS);
    this.timer.unref();
    void this.connectAndFlush();
  }

  /** Deadlines of calls; pings when idle; a silent root's connection is dropped
   *  (and made again: callbacks may have been missed meanwhile). */
  private tick(): void {
    const now = Date.now();
    // this process stood still (load, a long pause): the root's silence is not its own
    if (now - this.tickedMs > 2 * TICK_MS) this.resumedMs = now;
    this.tickedMs = now;
    this.expire();
    const socket = this.socket;
    if (!socket || !this.out) return;
    if (now - Math.max(this.heardMs, this.resumedMs) > SESSION_SILENCE_MS) {
      log.warn(`the metadata service at ${this.address} is silent: reconnecting`);
      socket.destroy();
      return;
    }
    // quiet, or calls wait and nothing came for a while: is the root alive?
    const waitingUnheard = this.pending.size > 0 && now - this.heardMs >= SESSION_PING_MS && now - this.pingedMs >= SESSION_PING_MS;
    if (now - this.sentMs >= SESSION_PING_MS || waitingUnheard) {
      this.sentMs = this.pingedMs = now;
      const id = this.nextId;
      this.nextId = this.nextId >= 0x7fffffff ? 1 : this.nextId + 1;
      this.pings.set(id, now);
      if (this.pings.size > PINGS_REMEMBERED_MAX) this.pings.delete(this.pings.keys().next().value as number);
      this.out.write(frameHead(sessionHeader, { id, kind: SESSION_PING }, 0), null);
    }
  }

  /** How long this node may still use what it was granted (0: its lease is lost). */
  leaseRemainingMs(): number {
    return Math.max(0, this.leaseUntilMs - Date.now());
  }

  private renewLease(sentMs: number): void {
    if (sentMs + CACHE_LEASE_MS > this.leaseUntilMs) this.leaseUntilMs = sentMs + CACHE_LEASE_MS;
  }

  get peer(): string {
    return this.address;
  }

  setFsid(fsid: string): void {
    this.hello = { ...this.hello, fsid };
  }

  /** The root now takes sessions at another address. */
  moveTo(address: string): void {
    if (!address || address === this.address) return;
    this.address = address;
    if (this.socket) this.socket.destroy();
    else void this.connectAndFlush();
  }

  async call<K extends keyof MetaMethods & string>(method: K, request: MetaMethods[K][0], deadlineMs = this.deadlineMs, options: CallOptions = {}): Promise<MetaMethods[K][1]> {
    if (this.closed) throw new FsError(E.EIO, 'session closed');
    // refused (revoked): callers hear it at once instead of waiting for a session that will not come
    if (this.refused) throw new FsError(E.EACCES, `the metadata service at ${this.address} refuses this node`);
    while (this.pending.size >= IN_FLIGHT_MAX) await new Promise<void>((resolve) => this.waitingForRoom.push(resolve));
    const definition = this.definition[method];
    const payload = definition.requestSerialize(request) as Buffer;
    const id = this.nextId;
    this.nextId = this.nextId >= 0x7fffffff ? 1 : this.nextId + 1;
    return new Promise((resolve, reject) => {
      // the root failed a call lately: a short wait, in case it is back
      const boundMs = this.socket || this.failedAtMs === null ? this.peerBoundMs : this.reconnectBoundMs;
      const nowMs = Date.now();
      const startMs = Math.min(options.startedMs ?? nowMs, nowMs);
      const entry: Pending = { method, payload, startMs, boundMs, sentMs: 0, deadline: nowMs + deadlineMs, resolve: resolve as (r: unknown) => void, reject, sentOn: null, sends: 0 };
      this.pending.set(id, entry);
      // made for a file system call that already waited for a silent root: it may be over its bound now
      if (startMs < nowMs && this.expired(id, entry, nowMs)) return;
      if (this.socket) this.send(this.socket, id, entry);
      else void this.connectAndFlush();
    }).finally(() => this.waitingForRoom.shift()?.()) as Promise<MetaMethods[K][1]>;
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.socket?.destroy();
    const err = new FsError(E.EIO, 'session closed');
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  private send(socket: net.Socket, id: number, entry: Pending): void {
    entry.sentOn = socket;
    if (this.out === null || this.socket !== socket) return;
    this.sentMs = entry.sentMs = Date.now();
    this.out.write(frameHead(sessionHeader, { id, kind: SESSION_REQUEST, method: entry.method, resent: entry.sends++ > 0 }, entry.payload.length), entry.payload);
  }

  /** Keeps a session open, calls waiting or not (the root must hear of this
   *  node's locks, and this node of the root's callbacks): connects, retrying,
   *  and sends what waits. */
  private async connectAndFlush(): Promise<void> {
    if (this.reconnecting) return;
    this.reconnecting = true;
    try {
      for (let backoffMs = RETRY_FIRST_MS; !this.closed; backoffMs = Math.min(backoffMs * 2, RETRY_MAX_MS)) {
        try {
          const socket = await this.connect();
          for (const [id, entry] of this.pending) if (entry.sentOn !== socket) this.send(socket, id, entry);
          return;
        } catch (err) {
          if (!(err instanceof ConnectionLost)) log.warn(`metadata session: ${(err as Error).message}`);
          if (err instanceof FsError && err.errno === E.EACCES) {
            this.refused = true;
            for (const p of this.pending.values()) p.reject(err);
            this.pending.clear();
          }
          this.onUnreachable();
          await new Promise((resolve) => setTimeout(resolve, backoffMs));
        }
      }
    } finally {
      this.reconnecting = false;
    }
  }

  private connect(): Promise<net.Socket> {
    if (this.socket) return Promise.resolve(this.socket);
    this.connecting ??= new Promise<net.Socket>((resolve, reject) => {
      const colon = this.address.lastIndexOf(':');
      const host = this.address.slice(0, colon).replace(/^\[|\]$/g, '');
      const socket = tls.connect({ port: Number(this.address.slice(colon + 1)), host, servername: MEMBER_SERVERNAME, ...tlsClientOptions() });
      socket.setNoDelay(true);
      let greeted = false;
      const reader = new FrameReader<SessionHeader>(sessionHeader, SESSION_PAYLOAD_MAX_BYTES, () => null, (header, payload) => {
        if (!greeted) {
          if (header.kind !== SESSION_REPLY || header.errno) {
            // only a refusal for good (revoked) fails the calls; anything else is tried again
            const why = `the metadata service at ${this.address} refused the session (errno ${header.errno})`;
            reject(header.errno === E.EACCES ? new FsError(E.EACCES, why) : new Error(why));
            socket.destroy();
            return;
          }
          greeted = true;
          this.refused = false;
          this.socket = socket;
          this.out = new FrameWriter(socket);
          this.heardMs = this.sentMs = Date.now();
          this.failedAtMs = null;
          resolve(socket);
          this.onSession(this.sessions++ === 0);
          return;
        }
        if (header.kind === SESSION_CALLBACK) {
          const items = (invalidationsType.decode(payload) as unknown as { items: Invalidation[] }).items;
          // after the replies that came with it have reached the kernel: a reply
          // handed over after the callback would put back what it drops
          setImmediate(() => {
            const taken = () => {
              if (this.socket === socket) this.out?.write(frameHead(sessionHeader, { id: header.id, kind: SESSION_CALLBACK_TAKEN }, 0), null);
            };
            this.onCallback(items, taken).catch((err) => log.warn(`callback: ${(err as Error).message}`)).finally(() => {
              if (this.socket === socket) this.out?.write(frameHead(sessionHeader, { id: header.id, kind: SESSION_CALLBACK_DONE }, 0), null);
            });
          });
          return;
        }
        if (header.kind !== SESSION_REPLY) return;
        const pinged = this.pings.get(header.id);
        if (pinged !== undefined) {
          this.pings.delete(header.id);
          this.renewLease(pinged);
          return;
        }
        const waiting = this.pending.get(header.id);
        if (!waiting || waiting.sentOn !== socket) return;
        this.pending.delete(header.id);
        this.renewLease(waiting.sentMs);
        if (header.errno) {
          waiting.reject(new FsError(E.EIO, `Meta.${waiting.method} at ${this.address}: ${header.errno === E.EINVAL ? 'unknown method' : 'failed'}`));
          return;
        }
        try {
          waiting.resolve(this.definition[waiting.method].responseDeserialize(payload));
        } catch (err) {
          waiting.reject(new FsError(E.EIO, `Meta.${waiting.method}: undecodable reply (${(err as Error).message})`));
        }
      });
      // a root that takes the connection but never answers (stopped) is tried again
      const greeting = setTimeout(() => {
        if (!greeted) socket.destroy();
      }, SESSION_SILENCE_MS);
      greeting.unref();
      socket.on('secureConnect', () => {
        const hello = Buffer.from(sessionHello.encode(this.hello).finish());
        socket.write(frameHead(sessionHeader, { id: 0, kind: SESSION_HELLO }, hello.length));
        socket.write(hello);
      });
      socket.on('data', (chunk: Buffer) => {
        this.heardMs = Date.now();
        try {
          reader.push(chunk);
        } catch (err) {
          log.warn(`metadata session: ${(err as Error).message}; closing it`);
          socket.destroy();
        }
      });
      socket.on('error', () => {});
      socket.on('close', () => {
        clearTimeout(greeting);
        if (this.socket === socket) {
          this.socket = null;
          this.out = null;
          // the root forgets this node's grants with its session
          this.leaseUntilMs = 0;
          this.pings.clear();
        }
        if (!greeted) reject(new ConnectionLost('cannot connect'));
        // what was sent on it goes again on the next connection
        for (const entry of this.pending.values()) if (entry.sentOn === socket) entry.sentOn = null;
        if (!this.closed && greeted) void this.connectAndFlush();
      });
    }).finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private expire(): void {
    const now = Date.now();
    for (const [id, p] of this.pending) this.expired(id, p, now);
  }

  /** Fails the call if it is past its deadline, or the root has been silent past its bound. */
  private expired(id: number, p: Pending, now: number): boolean {
    const silentMs = now - Math.max(this.heardMs, p.startMs, this.resumedMs);
    if (p.deadline > now && silentMs < p.boundMs) return false;
    this.pending.delete(id);
    if (silentMs >= p.boundMs) this.failedAtMs = now;
    p.reject(new FsError(E.EIO, `Meta.${p.method} at ${this.address}: no answer in time`));
    return true;
  }
}
