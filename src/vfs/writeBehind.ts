// Write-behind: a write is copied into a buffer of its stripe unit and answered
// at once; whole units (and, at close or fsync, what remains) go to their agents
// in the background.
//
// Limits: the buffers of the whole mount (WRITE_BEHIND_BYTES) and the bytes in
// flight to each agent (AGENT_IN_FLIGHT_BYTES); a writer past them waits. Sends
// to one stripe unit keep their order, so a later write to the same bytes never
// lands first. A failed send is kept and reported by the next write, close or
// fsync of the file (EIO, ENOSPC): close and fsync wait for every send.
import { buffers } from '../common/bufferPool.js';
import { ByteBudget } from '../common/byteBudget.js';
import { E, FsError, errnoOf } from '../common/errno.js';
import { log } from '../common/log.js';
import type { Layout } from '../rpc/messages.js';
import type { ReplicaIo, SendBudget } from '../replication/objects.js';

/** Memory of buffered writes, for the whole mount. */
export const WRITE_BEHIND_BYTES = 64 * 1024 * 1024;
/** Bytes being sent to one agent at a time. */
export const AGENT_IN_FLIGHT_BYTES = 16 * 1024 * 1024;
/** Units one file fills at once: 16, and never more than a quarter of the
 *  mount's buffers (each unit holds a buffer of the unit's size), 4 at least.
 *  Filling one more sends the older half together. Small writes all over a
 *  file (random I/O) fill a unit each: sent one by one, every write cost a send
 *  and a reply per copy (system calls and wake-ups on both ends); sent
 *  together, the frames to one agent go in one write and its replies come back
 *  in one. */
const FILLING_UNITS_MAX = 16;
const FILLING_UNITS_MIN = 4;

export function fillingUnitsMax(unitBytes: number): number {
  return Math.max(FILLING_UNITS_MIN, Math.min(FILLING_UNITS_MAX, Math.floor(WRITE_BEHIND_BYTES / 4 / unitBytes)));
}

interface Extent {
  unit: number;
  /** Offsets within the unit: the bytes [start, end) are written. */
  start: number;
  end: number;
  buffer: Buffer;
}

/** What a file writer knows of its file. */
export interface WrittenFile {
  ino: number;
  layout: Layout;
  /** Stripe objects written since the last fsync. */
  unsynced: Set<number>;
  /** Replica slots that failed a write, truncation or sync since the file was
   *  opened here: skipped from then on, and marked stale by the next commit. */
  failedSlots: Set<number>;
  /** Objects written since the last commit. */
  touched: Set<number>;
  /** Shared with the open file (see AllocationSeen). */
  allocation: AllocationSeen;
}

/** Per object, the most disk a copy was told to take after this node's writes,
 *  followed while every block of the file is this node's writing (a file made
 *  here that no other node knows yet): then its st_blocks needs no query of the
 *  agents, which answer writes with it. Null when not followed. */
export interface AllocationSeen {
  byObject: Map<number, number> | null;
}

/** The budgets and buffers shared by every file of a mount. */
export class WriteBehind {
  readonly memory = new ByteBudget(WRITE_BEHIND_BYTES);
  private readonly agentBudgets = new Map<number, ByteBudget>();
  private readonly writers = new Set<FileWriter>();

  constructor(readonly replicas: ReplicaIo) {}

  /** Room for bytes in flight to a node: taken before a send, given back after. */
  readonly sendBudget: SendBudget = async (nodeId, bytes) => {
    const budget = this.inFlightBudget(nodeId);
    await budget.acquire(bytes);
    return () => budget.release(bytes);
  };

  writer(file: WrittenFile): FileWriter {
    return new FileWriter(file, this);
  }

  inFlightBudget(nodeId: number): ByteBudget {
    let budget = this.agentBudgets.get(nodeId);
    if (!budget) this.agentBudgets.set(nodeId, (budget = new ByteBudget(AGENT_IN_FLIGHT_BYTES)));
    return budget;
  }

  /** A unit buffer: memory is taken from the budget first, waiting for it if need be. */
  async buffer(size: number): Promise<Buffer> {
    const acquired = this.memory.acquire(size);
    if (acquired) {
      // out of memory: send what every file is still filling, so that memory frees up
      for (const writer of [...this.writers]) writer.sendFilling();
      await acquired;
    }
    return buffers.take(size).subarray(0, size);
  }

  recycle(buffer: Buffer): void {
    this.memory.release(buffer.length);
    buffers.give(Buffer.from(buffer.buffer, buffer.byteOffset, buffers.classOf(buffer.length)));
  }

  filling(writer: FileWriter, has: boolean): void {
    if (has) this.writers.add(writer);
    else this.writers.delete(writer);
  }
}

export class FileWriter {
  /** Units being filled, oldest first. */
  private readonly filling = new Map<number, Extent>();
  /** The last send of each unit, which the next send of the unit waits for. */
  private readonly sending = new Map<number, Promise<void>>();
  private error: FsError | null = null;
  /** Ranges of the file whose send failed and that were not written since: their
   *  bytes are nowhere, so no commit may claim a size over them. */
  private readonly lost = new LostRanges();
  /** Why the last lost range was lost (ENOSPC: a full disk), for the fsync and close that report it. */
  lostErrno: number = E.EIO;
  /** The write being buffered: the next one starts after it, so that writes
   *  take effect in the order they came even when they wait for memory. */
  private writing: Promise<void> | null = null;

  constructor(private readonly file: WrittenFile, private readonly shared: WriteBehind) {}

  /** Where the first byte written but not stored is (Infinity: none). */
  get lostFromOffset(): number {
    return this.lost.first();
  }

  /** Whether any byte of [start, end) was written but not stored. */
  lostIn(start: number, end: number): boolean {
    return this.lost.overlaps(start, end);
  }

  /** The file was cut at size: nothing past it is lost any more. */
  forgetLostFrom(size: number): void {
    this.lost.remove(size, Infinity);
  }

  get idle(): boolean {
    return this.filling.size === 0 && this.sending.size === 0 && this.writing === null;
  }

  /** The file's copies moved (see Layout.moves): sends from now on go by `layout`. */
  setLayout(layout: Layout): void {
    this.file.layout = layout;
  }

  /** Resolves once the sends started so far are done (whatever their outcome). */
  async inFlight(): Promise<void> {
    await Promise.all([...this.sending.values()].map((sent) => sent.catch(() => {})));
  }

  /** Buffers the data; waits only for memory (and for the writes before it). */
  write(offset: number, data: Buffer): Promise<void> {
    const previous = this.writing;
    const done = previous ? previous.then(() => this.buffer(offset, data), () => this.buffer(offset, data)) : this.buffer(offset, data);
    const settled = done.then(() => {}, () => {});
    this.writing = settled;
    void settled.then(() => {
      if (this.writing === settled) this.writing = null;
    });
    return done;
  }

  private async buffer(offset: number, data: Buffer): Promise<void> {
    this.throwError();
    const unitBytes = this.file.layout.unitBytes;
    for (let at = 0; at < data.length;) {
      const unit = Math.floor((offset + at) / unitBytes);
      const start = offset + at - unit * unitBytes;
      const length = Math.min(unitBytes - start, data.length - at);
      let extent = this.filling.get(unit);
      if (extent && (start > extent.end || start + length < extent.start)) {
        // not adjacent to what the unit holds: send that, start anew
        this.send(extent);
        extent = undefined;
      }
      if (!extent) {
        const fillingMax = fillingUnitsMax(unitBytes);
        if (this.filling.size >= fillingMax) this.sendOldest(fillingMax / 2);
        const buffer = await this.shared.buffer(unitBytes);
        // another write may have started this unit while this one waited
        extent = this.filling.get(unit);
        if (extent && (start > extent.end || start + length < extent.start)) {
          this.send(extent);
          extent = undefined;
        }
        if (extent) {
          this.shared.recycle(buffer);
        } else {
          extent = { unit, start, end: start, buffer };
          this.filling.set(unit, extent);
          this.shared.filling(this, true);
        }
      }
      data.copy(extent.buffer, start, at, at + length);
      extent.start = Math.min(extent.start, start);
      extent.end = Math.max(extent.end, start + length);
      if (extent.start === 0 && extent.end === unitBytes) this.send(extent);
      at += length;
    }
  }

  private sendOldest(count: number): void {
    for (const extent of [...this.filling.values()].slice(0, count)) this.send(extent);
  }

  /** Sends every unit being filled. */
  sendFilling(): void {
    for (const extent of [...this.filling.values()]) this.send(extent);
  }

  /** Everything written is at its agents (or failed): for reads and truncation. */
  async settle(): Promise<void> {
    while (this.writing) await this.writing;
    this.sendFilling();
    while (this.sending.size > 0) await Promise.all(this.sending.values());
  }

  /** Everything written is at its agents; throws the first failure since the last report. */
  async drain(): Promise<void> {
    await this.settle();
    this.throwError();
  }

  private throwError(): void {
    const error = this.error;
    if (!error) return;
    this.error = null;
    throw error;
  }

  /** A copy of the object takes allocatedBytes now: allocation only grows with
   *  writes, and the last reply follows every write done before it, so the
   *  most told is what the copy takes once the writes are over. */
  private seen(object: number, allocatedBytes: number | null): void {
    const allocation = this.file.allocation;
    const seen = allocation.byObject;
    if (!seen) return;
    if (allocatedBytes === null) allocation.byObject = null;
    else seen.set(object, Math.max(seen.get(object) ?? 0, allocatedBytes));
  }

  private send(extent: Extent): void {
    this.filling.delete(extent.unit);
    if (this.filling.size === 0) this.shared.filling(this, false);
    const { ino, layout, unsynced, failedSlots, touched } = this.file;
    touched.add(extent.unit % layout.nodes.length);
    const count = layout.nodes.length;
    const object = extent.unit % count;
    const objectOffset = Math.floor(extent.unit / count) * layout.unitBytes + extent.start;
    const length = extent.end - extent.start;
    const fileOffset = extent.unit * layout.unitBytes + extent.start;
    const previous = this.sending.get(extent.unit);
    const sent = (async () => {
      if (previous) await previous;
      try {
        const failedNow = await this.shared.replicas.write(ino, this.file.layout, object, objectOffset, extent.buffer.subarray(extent.start, extent.end),
          failedSlots, this.shared.sendBudget, this.file.allocation.byObject ? (allocatedBytes) => this.seen(object, allocatedBytes) : undefined);
        // copies that missed it are stale from now: the next commit says so
        for (const slot of failedNow) failedSlots.add(slot);
        unsynced.add(object);
        this.lost.remove(fileOffset, fileOffset + length);
      } catch (err) {
        this.lost.add(fileOffset, fileOffset + length);
        const errno = errnoOf(err);
        this.lostErrno = errno === E.ENOSPC ? E.ENOSPC : E.EIO;
        if (errno === E.EIO) log.warn(`write-behind of inode ${ino}, object ${object}: ${(err as Error).message}`);
        this.error ??= err instanceof FsError ? err : new FsError(errno);
      } finally {
        this.shared.recycle(extent.buffer);
      }
    })();
    this.sending.set(extent.unit, sent);
    void sent.then(() => {
      if (this.sending.get(extent.unit) === sent) this.sending.delete(extent.unit);
    });
  }
}

/** Lost ranges remembered one by one; past that, one range covers them all. */
const LOST_RANGES_MAX = 64;

/** Disjoint [start, end) ranges of a file. */
export class LostRanges {
  private ranges: { start: number; end: number }[] = [];

  overlaps(start: number, end: number): boolean {
    return this.ranges.some((r) => r.start < end && r.end > start);
  }

  first(): number {
    let first = Infinity;
    for (const range of this.ranges) first = Math.min(first, range.start);
    return first;
  }

  add(start: number, end: number): void {
    this.remove(start, end);
    this.ranges.push({ start, end });
    if (this.ranges.length > LOST_RANGES_MAX) {
      // coarser but never smaller: what was lost stays lost
      this.ranges = [{ start: this.first(), end: Math.max(...this.ranges.map((r) => r.end)) }];
    }
  }

  /** [start, end) was stored since: it is lost no more. */
  remove(start: number, end: number): void {
    if (this.ranges.length === 0) return;
    const kept: { start: number; end: number }[] = [];
    for (const r of this.ranges) {
      if (r.end <= start || r.start >= end) kept.push(r);
      else {
        if (r.start < start) kept.push({ start: r.start, end: start });
        if (r.end > end) kept.push({ start: end, end: r.end });
      }
    }
    this.ranges = kept;
  }
}
