// Connections not yet authenticated, at most PENDING_MAX per listener: past
// it, the oldest is dropped for the newest. A member proves itself within
// milliseconds, so an outsider holding connections open (even from the same
// address: on one machine every peer is 127.0.0.1) never locks members out,
// and what unauthenticated peers can hold is bounded.
import type net from 'node:net';

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
