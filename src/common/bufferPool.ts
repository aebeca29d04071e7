// Buffers kept for reuse, in power-of-two sizes. Allocating a fresh megabyte for
// every stripe unit makes V8 collect garbage every few tens of milliseconds
// (external memory counts towards its heap limits); reusing them does not.
//
// Buffers of SLAB_FROM_BYTES and more are carved out of page-aligned slabs, so
// that an agent can write them to disk with O_DIRECT (see isPageAligned). A
// slab is a WebAssembly memory: the one page-aligned allocation JavaScript can
// ask for. Its pages are resident once touched and never given back, so slabs
// are shared by every size (a buddy allocator: a block given back merges with
// its free twin), and the memory resident for them is the most the process ever
// had taken at once, whatever the sizes. Smaller buffers are ordinary ones,
// kept up to ORDINARY_KEPT_BYTES_MAX in all.

/** The part of the WebAssembly API used here (the compiler's libraries for Node lack it). */
declare const WebAssembly: { Memory: new (descriptor: { initial: number; maximum: number }) => { readonly buffer: ArrayBuffer } };

export const PAGE_BYTES = 4096;
const SMALLEST_BYTES = 4096;
/** Bytes of ordinary buffers kept for reuse, all sizes together. */
const ORDINARY_KEPT_BYTES_MAX = 8 * 1024 * 1024;
const WASM_PAGE_BYTES = 65536;
const SLAB_BYTES = 64 * 1024 * 1024;
const SLAB_FROM_BYTES = 64 * 1024;
/** Block sizes of a slab: SLAB_FROM_BYTES << order, for order 0..ORDERS-1. */
const ORDERS = Math.log2(SLAB_BYTES / SLAB_FROM_BYTES) + 1;
/** Slabs made at most (256 MiB of address space): past them, large buffers are
 *  ordinary ones, written through the page cache. The budgets of write-behind,
 *  readahead and the agent keep what is taken at once well below. */
const SLABS_MAX = 4;

interface Slab {
  memory: ArrayBuffer;
  /** Offsets of the free blocks, by order. */
  free: Set<number>[];
}

export class BufferPool {
  private readonly ordinary = new Map<number, Buffer[]>();
  private ordinaryKeptBytes = 0;
  private readonly slabs = new Map<ArrayBufferLike, Slab>();

  /** A buffer of at least size bytes (its length is the size class: slice it). */
  take(size: number): Buffer {
    const bytes = this.classOf(size);
    if (bytes < SLAB_FROM_BYTES || bytes > SLAB_BYTES) return this.takeOrdinary(bytes);
    return this.carve(Math.log2(bytes / SLAB_FROM_BYTES)) ?? this.takeOrdinary(bytes);
  }

  /** The length of the buffers take(size) hands out. */
  classOf(size: number): number {
    let bytes = SMALLEST_BYTES;
    while (bytes < size) bytes *= 2;
    return bytes;
  }

  /** Gives back a whole buffer from take(); nothing may use it any more. */
  give(buffer: Buffer): void {
    const slab = this.slabs.get(buffer.buffer);
    if (slab) return this.release(slab, buffer.byteOffset, Math.log2(buffer.length / SLAB_FROM_BYTES));
    if (this.ordinaryKeptBytes + buffer.length > ORDINARY_KEPT_BYTES_MAX) return;
    let kept = this.ordinary.get(buffer.length);
    if (!kept) this.ordinary.set(buffer.length, (kept = []));
    kept.push(buffer);
    this.ordinaryKeptBytes += buffer.length;
  }

  /** True if the memory of data starts on a page boundary, as O_DIRECT needs. */
  isPageAligned(data: Uint8Array): boolean {
    return this.slabs.has(data.buffer) && data.byteOffset % PAGE_BYTES === 0;
  }

  /** Bytes of slab blocks taken and not given back (for tests and assertions). */
  slabBytesTaken(): number {
    let freeBytes = 0;
    for (const slab of this.slabs.values()) {
      slab.free.forEach((offsets, order) => (freeBytes += offsets.size * (SLAB_FROM_BYTES << order)));
    }
    return this.slabs.size * SLAB_BYTES - freeBytes;
  }

  private takeOrdinary(bytes: number): Buffer {
    const kept = this.ordinary.get(bytes)?.pop();
    if (!kept) return Buffer.allocUnsafeSlow(bytes);
    this.ordinaryKeptBytes -= bytes;
    return kept;
  }

  /** A block of the order, split from the smallest free block that holds it,
   *  preferring the oldest slab (whose pages are the likeliest to be resident). */
  private carve(order: number): Buffer | null {
    for (const slab of this.slabs.values()) {
      const block = this.split(slab, order);
      if (block !== null) return block;
    }
    if (this.slabs.size >= SLABS_MAX) return null;
    const pages = SLAB_BYTES / WASM_PAGE_BYTES;
    const memory = new WebAssembly.Memory({ initial: pages, maximum: pages }).buffer;
    const slab: Slab = { memory, free: Array.from({ length: ORDERS }, () => new Set<number>()) };
    slab.free[ORDERS - 1].add(0);
    this.slabs.set(memory, slab);
    return this.split(slab, order);
  }

  private split(slab: Slab, order: number): Buffer | null {
    let from = order;
    while (from < ORDERS && slab.free[from].size === 0) from++;
    if (from === ORDERS) return null;
    const offset = slab.free[from].values().next().value as number;
    slab.free[from].delete(offset);
    // the upper halves stay free, one per order on the way down
    while (from > order) {
      from--;
      slab.free[from].add(offset + (SLAB_FROM_BYTES << from));
    }
    return Buffer.from(slab.memory, offset, SLAB_FROM_BYTES << order);
  }

  private release(slab: Slab, offset: number, order: number): void {
    if (!Number.isInteger(order) || order < 0 || order >= ORDERS || offset % (SLAB_FROM_BYTES << order) !== 0) {
      throw new Error(`buffer pool: a slab buffer of ${SLAB_FROM_BYTES << order} bytes at ${offset} is not one it handed out`);
    }
    while (order < ORDERS - 1) {
      const twin = offset ^ (SLAB_FROM_BYTES << order);
      if (!slab.free[order].delete(twin)) break;
      offset = Math.min(offset, twin);
      order++;
    }
    if (slab.free[order].has(offset)) throw new Error(`buffer pool: the block at ${offset} was given back twice`);
    slab.free[order].add(offset);
  }
}

/** The pool of the process. */
export const buffers = new BufferPool();
