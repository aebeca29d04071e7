// The server end of metadata sessions (proto/kdfs.proto, SessionHeader): each
// node that is not the root keeps one TCP connection to the root, on which it
// calls the Meta methods and is called back to invalidate what its kernel
// caches. Cheaper than gRPC for small calls (a gRPC unary call on loopback costs
// several times the CPU of the operation it carries), and the connection is what
// the service calls a node back on.
import tls from 'node:tls';
import { boundHandshakes } from '../security/pending.js';
import { HANDSHAKE_TIMEOUT_MS, peerNodeId, tlsServerOptions } from '../security/tls.js';
import net from 'node:net';
import { E, FsError } from '../common/errno.js';
import { log } from '../common/log.js';
import { FrameReader, FrameWriter, frameHead } from './frames.js';
import { NotLeader } from './server.js';
import { CACHE_LEASE_MS, type CallbackReply } from '../meta/coherence.js';
import { messageType, serviceDefinition } from './proto.js';
import {
  SESSION_CALLBACK, SESSION_CALLBACK_DONE, SESSION_CALLBACK_TAKEN, SESSION_HELLO, SESSION_PING, SESSION_REPLY, SESSION_REQUEST,
  type Invalidation, type SessionHeader, type SessionHello,
} from './messages.js';

/** Largest frame payload a session carries (a page of a directory listing, an xattr value). */
export const SESSION_PAYLOAD_MAX_BYTES = 16 * 1024 * 1024;
/** Requests one session may have in progress; past it the service stops reading it. */
const IN_FLIGHT_PER_SESSION_MAX = 256;
/** Callbacks one session may have unanswered. */
const CALLBACKS_PER_SESSION_MAX = 4096;

/** A callback that could not be sent. */
function failedCallback(err: Error): CallbackReply {
  const failed = Promise.reject(err);
  failed.catch(() => {});
  return { taken: failed, done: failed };
}
/** A session that says nothing for this long (a node pings every second) is
 *  closed: its node is dead, stopped or cut off. */
export const SESSION_SILENCE_MS = 4000;
/** How often a node with nothing to say pings. */
export const SESSION_PING_MS = 1000;

export const sessionHeader = messageType('SessionHeader');
export const sessionHello = messageType('SessionHello');
export const invalidationsType = messageType('Invalidations');
const EMPTY = Buffer.alloc(0);

/** Who is calling: the node of a session, or none (a gRPC caller, a command). */
export interface Caller { nodeId: number }

/** Serves one request of a session; FsError becomes an errno reply. call: the
 *  call's id in its session and whether it was sent before (see src/meta/replay.ts). */
export type SessionHandler = (method: string, request: unknown, caller: Caller, call: SessionCall) => Promise<unknown>;

export interface SessionCall { id: number; resent: boolean }

export interface SessionEvents {
  opened(session: ServerSession): void;
  closed(session: ServerSession): void;
}

/** A node's session, as the service sees it. */
export class ServerSession {
  private nextCallbackId = 1;
  private readonly callbacks = new Map<number, { taken: () => void; resolve: () => void; reject: (err: Error) => void }>();
  private ended = false;
  /** Requests of this node being served. */
  inFlight = 0;
  /** When the node was last heard from. */
  heardMs = Date.now();

  /** The node's lease: it uses what it was granted until then. */
  leaseUntilMs(): number {
    return this.heardMs + CACHE_LEASE_MS;
  }

  constructor(readonly nodeId: number, readonly incarnation: string, private readonly socket: net.Socket, private readonly out: FrameWriter) {}

  get closed(): boolean {
    return this.ended;
  }

  /** Sends a callback: done resolves once the node's kernel has dropped what it
   *  names, taken once the node itself has (at the latest with done); both
   *  reject if the session ends first. */
  callback(items: Invalidation[]): CallbackReply {
    if (this.ended) return failedCallback(new FsError(E.ENOTCONN, 'session closed'));
    if (this.callbacks.size >= CALLBACKS_PER_SESSION_MAX) return failedCallback(new FsError(E.EAGAIN, 'too many callbacks outstanding'));
    const id = this.nextCallbackId;
    this.nextCallbackId = this.nextCallbackId >= 0x7fffffff ? 1 : this.nextCallbackId + 1;
    let taken!: () => void;
    let failTaken!: (err: Error) => void;
    const takenPromise = new Promise<void>((resolve, reject) => {
      taken = resolve;
      failTaken = reject;
    });
    const done = new Promise<void>((resolve, reject) => {
      this.callbacks.set(id, {
        taken,
        resolve: () => { taken(); resolve(); },
        reject: (err) => { failTaken(err); reject(err); },
      });
      this.send({ id, kind: SESSION_CALLBACK }, Buffer.from(invalidationsType.encode({ items }).finish()));
    });
    return { taken: takenPromise, done };
  }

  /** @internal the node took a callback (SESSION_CALLBACK_TAKEN) */
  taken(id: number): void {
    this.callbacks.get(id)?.taken();
  }

  /** @internal the node answered a callback */
  done(id: number): void {
    const waiting = this.callbacks.get(id);
    this.callbacks.delete(id);
    waiting?.resolve();
  }

  send(header: SessionHeader, payload: Buffer): void {
    this.out.write(frameHead(sessionHeader, header, payload.length), payload);
  }

  /** @internal the connection is gone */
  end(): void {
    if (this.ended) return;
    this.ended = true;
    const err = new FsError(E.ENOTCONN, 'session closed');
    for (const waiting of this.callbacks.values()) waiting.reject(err);
    this.callbacks.clear();
  }

  close(): void {
    this.socket.destroy();
  }
}

export class SessionServer {
  private readonly server: tls.Server;
  /** Each connection, and when it was last heard from. */
  private readonly sockets = new Map<net.Socket, number>();
  private readonly definition = serviceDefinition('Meta');
  private readonly watchdog: NodeJS.Timeout;

  /** refused(nodeId): why a member may not open a session (revoked), or null;
   *  serving(): whether this node serves the metadata now (with etcd, only its
   *  leader does: the others refuse sessions with EAGAIN, and clients look for it). */
  constructor(
    private readonly fsid: () => string,
    private readonly handler: SessionHandler,
    private readonly events: SessionEvents,
    private readonly refused: (nodeId: number) => string | null = () => null,
    private readonly serving: () => boolean = () => true,
  ) {
    // members only: a peer without a certificate of the file system's authority never gets past TLS
    this.server = tls.createServer({ ...tlsServerOptions(), handshakeTimeout: HANDSHAKE_TIMEOUT_MS }, (socket) => this.serve(socket));
    boundHandshakes(this.server, HANDSHAKE_TIMEOUT_MS, (err, socket) => log.warn(`session refused to ${socket.remoteAddress}:${socket.remotePort}: ${err.message}`));
    this.watchdog = setInterval(() => {
      const silentSince = Date.now() - SESSION_SILENCE_MS;
      for (const [socket, heardMs] of this.sockets) {
        if (heardMs >= silentSince) continue;
        log.warn(`session from ${socket.remoteAddress}:${socket.remotePort} silent for ${SESSION_SILENCE_MS} ms: closing it`);
        socket.destroy();
      }
    }, SESSION_PING_MS);
    this.watchdog.unref();
  }

  /** Listens on host, on a port the system picks; returns the port. */
  listen(host: string, port = 0): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host.replace(/^\[|\]$/g, ''), () => resolve((this.server.address() as net.AddressInfo).port));
    });
  }

  /** Closes every session (this node stopped leading the metadata service). */
  closeAll(): void {
    for (const socket of this.sockets.keys()) socket.destroy();
  }

  /** Closes the sessions of a node (revoked). */
  closeNode(nodeId: number): void {
    for (const [socket] of this.sockets) {
      if (peerNodeId(socket as tls.TLSSocket) === nodeId) socket.destroy();
    }
  }

  close(): void {
    clearInterval(this.watchdog);
    for (const socket of this.sockets.keys()) socket.destroy();
    this.server.close();
  }

  private serve(socket: tls.TLSSocket): void {
    this.sockets.set(socket, Date.now());
    socket.setNoDelay(true);
    let session: ServerSession | null = null;
    const out = new FrameWriter(socket);
    const reply = (id: number, errno: number, payload: Buffer) => {
      out.write(frameHead(sessionHeader, { id, kind: SESSION_REPLY, errno }, payload.length), payload);
    };
    const reader = new FrameReader<SessionHeader>(sessionHeader, SESSION_PAYLOAD_MAX_BYTES, () => null, (header, payload) => {
      if (!session) {
        const greeting = this.greet(socket, out, header, payload);
        if (typeof greeting === 'number') {
          reply(header.id, greeting, EMPTY);
          out.end();
          return;
        }
        session = greeting;
        reply(header.id, 0, EMPTY);
        this.events.opened(session);
        return;
      }
      if (header.kind === SESSION_CALLBACK_DONE) {
        session.done(header.id);
        return;
      }
      if (header.kind === SESSION_CALLBACK_TAKEN) {
        session.taken(header.id);
        return;
      }
      if (header.kind === SESSION_PING) {
        reply(header.id, 0, EMPTY);
        return;
      }
      if (header.kind !== SESSION_REQUEST) throw new Error(`unexpected frame kind ${header.kind}`);
      const method = this.definition[header.method ?? ''];
      if (!method || header.method === 'Register') {
        reply(header.id, E.EINVAL, EMPTY);
        return;
      }
      const current = session;
      if (++current.inFlight === IN_FLIGHT_PER_SESSION_MAX) socket.pause();
      const request = method.requestDeserialize(payload);
      this.handler(header.method!, request, current, { id: header.id, resent: header.resent ?? false }).then(
        (result) => reply(header.id, 0, method.responseSerialize(result) as Buffer),
        (err: unknown) => {
          if (err instanceof NotLeader) {
            // no reply: the client sends its calls again to the new leader
            socket.destroy();
          } else if (err instanceof FsError) {
            reply(header.id, 0, method.responseSerialize({ errno: err.errno }) as Buffer);
          } else {
            log.error(`session ${header.method}: ${(err as Error)?.stack ?? String(err)}`);
            reply(header.id, E.EIO, EMPTY);
          }
        },
      ).finally(() => {
        if (current.inFlight-- === IN_FLIGHT_PER_SESSION_MAX) socket.resume();
      });
    });
    socket.on('data', (chunk: Buffer) => {
      const now = Date.now();
      this.sockets.set(socket, now);
      if (session) session.heardMs = now;
      try {
        reader.push(chunk);
      } catch (err) {
        log.warn(`session from ${socket.remoteAddress}:${socket.remotePort}: ${(err as Error).message}; closing it`);
        socket.destroy();
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      this.sockets.delete(socket);
      if (session) {
        session.end();
        this.events.closed(session);
      }
    });
  }

  /** The session a HELLO opens, or why not: EACCES only for a member refused
   *  for good (revoked, or speaking for another node), which its client stops
   *  retrying on; EINVAL for a malformed or foreign HELLO. */
  private greet(socket: tls.TLSSocket, out: FrameWriter, header: SessionHeader, payload: Buffer): ServerSession | number {
    if (header.kind !== SESSION_HELLO) return E.EINVAL;
    let hello: SessionHello;
    try {
      hello = sessionHello.decode(payload) as unknown as SessionHello;
    } catch {
      return E.EINVAL;
    }
    if (!this.serving()) return E.EAGAIN;
    const expected = this.fsid();
    if (!expected || hello.fsid !== expected || !hello.nodeId) {
      log.warn(`session from ${socket.remoteAddress}:${socket.remotePort} refused: a HELLO of another file system or no node`);
      return E.EINVAL;
    }
    // a member speaks for itself only
    const member = peerNodeId(socket);
    const refusal = member !== hello.nodeId ? `its certificate is node ${member}'s, not node ${hello.nodeId}'s` : this.refused(member);
    if (refusal) {
      log.warn(`session of node ${hello.nodeId} from ${socket.remoteAddress}:${socket.remotePort} refused: ${refusal}`);
      return E.EACCES;
    }
    return new ServerSession(hello.nodeId, hello.incarnation, socket, out);
  }
}
