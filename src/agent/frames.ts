// Frames of the data channel (proto/kdfs.proto, DataHeader): an 8-byte prefix
// (header length, data length), the protobuf header, then the raw data.
import { messageType } from '../rpc/proto.js';
import type { DataHeader } from '../rpc/messages.js';

export const PREFIX_BYTES = 8;
/** Largest header: a DataHeader is a few dozen bytes. */
export const HEADER_MAX_BYTES = 4096;

const headerType = messageType('DataHeader');

/** The prefix and header of a frame, to write before its data. */
export function frameHead(header: DataHeader, dataLength: number): Buffer {
  const encoded = headerType.encode(header).finish();
  const head = Buffer.allocUnsafe(PREFIX_BYTES + encoded.length);
  head.writeUInt32BE(encoded.length, 0);
  head.writeUInt32BE(dataLength, 4);
  head.set(encoded, PREFIX_BYTES);
  return head;
}

export class FrameError extends Error {}

/** Cuts a byte stream into frames. Data that lies within one received chunk is
 *  handed out without a copy; data spread over chunks is joined once. */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  private headerLength = -1;
  private dataLength = -1;
  private header: DataHeader | null = null;

  constructor(private readonly dataMaxBytes: number, private readonly onFrame: (header: DataHeader, data: Buffer) => void) {}

  /** Takes a chunk; throws FrameError on a frame the channel must not carry. */
  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    for (;;) {
      if (this.header === null) {
        if (this.buffered < PREFIX_BYTES) return;
        if (this.headerLength < 0) {
          const prefix = this.take(PREFIX_BYTES);
          this.headerLength = prefix.readUInt32BE(0);
          this.dataLength = prefix.readUInt32BE(4);
          if (this.headerLength > HEADER_MAX_BYTES || this.dataLength > this.dataMaxBytes) {
            throw new FrameError(`frame too large (header ${this.headerLength} bytes, data ${this.dataLength} bytes)`);
          }
        }
        if (this.buffered < this.headerLength) return;
        try {
          this.header = headerType.decode(this.take(this.headerLength)) as unknown as DataHeader;
        } catch {
          throw new FrameError('undecodable frame header');
        }
      }
      if (this.buffered < this.dataLength) return;
      const header = this.header;
      const data = this.take(this.dataLength);
      this.header = null;
      this.headerLength = -1;
      this.onFrame(header, data);
    }
  }

  private take(length: number): Buffer {
    this.buffered -= length;
    const first = this.chunks[0];
    if (length === 0) return Buffer.alloc(0);
    if (first.length >= length) {
      const piece = first.subarray(0, length);
      if (first.length === length) this.chunks.shift();
      else this.chunks[0] = first.subarray(length);
      return piece;
    }
    const joined = Buffer.allocUnsafe(length);
    let at = 0;
    while (at < length) {
      const chunk = this.chunks[0];
      const n = Math.min(chunk.length, length - at);
      chunk.copy(joined, at, 0, n);
      at += n;
      if (n === chunk.length) this.chunks.shift();
      else this.chunks[0] = chunk.subarray(n);
    }
    return joined;
  }
}
