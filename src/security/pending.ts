// Connections not yet authenticated, at most PENDING_MAX per listener: past
// it, the oldest is dropped for the newest. A member proves itself within
// milliseconds, so an outsider holding connections open (even from the same
// address: on one machine every peer is 127.0.0.1) never locks members out,
// and what unauthenticated peers can hold is bounded.
import type net from 'node:net';
import type tls from 'node:tls';

export const PENDING_MAX = 128;

export class PendingConnections {
  /** In arrival order (a Set iterates in insertion order). */
  private readonly pending = new Set<net.Socket>();

  add(socket: net.Socket): void {
    if (this.pending.size >= PENDING_MAX) {
      const oldest = this.pending.values().next().value!;
      this.pending.delete(oldest);
      oldest.destroy();
    }
    this.pending.add(socket);
    socket.once('close', () => this.pending.delete(socket));
  }

  /** The connection proved itself: it is no longer the first to go. */
  authenticated(socket: net.Socket): void {
    this.pending.delete(socket);
  }

  get size(): number {
    return this.pending.size;
  }
}

/** A TLS server's connections still in their handshake: at most PENDING_MAX
 *  (the oldest dropped first), each dropped if not done within timeoutMs
 *  (Node only reports a handshake timeout, and leaves the socket open). */
export function boundHandshakes(server: tls.Server, timeoutMs: number, onRefused?: (err: Error, socket: tls.TLSSocket) => void): void {
  const handshaking = new PendingConnections();
  const timers = new WeakMap<net.Socket, NodeJS.Timeout>();
  server.on('connection', (socket: net.Socket) => {
    handshaking.add(socket);
    const timer = setTimeout(() => socket.destroy(), timeoutMs);
    timer.unref();
    timers.set(socket, timer);
    socket.once('close', () => clearTimeout(timer));
  });
  server.on('secureConnection', (secured: tls.TLSSocket) => {
    const raw = (secured as unknown as { _parent?: net.Socket })._parent ?? secured;
    handshaking.authenticated(raw);
    clearTimeout(timers.get(raw));
  });
  server.on('tlsClientError', (err: Error, socket: tls.TLSSocket) => {
    onRefused?.(err, socket);
    socket.destroy();
  });
}
