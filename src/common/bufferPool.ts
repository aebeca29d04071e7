// Buffers kept for reuse, in power-of-two sizes. Allocating a fresh megabyte for
// every stripe unit makes V8 collect garbage every few tens of milliseconds
// (external memory counts towards its heap limits); reusing them does not.
//
// Buffers of SLAB_FROM_BYTES and more are carved out of page-aligned slabs, so
// that an agent can write them to disk with O_DIRECT (see isPageAligned). A
// slab is a WebAssembly memory: the one page-aligned allocation JavaScript can
// ask for. Its pages are only resident once touched.

/** The part of the WebAssembly API used here (the compiler's libraries for Node lack it). */
declare const WebAssembly: { Memory: new (descriptor: { initial: number; maximum: number }) => { readonly buffer: ArrayBuffer } };

export const PAGE_BYTES = 4096;
const SMALLEST_BYTES = 4096;
/** Ordinary buffers kept per size; the others go to the garbage collector. */
const KEPT_PER_SIZE_MAX = 64;
const WASM_PAGE_BYTES = 65536;
const SLAB_BYTES = 64 * 1024 * 1024;
const SLAB_FROM_BYTES = 64 * 1024;
/** Slabs carved at most (256 MiB, never given back to the system: the most a node's
 *  write-behind, readahead and agent need at once): past them, large buffers are
 *  ordinary ones, written through the page cache. */
const SLABS_MAX = 4;

export class BufferPool {
  private readonly free = new Map<number, Buffer[]>();
  /** Slabs, and how much of the newest is carved. Carved buffers are never
   *  freed: they all go back to `free`, which their number bounds. */
  private readonly slabs = new Set<ArrayBufferLike>();
  private current: { memory: ArrayBuffer; carvedBytes: number } | null = null;

  /** A buffer of at least size bytes (its length is the size class: slice it). */
  take(size: number): Buffer {
    const bytes = this.classOf(size);
    return this.free.get(bytes)?.pop() ?? this.allocate(bytes);
  }

  /** The length of the buffers take(size) hands out. */
  classOf(size: number): number {
    let bytes = SMALLEST_BYTES;
    while (bytes < size) bytes *= 2;
    return bytes;
  }

  /** Gives back a whole buffer from take(); nothing may use it any more. */
  give(buffer: Buffer): void {
    let kept = this.free.get(buffer.length);
    if (!kept) this.free.set(buffer.length, (kept = []));
    if (this.slabs.has(buffer.buffer) || kept.length < KEPT_PER_SIZE_MAX) kept.push(buffer);
  }

  /** True if the memory of data starts on a page boundary, as O_DIRECT needs. */
  isPageAligned(data: Uint8Array): boolean {
    return this.slabs.has(data.buffer) && data.byteOffset % PAGE_BYTES === 0;
  }

  private allocate(bytes: number): Buffer {
    if (bytes < SLAB_FROM_BYTES || bytes > SLAB_BYTES) return Buffer.allocUnsafeSlow(bytes);
    if (!this.current || this.current.carvedBytes + bytes > SLAB_BYTES) {
      if (this.slabs.size >= SLABS_MAX) return Buffer.allocUnsafeSlow(bytes);
      const pages = SLAB_BYTES / WASM_PAGE_BYTES;
      const memory = new WebAssembly.Memory({ initial: pages, maximum: pages }).buffer;
      this.slabs.add(memory);
      this.current = { memory, carvedBytes: 0 };
    }
    // classes are powers of two from SLAB_FROM_BYTES: every carve starts on a page
    const buffer = Buffer.from(this.current.memory, this.current.carvedBytes, bytes);
    this.current.carvedBytes += bytes;
    return buffer;
  }
}

/** The pool of the process. */
export const buffers = new BufferPool();
