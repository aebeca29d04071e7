// A client of an agent's data channel (see DataHeader in proto/kdfs.proto): one
// connection, requests pipelined on it. A connection that drops is made again
// and its requests sent again (reads and writes of objects are safe to repeat),
// for at most PEER_BOUND_MS from the call. An agent that stays silent while
// requests wait (pinged meanwhile) is given up: its requests fail with EIO, and
// so do later calls for a while, at once (see docs/failures.md).
import net from 'node:net';
import { E, FsError } from '../common/errno.js';
import { log } from '../common/log.js';
import { within } from '../common/within.js';
import {
  AGENT_DEADLINE_MS, CONNECT_TIMEOUT_MS, PEER_BOUND_MS, PEER_DOWN_HOLD_MS, PEER_SILENCE_MS, RPC_MESSAGE_MAX_BYTES,
} from '../common/limits.js';
import { DATA_ALLOCATED, DATA_HELLO, DATA_PING, DATA_READ, DATA_WRITE, type DataHeader, type ObjectKey } from '../rpc/messages.js';
import { FrameReader, corkForTurn, frameHead } from '../rpc/frames.js';
import { messageType } from '../rpc/proto.js';
import { connectReusing } from './reusedReads.js';
import { ClientHandshake } from '../security/clientHandshake.js';
import type { FrameMacs } from '../security/dataAuth.js';

const dataHeader = messageType('DataHeader');

/** Pauses between attempts to reach an agent that cannot be reached. */
const RETRY_FIRST_MS = 50;
const RETRY_MAX_MS = 1000;
/** How often waiting requests are checked (one timer per client, not one per request). */
const CHECK_MS = 500;
/** A peer silent this long while requests wait is pinged (at most this often). */
const PING_AFTER_MS = 1000;

interface Pending {
  resolve: (data: Buffer, reply: DataHeader) => void;
  reject: (err: Error) => void;
  deadline: number;
  /** Where the data of the reply goes, if the caller gave a buffer. */
  into: Buffer | null;
}

/** The connection dropped before the reply, or could not be made: the request may be sent again. */
class ConnectionLost extends Error {
  constructor(message: string, readonly unreachable = false) {
    super(message);
  }
}

export class DataClient {
  private socket: net.Socket | null = null;
  private connecting: Promise<net.Socket> | null = null;
  /** The socket of the last connection made or being made. */
  private attempt: net.Socket | null = null;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private readonly timer: NodeJS.Timeout;
  private closed = false;
  /** When the agent was last heard from, requests began to wait, a ping went. */
  private heardMs = 0;
  private waitingSinceMs = 0;
  private pingedMs = 0;
  /** When the agent last failed a call (null: it answers). */
  private failedAtMs: number | null = null;
  /** When the last check ran: a check late by much means this process did not
   *  run meanwhile, and the agent's answers may be waiting, unread. */
  private checkedMs = Date.now();
  /** The MACs of the current connection's frames (null: protection off). */
  private macs: FrameMacs | null = null;

  /** onUnreachable: called when a connection cannot be made (the agent may have
   *  moved: see moveTo); resolves once the agent's address was looked up;
   *  targetNode: the node meant (0: whichever answers at the address). */
  constructor(private address: string, private readonly fsid: string, private readonly onUnreachable?: () => Promise<void>, private readonly targetNode = 0) {
    this.timer = setInterval(() => this.check(), CHECK_MS);
    this.timer.unref();
  }

  get peer(): string {
    return this.address;
  }

  /** False from a failed call until the agent answers again. */
  get answering(): boolean {
    return this.failedAtMs === null;
  }

  /** The agent now listens at another address: requests waiting to be sent go there. */
  moveTo(address: string): void {
    if (address === this.address) return;
    this.address = address;
    // what failed at the old address says nothing of the new one
    this.failedAtMs = null;
    // a connection being made, or made, to the old address: its requests are sent again
    this.attempt?.destroy();
  }

  /** The agent started again at the same address: what failed before says nothing of it. */
  restarted(): void {
    this.failedAtMs = null;
  }

  /** leaderEpoch: the metadata service's (with etcd), for agents to refuse a
   *  deposed leader's writes. wantAllocated: resolves with the bytes of disk
   *  the object takes (else null). */
  async write(key: ObjectKey, offset: number, data: Uint8Array, leaderEpoch = 0, wantAllocated = false): Promise<number | null> {
    let bytes = 0;
    const header: DataHeader = { id: 0, op: DATA_WRITE, key, offset, ...(leaderEpoch ? { leaderEpoch } : {}), ...(wantAllocated ? { wantAllocated } : {}) };
    await this.call(header, data, null, (reply) => (bytes = reply.offset ?? 0));
    return wantAllocated ? bytes : null;
  }

  /** Bytes of disk the object takes. */
  async allocated(key: ObjectKey): Promise<number> {
    let bytes = 0;
    await this.call({ id: 0, op: DATA_ALLOCATED, key }, null, null, (reply) => (bytes = reply.offset ?? 0));
    return bytes;
  }

  /** Resolves once the agent answers a ping (EIO if it stays silent: see check). */
  /** reachByMs: when to give up reaching the agent at the latest (the bound of
   *  a call the ping watches, which began earlier). */
  async ping(reachByMs?: number): Promise<void> {
    await this.call({ id: 0, op: DATA_PING }, null, null, undefined, reachByMs);
  }

  /** Reads into the start of `into` if given (at least length long). */
  read(key: ObjectKey, offset: number, length: number, into?: Buffer): Promise<Buffer> {
    return this.call({ id: 0, op: DATA_READ, key, offset, length }, null, into ?? null);
  }

  close(): void {
    this.closed = true;
    clearInterval(this.timer);
    this.socket?.destroy();
    this.fail(new FsError(E.EIO, 'data channel closed'));
  }

  private async call(header: DataHeader, data: Uint8Array | null, into: Buffer | null, onReply?: (reply: DataHeader) => void, reachByMs = Infinity): Promise<Buffer> {
    const startMs = Date.now();
    const deadline = startMs + AGENT_DEADLINE_MS;
    // an agent that failed lately: no call waits for it again, one attempt at most
    const failedAtMs = this.failedAtMs;
    if (failedAtMs !== null && startMs - failedAtMs < PEER_DOWN_HOLD_MS) throw new FsError(E.EIO, `agent at ${this.address} does not answer`);
    const retrying = failedAtMs === null;
    const reachBy = Math.min(reachByMs, startMs + (retrying ? PEER_BOUND_MS : CONNECT_TIMEOUT_MS));
    let followed = false;
    for (let backoffMs = RETRY_FIRST_MS; ; backoffMs = Math.min(backoffMs * 2, RETRY_MAX_MS)) {
      try {
        const socket = await this.connectBy(reachBy);
        return await this.send(socket, header, data, deadline, into, onReply);
      } catch (err) {
        if (!(err instanceof ConnectionLost) || this.closed) throw err;
        if (err.unreachable && this.onUnreachable) {
          const before = this.address;
          // the lookup asks the metadata service: no longer than the call may wait
          await within(this.onUnreachable(), reachBy - Date.now(), () => undefined);
          // restarted at another address (a node process started again): tried there at once, once
          if (this.address !== before && !followed) {
            followed = true;
            continue;
          }
        }
        if (!retrying || Date.now() + backoffMs >= reachBy) {
          this.failedAtMs = Date.now();
          throw new FsError(E.EIO, `agent at ${this.address}: ${err.message}`);
        }
        await new Promise((resolve) => setTimeout(resolve, backoffMs));
      }
    }
  }

  private send(socket: net.Socket, header: DataHeader, data: Uint8Array | null, deadline: number, into: Buffer | null, onReply?: (reply: DataHeader) => void): Promise<Buffer> {
    const id = this.nextId;
    this.nextId = this.nextId >= 0x7fffffff ? 1 : this.nextId + 1;
    return new Promise((resolve, reject) => {
      if (this.pending.size === 0) this.waitingSinceMs = Date.now();
      this.pending.set(id, { resolve: (payload, reply) => { onReply?.(reply); resolve(payload); }, reject, deadline, into });
      corkForTurn(socket);
      socket.cork();
      const sent = { ...header, id };
      socket.write(frameHead(dataHeader, this.macs ? this.macs.sign(sent, data) : sent, data?.length ?? 0));
      if (data && data.length > 0) socket.write(data);
      socket.uncork();
    });
  }

  /** The connection, or ConnectionLost if it is not there by reachBy (a greeting
   *  unanswered by a stopped agent must not take a call past its bound). */
  private connectBy(reachBy: number): Promise<net.Socket> {
    if (this.socket) return Promise.resolve(this.socket);
    return within(this.connect(), reachBy - Date.now(), () => {
      throw new ConnectionLost('not connected in time', true);
    });
  }

  /** The connection, made and greeted if there is none. */
  private connect(): Promise<net.Socket> {
    if (this.socket) return Promise.resolve(this.socket);
    this.connecting ??= new Promise<net.Socket>((resolve, reject) => {
      const colon = this.address.lastIndexOf(':');
      const host = this.address.slice(0, colon).replace(/^\[|\]$/g, '');
      let greeted = false;
      // the data of a reply goes where its caller asked
      const destination = (reply: DataHeader, length: number) => {
        const into = this.pending.get(reply.id)?.into;
        return into && into.length >= length ? into : null;
      };
      const handshake = new ClientHandshake();
      const reader = new FrameReader<DataHeader>(dataHeader, RPC_MESSAGE_MAX_BYTES, destination, (reply, payload) => {
        if (!greeted) {
          if (reply.errno) {
            reject(new FsError(E.EIO, `agent at ${this.address} refused this node (${reply.errno === E.EACCES ? 'not a member, or another file system' : 'failed'})`));
            socket.destroy();
            return;
          }
          socket.pause();
          void handshake.answer(reply).then((auth) => {
            if (socket.destroyed) return;
            if (auth) {
              // the agent proved it is a member: the client's proof goes
              socket.write(frameHead(dataHeader, auth, 0));
              socket.resume();
              return;
            }
            greeted = true;
            this.macs = handshake.macs;
            clearTimeout(timeout);
            this.socket = socket;
            this.failedAtMs = null;
            resolve(socket);
            socket.resume();
          }, (err: Error) => {
            reject(new FsError(E.EIO, `agent at ${this.address}: ${err.message}`));
            socket.destroy();
          });
          return;
        }
        if (this.macs && !this.macs.verify(reply, payload)) {
          log.warn(`agent at ${this.address}: a reply failed its MAC; closing the connection`);
          socket.destroy();
          return;
        }
        const waiting = this.pending.get(reply.id);
        if (!waiting) return; // expired meanwhile
        this.pending.delete(reply.id);
        if (reply.errno) waiting.reject(new FsError(reply.errno));
        else waiting.resolve(payload, reply);
      });
      const socket = connectReusing(Number(this.address.slice(colon + 1)), host, (chunk) => {
        this.heardMs = Date.now();
        // it answers: calls wait for it again
        this.failedAtMs = null;
        try {
          reader.push(chunk);
        } catch {
          socket.destroy();
        }
      });
      this.attempt = socket;
      // a stopped process's kernel still accepts connections: the greeting says it runs
      const timeout = setTimeout(() => socket.destroy(), CONNECT_TIMEOUT_MS);
      socket.setNoDelay(true);
      socket.on('connect', () => {
        void handshake.hello(this.fsid, this.targetNode).then((hello) => socket.write(frameHead(dataHeader, hello, 0)), (err: Error) => {
          reject(new FsError(E.EIO, `no data key to reach the agent at ${this.address}: ${err.message}`));
          socket.destroy();
        });
      });
      socket.on('error', () => {});
      socket.on('close', () => {
        clearTimeout(timeout);
        if (this.socket === socket) {
          this.socket = null;
          this.macs = null;
        }
        this.connecting = null;
        if (!greeted) reject(new ConnectionLost('cannot connect', true));
        this.fail(new ConnectionLost('connection lost'));
      });
    }).finally(() => {
      this.connecting = null;
    });
    return this.connecting;
  }

  private fail(err: Error): void {
    const pending = [...this.pending.values()];
    this.pending.clear();
    for (const p of pending) p.reject(err);
  }

  private sendPing(socket: net.Socket, now: number): void {
    this.pingedMs = now;
    // id 0 is no request's: the reply only tells that the agent is alive
    const ping = { id: 0, op: DATA_PING };
    socket.write(frameHead(dataHeader, this.macs ? this.macs.sign(ping, null) : ping, 0));
  }

  /** Fails the waiting requests of an agent that stays silent (pinging it while it
   *  may only be slow), and requests past their deadline. Their connection goes
   *  too, so that no late reply is written into a buffer its caller has given up. */
  private check(): void {
    const now = Date.now();
    const lateMs = now - this.checkedMs - CHECK_MS;
    this.checkedMs = now;
    const socket = this.socket;
    if (!socket || this.pending.size === 0) return;
    // this process stood still (load, a long pause): its silence is not the agent's;
    // judge the agent from now on, pinging it at once
    if (lateMs > CHECK_MS) {
      this.waitingSinceMs = now;
      this.sendPing(socket, now);
      return;
    }
    const silentMs = now - Math.max(this.heardMs, this.waitingSinceMs);
    if (silentMs >= PEER_SILENCE_MS) {
      log.warn(`agent at ${this.address} did not answer for ${silentMs} ms: failing its ${this.pending.size} requests`);
      this.failedAtMs = now;
      this.socket = null;
      this.fail(new FsError(E.EIO, `agent at ${this.address} does not answer`));
      socket.destroy();
      return;
    }
    if (silentMs >= PING_AFTER_MS && now - this.pingedMs >= PING_AFTER_MS) this.sendPing(socket, now);
    let expired = false;
    for (const [id, p] of this.pending) {
      if (p.deadline > now) continue;
      this.pending.delete(id);
      p.reject(new FsError(E.EIO, `agent at ${this.address} did not answer in time`));
      expired = true;
    }
    if (expired) socket.destroy();
  }
}
