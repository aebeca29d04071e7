// Raw connections of a test to a node's listeners: what a peer received,
// frames if it speaks them, and when the listener closed the connection.
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import tls from 'node:tls';
import type protobuf from 'protobufjs';
import { FrameReader, frameHead } from '../../src/rpc/frames.js';
import { MEMBER_SERVERNAME } from '../../src/security/tls.js';

const MiB = 1024 * 1024;
/** How long a listener may take to drop a connection it refuses (its handshake bound is 5 s). */
export const CLOSE_BOUND_MS = 8_000;

/** One connection of the test to a listener: what it received, frames if it speaks them, and when it closed. */
export class Peer<H extends object = object> {
  readonly frames: { header: H; data: Buffer }[] = [];
  /** The bytes received, when the peer speaks no frames of kDFS (the first MiB). */
  readonly raw: Buffer[] = [];
  received = 0;
  closed = false;
  error: Error | null = null;
  garbled = false;
  private wake: (() => void) | null = null;
  private readonly reader: FrameReader<H> | null;

  constructor(readonly socket: net.Socket, private readonly type: protobuf.Type | null = null) {
    this.reader = type ? new FrameReader<H>(type, 64 * MiB, () => null, (header, data) => {
      this.frames.push({ header, data });
      this.poke();
    }) : null;
    socket.on('data', (chunk: Buffer) => {
      if (!this.reader && this.received < MiB) this.raw.push(Buffer.from(chunk));
      this.received += chunk.length;
      try {
        this.reader?.push(chunk);
      } catch {
        this.garbled = true;
      }
    });
    socket.on('error', (err) => (this.error = err));
    socket.on('close', () => {
      this.closed = true;
      this.poke();
    });
  }

  private poke(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  private async until(condition: () => boolean, ms: number): Promise<boolean> {
    const deadline = Date.now() + ms;
    while (!condition()) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    return true;
  }

  /** The next frame received, or null if the connection closed (or nothing came) first. */
  async next(ms = 5000): Promise<{ header: H; data: Buffer } | null> {
    await this.until(() => this.frames.length > 0 || this.closed, ms);
    return this.frames.shift() ?? null;
  }

  /** Whether the listener closed the connection within `ms`. */
  closedWithin(ms = CLOSE_BOUND_MS): Promise<boolean> {
    return this.until(() => this.closed, ms);
  }

  send(header: H, data: Buffer | null = null): void {
    this.write(frameHead(this.type!, header, data?.length ?? 0));
    if (data && data.length > 0) this.write(data);
  }

  write(bytes: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(bytes, () => {});
  }

  destroy(): void {
    this.socket.destroy();
  }
}

export function tcp<H extends object>(port: number, type: protobuf.Type | null = null): Promise<Peer<H>> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => resolve(new Peer<H>(socket, type)));
    socket.once('error', reject);
  });
}

export interface TlsIdentity { key?: string; cert?: string; ca: string }

/** A TLS connection; resolves once the client side of the handshake is done (TLS 1.3: before the server checked its certificate). */
export function tlsTo<H extends object>(port: number, id: TlsIdentity, type: protobuf.Type | null = null, alpn?: string[]): Promise<Peer<H>> {
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host: '127.0.0.1', port, servername: MEMBER_SERVERNAME, ca: id.ca, key: id.key, cert: id.cert,
      checkServerIdentity: () => undefined, minVersion: 'TLSv1.2', ALPNProtocols: alpn,
    });
    const peer = new Peer<H>(socket, type);
    socket.once('secureConnect', () => resolve(peer));
    socket.once('error', reject);
    socket.once('close', () => reject(new Error('closed during the TLS handshake')));
  });
}


/** TCP ports a process listens on. */
export function listeningPorts(pid: number): number[] {
  const out = execFileSync('ss', ['-ltnpH'], { encoding: 'utf8' });
  return out.split('\n').filter((line) => line.includes(`pid=${pid},`)).map((line) => {
    const local = line.trim().split(/\s+/)[3];
    return Number(local.slice(local.lastIndexOf(':') + 1));
  });
}
