// Readahead: a handle that reads sequentially gets the next stripe units fetched
// ahead, whole, from their agents in parallel, and its reads answered from them
// without a copy. The window per file and the memory of the whole mount are
// bounded; without memory to spare, reads go to the agents as they come.
import { buffers } from '../common/bufferPool.js';
import { ByteBudget } from '../common/byteBudget.js';
import type { Layout } from '../rpc/messages.js';
import type { ReplicaIo } from '../replication/objects.js';
import { zeroPieces } from './holes.js';

/** Bytes fetched ahead of a sequential reader. */
export const READ_AHEAD_WINDOW_BYTES = 16 * 1024 * 1024;
/** Memory of fetched units, for the whole mount. */
export const READ_AHEAD_BYTES = 64 * 1024 * 1024;
/** Sequential reads in a row before fetching ahead (the first read at offset 0 counts). */
const SEQUENTIAL_READS = 2;
/** How far from where a sequential run has got to a read may land and still continue it. */
const SEQUENTIAL_SLACK_BYTES = 4 * 1024 * 1024;

interface Unit {
  /** The pooled buffer the unit is read into. */
  buffer: Buffer;
  data: Promise<Buffer>;
  settled: boolean;
  /** Reads using the unit's buffer now. */
  readers: number;
  dropped: boolean;
}

export class ReadAheadBudget {
  readonly memory = new ByteBudget(READ_AHEAD_BYTES);
}

/** The fetched units of one open file, and how its handles read. */
export class FileReadAhead {
  private readonly units = new Map<number, Unit>();

  constructor(
    private readonly ino: number,
    /** The file's layout as this node knows it now (copies found stale are not read). */
    private readonly currentLayout: () => Layout,
    private readonly replicas: ReplicaIo,
    private readonly budget: ReadAheadBudget,
  ) {}

  /** Whether a read continues a sequential run: updates the handle's run. The
   *  kernel's own readahead sends several reads at once, which may arrive out of
   *  order: a read near where the run has got to continues it. */
  static follow(run: { next: number; streak: number }, offset: number, length: number): boolean {
    const near = offset >= run.next - SEQUENTIAL_SLACK_BYTES && offset <= run.next + SEQUENTIAL_SLACK_BYTES;
    run.streak = near && (run.streak > 0 || offset === run.next) ? run.streak + 1 : offset === 0 ? 1 : 0;
    run.next = run.streak > 1 ? Math.max(run.next, offset + length) : offset + length;
    return run.streak >= SEQUENTIAL_READS;
  }

  /** The bytes [offset, offset + length) of a file of fileSize bytes, fetching
   *  ahead of them; null if memory is short (the caller reads directly). The
   *  pieces stay valid until the caller's microtasks are done (see recycle). */
  async read(offset: number, length: number, fileSize: number): Promise<Buffer[] | null> {
    const { unitBytes } = this.currentLayout();
    const first = Math.floor(offset / unitBytes);
    const last = Math.floor((offset + length - 1) / unitBytes);
    const lastInFile = Math.floor((fileSize - 1) / unitBytes);
    const ahead = Math.max(1, Math.floor(READ_AHEAD_WINDOW_BYTES / unitBytes));
    // units behind the reader are done with
    for (const [unit, fetched] of this.units) {
      if (unit < first) this.drop(unit, fetched);
    }
    for (let unit = first; unit <= Math.min(last + ahead, lastInFile); unit++) {
      if (this.units.has(unit)) continue;
      if (!this.budget.memory.tryAcquire(unitBytes)) {
        if (unit <= last) return null;
        break;
      }
      this.units.set(unit, this.fetch(unit, Math.min(unitBytes, fileSize - unit * unitBytes)));
    }
    const used: Unit[] = [];
    for (let unit = first; unit <= last; unit++) used.push(this.units.get(unit)!);
    for (const unit of used) unit.readers++;
    try {
      const data = await Promise.all(used.map((unit) => unit.data));
      const pieces: Buffer[] = [];
      data.forEach((bytes, i) => {
        const unit = first + i;
        const from = unit === first ? offset - unit * unitBytes : 0;
        const to = Math.min(unitBytes, offset + length - unit * unitBytes);
        if (from < bytes.length) pieces.push(bytes.subarray(from, Math.min(to, bytes.length)));
        // short of the wanted end: the rest of the unit is a hole
        if (to > Math.max(from, bytes.length)) pieces.push(...zeroPieces(to - Math.max(from, bytes.length)));
      });
      return pieces;
    } finally {
      for (const unit of used) {
        unit.readers--;
        this.recycle(unit);
      }
    }
  }

  /** Forgets every fetched unit: the file changed. */
  clear(): void {
    for (const [unit, fetched] of this.units) this.drop(unit, fetched);
  }

  private fetch(unit: number, bytes: number): Unit {
    const layout = this.currentLayout();
    const count = layout.nodes.length;
    const object = unit % count;
    const objectOffset = Math.floor(unit / count) * layout.unitBytes;
    const fetched: Unit = { buffer: buffers.take(layout.unitBytes), data: Promise.resolve(Buffer.alloc(0)), settled: false, readers: 0, dropped: false };
    fetched.data = this.replicas.read(this.ino, layout, object, objectOffset, bytes, fetched.buffer);
    void fetched.data.then(
      () => {
        fetched.settled = true;
        this.recycle(fetched);
      },
      () => {
        // a failed fetch is not kept: the read that awaits it reports the error
        fetched.settled = true;
        if (this.units.get(unit) === fetched) this.drop(unit, fetched);
        else this.recycle(fetched);
      },
    );
    return fetched;
  }

  private drop(unit: number, fetched: Unit): void {
    this.units.delete(unit);
    fetched.dropped = true;
    this.recycle(fetched);
  }

  /** A dropped unit's buffer goes back to the pool once its fetch is over and no
   *  read uses it, and after the current microtasks: the pieces of the last read
   *  are answered from it in those. */
  private recycle(fetched: Unit): void {
    if (!fetched.dropped || !fetched.settled || fetched.readers > 0 || fetched.buffer.length === 0) return;
    const buffer = fetched.buffer;
    fetched.buffer = Buffer.alloc(0);
    this.budget.memory.release(this.currentLayout().unitBytes);
    setImmediate(() => buffers.give(buffer));
  }
}
