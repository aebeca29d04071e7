// A client of an agent's data channel (see DataHeader in proto/kdfs.proto): one
// connection, requests pipelined on it. A connection that drops is made again
// and its requests sent again (reads and writes of objects are safe to repeat),
// until the deadline of each request.
import net from 'node:net';
import { E, FsError } from '../common/errno.js';
import { AGENT_DEADLINE_MS, RPC_MESSAGE_MAX_BYTES } from '../common/limits.js';
import { DATA_ALLOCATED, DATA_HELLO, DATA_READ, DATA_WRITE, type DataHeader, type ObjectKey } from '../rpc/messages.js';
import { FrameReader, frameHead } from '../rpc/frames.js';
import { messageType } from '../rpc/proto.js';
import { connectReusing } from './reusedReads.js';

const dataHeader = messageType('DataHeader');

/** Pauses between attempts to reach an agent that cannot be reached. */
const RETRY_FIRST_MS = 50;
const RETRY_MAX_MS = 1000;
/** How often requests are checked against their deadline (one timer per client, not one per request). */
const DEADLINE_CHECK_MS = 1000;

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

  /** onUnreachable: called when a connection cannot be made (the agent may have moved: see moveTo). */
  constructor(private address: string, private readonly fsid: string, private readonly onUnreachable?: () => void) {
    this.timer = setInterval(() => this.expire(), DEADLINE_CHECK_MS);
    this.timer.unref();
  }

  get peer(): string {
    return this.address;
  }

  /** The agent now listens at another address: requests waiting to be sent go there. */
  moveTo(address: string): void {
    if (address === this.address) return;
    this.address = address;
    // a connection being made, or made, to the old address: its requests are sent again
    this.attempt?.destroy();
  }

  async write(key: ObjectKey, offset: number, data: Uint8Array): Promise<void> {
    await this.call({ id: 0, op: DATA_WRITE, key, offset }, data, null);
  }

  /** Bytes of disk the object takes. */
  async allocated(key: ObjectKey): Promise<number> {
    let bytes = 0;
    await this.call({ id: 0, op: DATA_ALLOCATED, key }, null, null, (reply) => (bytes = reply.offset ?? 0));
    return bytes;
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

  private async call(header: DataHeader, data: Uint8Array | null, into: Buffer | null, onReply?: (reply: DataHeader) => void): Promise<Buffer> {
    const deadline = Date.now() + AGENT_DEADLINE_MS;
    for (let backoffMs = RETRY_FIRST_MS; ; backoffMs = Math.min(backoffMs * 2, RETRY_MAX_MS)) {
      try {
        const socket = await this.connect();
        return await this.send(socket, header, data, deadline, into, onReply);
      } catch (err) {
        if (!(err instanceof ConnectionLost) || this.closed) throw err;
        if (err.unreachable) this.onUnreachable?.();
        if (Date.now() + backoffMs >= deadline) throw new FsError(E.EIO, `agent at ${this.address}: ${err.message}`);
        await new Promise((resolve) => setTimeout(resolve, backoffMs));
      }
    }
  }

  private send(socket: net.Socket, header: DataHeader, data: Uint8Array | null, deadline: number, into: Buffer | null, onReply?: (reply: DataHeader) => void): Promise<Buffer> {
    const id = this.nextId;
    this.nextId = this.nextId >= 0x7fffffff ? 1 : this.nextId + 1;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: (payload, reply) => { onReply?.(reply); resolve(payload); }, reject, deadline, into });
      socket.cork();
      socket.write(frameHead(dataHeader, { ...header, id }, data?.length ?? 0));
      if (data && data.length > 0) socket.write(data);
      socket.uncork();
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
      const reader = new FrameReader<DataHeader>(dataHeader, RPC_MESSAGE_MAX_BYTES, destination, (reply, payload) => {
        if (!greeted) {
          if (reply.errno) {
            reject(new FsError(E.EIO, `agent at ${this.address} refused this file system`));
            socket.destroy();
            return;
          }
          greeted = true;
          this.socket = socket;
          resolve(socket);
          return;
        }
        const waiting = this.pending.get(reply.id);
        if (!waiting) return; // expired meanwhile
        this.pending.delete(reply.id);
        if (reply.errno) waiting.reject(new FsError(reply.errno));
        else waiting.resolve(payload, reply);
      });
      const socket = connectReusing(Number(this.address.slice(colon + 1)), host, (chunk) => {
        try {
          reader.push(chunk);
        } catch {
          socket.destroy();
        }
      });
      this.attempt = socket;
      socket.setNoDelay(true);
      socket.on('connect', () => socket.write(frameHead(dataHeader, { id: 0, op: DATA_HELLO, fsid: this.fsid }, 0)));
      socket.on('error', () => {});
      socket.on('close', () => {
        if (this.socket === socket) this.socket = null;
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

  /** Fails requests past their deadline. Their agent is hung: its connection goes
   *  too, so that no late reply is written into a buffer its caller has given up. */
  private expire(): void {
    const now = Date.now();
    let expired = false;
    for (const [id, p] of this.pending) {
      if (p.deadline > now) continue;
      this.pending.delete(id);
      p.reject(new FsError(E.EIO, `agent at ${this.address} did not answer in time`));
      expired = true;
    }
    if (expired) this.socket?.destroy();
  }
}
