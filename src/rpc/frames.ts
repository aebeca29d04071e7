// Frames of kDFS's own TCP channels, the data channel (DataHeader) and the
// metadata sessions (SessionHeader): an 8-byte prefix (header length, data
// length), the protobuf header, then the raw data.
import type protobuf from 'protobufjs';

export const PREFIX_BYTES = 8;
/** Largest header: headers are a few dozen bytes. */
export const HEADER_MAX_BYTES = 4096;

/** The prefix and header of a frame, to write before its data. */
export function frameHead<H extends object>(headerType: protobuf.Type, header: H, dataLength: number): Buffer {
  const encoded = headerType.encode(header).finish();
  const head = Buffer.allocUnsafe(PREFIX_BYTES + encoded.length);
  head.writeUInt32BE(encoded.length, 0);
  head.writeUInt32BE(dataLength, 4);
  head.set(encoded, PREFIX_BYTES);
  return head;
}

export class FrameError extends Error {}

/** Where the data of a frame goes: a buffer at least dataLength long, or null for a new one. */
export type Destination<H> = (header: H, dataLength: number) => Buffer | null;

/** Cuts a byte stream into frames. It copies what it keeps and keeps no received
 *  chunk, so that chunks may be read into one reused buffer; frame data is
 *  copied once, straight to where `destination` says. */
export class FrameReader<H> {
  private readonly prefix = Buffer.alloc(PREFIX_BYTES);
  private readonly headerBytes = Buffer.alloc(HEADER_MAX_BYTES);
  private filled = 0;
  private state: 'prefix' | 'header' | 'data' = 'prefix';
  private headerLength = 0;
  private dataLength = 0;
  private header: H | null = null;
  private data: Buffer | null = null;

  constructor(
    private readonly headerType: protobuf.Type,
    private dataMaxBytes: number,
    private readonly destination: Destination<H>,
    private readonly onFrame: (header: H, data: Buffer) => void,
  ) {}

  /** The largest frame data taken from now on (an unauthenticated peer gets no more than a handshake's). */
  setDataMax(bytes: number): void {
    this.dataMaxBytes = bytes;
  }

  /** Takes received bytes; throws FrameError on a frame the channel must not carry. */
  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length || (this.state === 'data' && this.filled === this.dataLength)) {
      if (this.state === 'prefix') {
        const n = Math.min(PREFIX_BYTES - this.filled, chunk.length - at);
        chunk.copy(this.prefix, this.filled, at, at + n);
        this.filled += n;
        at += n;
        if (this.filled < PREFIX_BYTES) return;
        this.headerLength = this.prefix.readUInt32BE(0);
        this.dataLength = this.prefix.readUInt32BE(4);
        if (this.headerLength > HEADER_MAX_BYTES || this.dataLength > this.dataMaxBytes) {
          throw new FrameError(`frame too large (header ${this.headerLength} bytes, data ${this.dataLength} bytes)`);
        }
        this.state = 'header';
        this.filled = 0;
      }
      if (this.state === 'header') {
        const n = Math.min(this.headerLength - this.filled, chunk.length - at);
        chunk.copy(this.headerBytes, this.filled, at, at + n);
        this.filled += n;
        at += n;
        if (this.filled < this.headerLength) return;
        try {
          this.header = this.headerType.decode(this.headerBytes.subarray(0, this.headerLength)) as unknown as H;
        } catch {
          throw new FrameError('undecodable frame header');
        }
        const into = this.dataLength > 0 ? this.destination(this.header, this.dataLength) : null;
        this.data = into ? into.subarray(0, this.dataLength) : Buffer.allocUnsafe(this.dataLength);
        this.state = 'data';
        this.filled = 0;
      }
      const data = this.data!;
      const n = Math.min(this.dataLength - this.filled, chunk.length - at);
      if (n > 0) chunk.copy(data, this.filled, at, at + n);
      this.filled += n;
      at += n;
      if (this.filled < this.dataLength) return;
      const header = this.header!;
      this.state = 'prefix';
      this.filled = 0;
      this.header = null;
      this.data = null;
      this.onFrame(header, data);
    }
  }
}

const corkedForTurn = new WeakSet<import('node:net').Socket>();

/** Holds the socket's writes until the event loop's next check phase, so that
 *  the frames of every request (and the replies of every completion) handled
 *  in this turn leave in one system call: on loopback a send also runs the
 *  peer's receive, and costs more than the bytes of a small frame. */
export function corkForTurn(socket: import('node:net').Socket): void {
  if (corkedForTurn.has(socket)) return;
  corkedForTurn.add(socket);
  socket.cork();
  setImmediate(() => {
    corkedForTurn.delete(socket);
    socket.uncork();
  });
}

/** Writes frames to a socket, gathering those of one turn of the event loop
 *  into one write: the replies of a batch of requests, the requests of a batch
 *  of kernel requests. Each send wakes the peer, which costs more than the
 *  bytes; and one write of the frames joined costs the stream (and TLS) less
 *  than a write per piece, corked: a session's frames are a few hundred bytes. */
export class FrameWriter {
  private gathered: Uint8Array[] = [];
  private gatheredBytes = 0;

  constructor(private readonly socket: import('node:net').Socket) {}

  write(head: Buffer, payload: Uint8Array | null): void {
    if (this.socket.destroyed) return;
    if (this.gathered.length === 0) queueMicrotask(() => this.flush());
    this.gathered.push(head);
    this.gatheredBytes += head.length;
    if (payload && payload.length > 0) {
      this.gathered.push(payload);
      this.gatheredBytes += payload.length;
    }
  }

  /** Sends what is gathered, then ends the connection. */
  end(): void {
    this.flush();
    this.socket.end();
  }

  private flush(): void {
    const pieces = this.gathered;
    const bytes = this.gatheredBytes;
    if (pieces.length === 0) return;
    this.gathered = [];
    this.gatheredBytes = 0;
    if (this.socket.destroyed || this.socket.writableEnded) return;
    this.socket.write(pieces.length === 1 ? pieces[0] : Buffer.concat(pieces, bytes));
  }
}
