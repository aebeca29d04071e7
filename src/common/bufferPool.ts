// Buffers kept for reuse, in power-of-two sizes. Allocating a fresh megabyte for
// every stripe unit makes V8 collect garbage every few tens of milliseconds
// (external memory counts towards its heap limits); reusing them does not.

/** Buffers kept per size. */
const KEPT_PER_SIZE_MAX = 64;
const SMALLEST_BYTES = 4096;

export class BufferPool {
  private readonly free = new Map<number, Buffer[]>();

  /** A buffer of at least size bytes (its length is the size class: slice it). */
  take(size: number): Buffer {
    const bytes = this.classOf(size);
    return this.free.get(bytes)?.pop() ?? Buffer.allocUnsafeSlow(bytes);
  }

  /** The length of the buffers take(size) hands out. */
  classOf(size: number): number {
    let bytes = SMALLEST_BYTES;
    while (bytes < size) bytes *= 2;
    return bytes;
  }

  /** Gives back a buffer from take(); nothing may use it any more. */
  give(buffer: Buffer): void {
    let kept = this.free.get(buffer.length);
    if (!kept) this.free.set(buffer.length, (kept = []));
    if (kept.length < KEPT_PER_SIZE_MAX) kept.push(buffer);
  }
}

/** The pool of the process. */
export const buffers = new BufferPool();
