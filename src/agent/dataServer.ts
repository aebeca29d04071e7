// The data channel of an agent: stripe object reads and writes on a plain TCP
// stream (see DataHeader in proto/kdfs.proto).
import net from 'node:net';
import { E, FsError, errnoOf } from '../common/errno.js';
import { FILE_MAX_BYTES, OBJECT_READ_MAX_BYTES, RPC_MESSAGE_MAX_BYTES } from '../common/limits.js';
import { log } from '../common/log.js';
import { DATA_ALLOCATED, DATA_HELLO, DATA_PING, DATA_READ, DATA_REPLY, DATA_WRITE, type DataHeader } from '../rpc/messages.js';
import { checkLeaderEpoch, type LeaderEpochOf } from './service.js';
import { buffers } from '../common/bufferPool.js';
import { FrameReader, corkForTurn, frameHead } from '../rpc/frames.js';
import { messageType } from '../rpc/proto.js';
import { adoptReusing } from './reusedReads.js';
import { AgentHandshake } from '../security/agentHandshake.js';
import { PendingConnections } from '../security/pending.js';
import { HANDSHAKE_TIMEOUT_MS } from '../security/tls.js';
import type { ObjectStore } from './objectStore.js';
import { validKey, validOffset } from './validate.js';

const dataHeader = messageType('DataHeader');

/** Requests one connection may have in progress; past it the agent stops reading
 *  from the connection, and TCP makes the client wait. */
const IN_FLIGHT_PER_CONNECTION_MAX = 64;
/** Requests one connection may have waiting past that (those of the chunks read before the pause took effect). */
const QUEUED_PER_CONNECTION_MAX = 16384;
/** Bytes the reads in flight on one connection may take. */
const READ_BYTES_IN_FLIGHT_MAX = 64 * 1024 * 1024;
/** Bytes of replies waiting to leave on one connection past which no request is
 *  started and none read, until they have left ('drain'): a peer that does not
 *  read its replies gets no more (held at most: this, plus the reads in flight). */
const REPLY_BACKLOG_MAX_BYTES = 32 * 1024 * 1024;
const EMPTY = Buffer.alloc(0);

export class DataServer {
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  /** The data key epoch each authenticated connection proved. */
  private readonly epochs = new Map<net.Socket, number>();
  private readonly unauthenticated = new PendingConnections();

  /** leaderEpoch(): as the Agent service's (see checkLeaderEpoch). */
  constructor(private readonly store: ObjectStore, private readonly nodeId: number, private readonly fsid: () => string, private readonly leaderEpoch: LeaderEpochOf = () => 0) {
    // paused: adoptReusing takes each connection over before it is read from
    this.server = net.createServer({ pauseOnConnect: true }, (socket) => this.serve(socket));
  }

  /** Listens on host, on a port the system picks; returns the port. */
  listen(host: string, port = 0): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host.replace(/^\[|\]$/g, ''), () => resolve((this.server.address() as net.AddressInfo).port));
    });
  }

  /** The data key was replaced (a node revoked): connections proved with an older one go. */
  keyReplaced(epoch: number): void {
    for (const [socket, proved] of this.epochs) {
      if (proved < epoch) socket.destroy();
    }
  }

  /** Stops listening and drops every connection. (Not waiting for the server's
   *  close event: it counts connections by the sockets adoptReusing replaced.) */
  close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    this.server.close();
    return Promise.resolve();
  }

  private serve(accepted: net.Socket): void {
    let greeted = false;
    let inFlight = 0;
    const handshake = new AgentHandshake(this.fsid, this.nodeId);
    /** Sends a reply; `sent` runs once the socket is done with data. */
    const reply = (id: number, errno: number, data: Buffer, sent?: () => void, offset?: number) => {
      if (socket.destroyed) {
        sent?.();
        return;
      }
      let header: DataHeader = { id, op: DATA_REPLY, errno, offset };
      if (handshake.macs) header = handshake.macs.sign(header, data);
      corkForTurn(socket);
      socket.cork();
      socket.write(frameHead(dataHeader, header, data.length));
      if (data.length > 0) socket.write(data, sent);
      else sent?.();
      socket.uncork();
    };
    const pooled = new Map<number, Buffer>();
    const destination = (header: DataHeader, length: number) => {
      if (header.op !== DATA_WRITE) return null;
      const buffer = buffers.take(length);
      pooled.set(header.id, buffer);
      return buffer;
    };
    /** Requests received past the limits, in order: a chunk read holds many (the pause only stops the next). */
    const queued: { header: DataHeader; data: Buffer }[] = [];
    let readBytesInFlight = 0;
    const dispatch = () => {
      const backlogged = () => socket.writableLength > REPLY_BACKLOG_MAX_BYTES;
      while (queued.length > 0 && inFlight < IN_FLIGHT_PER_CONNECTION_MAX && !backlogged()) {
        const { header, data } = queued[0];
        const readBytes = header.op === DATA_READ ? Math.min(header.length ?? 0, OBJECT_READ_MAX_BYTES) : 0;
        // the buffers of reads in flight are bounded too: a read waits for room (one always goes)
        if (inFlight > 0 && readBytesInFlight + readBytes > READ_BYTES_IN_FLIGHT_MAX) break;
        queued.shift();
        inFlight++;
        readBytesInFlight += readBytes;
        this.handle(header, data).then(
          ({ out, pooled, offset }) => reply(header.id, 0, out, pooled && (() => buffers.give(pooled)), offset),
          (err) => reply(header.id, errnoOf(err), EMPTY),
        ).finally(() => {
          const buffer = pooled.get(header.id);
          if (buffer) {
            pooled.delete(header.id);
            buffers.give(buffer);
          }
          inFlight--;
          readBytesInFlight -= readBytes;
          dispatch();
        });
      }
      if (queued.length === 0 && inFlight < IN_FLIGHT_PER_CONNECTION_MAX && !backlogged()) socket.resume();
      else socket.pause();
    };
    // the handshake's steps, one after the other, even if a peer sends its frames at once
    let handshaking = Promise.resolve();
    const refuse = (header: DataHeader, why: string) => {
      log.warn(`data channel from ${socket.remoteAddress}:${socket.remotePort} refused: ${why}`);
      socket.write(frameHead(dataHeader, { id: header.id, op: DATA_REPLY, errno: E.EACCES }, 0));
      socket.end();
    };
    // before it is authenticated, a peer sends handshake frames only: no data
    const reader = new FrameReader<DataHeader>(dataHeader, 0, destination, (header, data) => {
      if (!greeted) {
        socket.pause();
        handshaking = handshaking.then(async () => {
          if (socket.destroyed || socket.writableEnded) return;
          if (greeted) return refuse(header, 'a request sent before the handshake was answered');
          const answer = await handshake.step(header);
          if (socket.destroyed) return;
          if (!answer.ok) return refuse(header, answer.why);
          socket.write(frameHead(dataHeader, { id: header.id, op: DATA_REPLY, errno: 0, ...answer.reply }, 0));
          if (handshake.done) {
            greeted = true;
            reader.setDataMax(RPC_MESSAGE_MAX_BYTES);
            this.epochs.set(socket, handshake.epoch);
            this.unauthenticated.authenticated(socket);
            clearTimeout(deadline);
          }
          socket.resume();
        }).catch((err: Error) => {
          log.warn(`data channel from ${socket.remoteAddress}:${socket.remotePort}: handshake failed: ${err.message}`);
          socket.destroy();
        });
        return;
      }
      if (handshake.macs && !handshake.macs.verify(header, data)) {
        log.warn(`data channel from ${socket.remoteAddress}:${socket.remotePort}: a frame failed its MAC; closing it`);
        socket.destroy();
        return;
      }
      if (header.op === DATA_PING) {
        reply(header.id, 0, EMPTY);
        return;
      }
      if (queued.length >= QUEUED_PER_CONNECTION_MAX) {
        log.warn(`data channel from ${socket.remoteAddress}:${socket.remotePort}: more than ${QUEUED_PER_CONNECTION_MAX} requests waiting; closing it`);
        socket.destroy();
        return;
      }
      queued.push({ header, data });
      dispatch();
    });
    const socket = adoptReusing(accepted, (chunk) => {
      try {
        reader.push(chunk);
      } catch (err) {
        log.warn(`data channel from ${socket.remoteAddress}:${socket.remotePort}: ${(err as Error).message}; closing it`);
        socket.destroy();
      }
    });
    this.sockets.add(socket);
    this.unauthenticated.add(socket);
    // a peer that does not authenticate in time is dropped
    const deadline = setTimeout(() => socket.destroy(), HANDSHAKE_TIMEOUT_MS);
    socket.setNoDelay(true);
    // replies that waited have left: what was held back goes on
    socket.on('drain', () => {
      if (greeted) dispatch();
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(deadline);
      this.sockets.delete(socket);
      this.epochs.delete(socket);
    });
  }

  /** Serves a request: the data of the reply, and the pool buffer that holds it, if any. */
  private async handle(header: DataHeader, data: Buffer): Promise<{ out: Buffer; pooled?: Buffer; offset?: number }> {
    switch (header.op) {
      case DATA_ALLOCATED:
        return { out: EMPTY, offset: await this.store.allocated(validKey(header.key)) };
      case DATA_WRITE: {
        await checkLeaderEpoch(header.leaderEpoch, this.leaderEpoch);
        const offset = validOffset(header.offset);
        if (offset + data.length > FILE_MAX_BYTES) throw new FsError(E.EFBIG);
        // the reply's offset: the bytes of disk the object takes now, if asked
        const allocatedBytes = await this.store.write(validKey(header.key), offset, data, header.wantAllocated === true);
        return { out: EMPTY, offset: allocatedBytes ?? undefined };
      }
      case DATA_READ: {
        const length = header.length ?? 0;
        if (length > OBJECT_READ_MAX_BYTES) throw new FsError(E.EINVAL);
        const key = validKey(header.key);
        const offset = validOffset(header.offset);
        // a reused buffer: fresh memory for every read costs page faults and garbage collections
        const pooled = buffers.take(length);
        try {
          return { out: await this.store.read(key, offset, length, pooled), pooled };
        } catch (err) {
          buffers.give(pooled);
          throw err;
        }
      }
      default:
        throw new FsError(E.EINVAL, `unknown data operation ${header.op}`);
    }
  }
}
