// Regular files open on this node: reads and writes striped over the agents,
// and the size and mtime of this node's writes, committed to the metadata
// service at close (flush) and fsync. A small file's content lives in its inode
// (inlined, up to INLINE_MAX_BYTES): it comes with the open, and goes back with
// the commit, no agent involved; a write past that spills it to its objects.
import { constants } from 'node:fs';
import { now } from '../common/clock.js';
import { E, FsError } from '../common/errno.js';
import { FILE_MAX_BYTES, INLINE_MAX_BYTES } from '../common/limits.js';
import { mapRange, objectLength } from '../layout/stripe.js';
import type { Entry, MetaClient } from '../meta/client.js';
import { FALLOCATE_ALLOCATE, FALLOCATE_PUNCH, type Attr, type Layout, type Timespec } from '../rpc/messages.js';
import { replicasOf, slotOf, withStale } from '../layout/replicas.js';
import { log } from '../common/log.js';
import { ReplicaIo } from '../replication/objects.js';
import type { AgentPool } from './agents.js';
import type { AttrCache } from './attrCache.js';
import { Closer } from './closer.js';
import { type ByteRange, piecesOf, withRange, withoutPast, writeInto } from '../common/patch.js';
import { ContentCache } from './contentCache.js';
import { zeroPieces } from './holes.js';
import { FileReadAhead, ReadAheadBudget } from './readAhead.js';
import { WriteBehind, type FileWriter, type WrittenFile } from './writeBehind.js';

const EMPTY_CONTENT = Buffer.alloc(0);
/** Most files one node holds open at once. */
const OPEN_HANDLES_MAX = 65536;

/** Spills of an inlined file (see OpenFiles.spill) tried, at most, while other nodes' commits keep changing it. */
const SPILL_ATTEMPTS_MAX = 8;

/** A regular file open on this node, shared by all its handles. */
export interface OpenFile extends WrittenFile {
  ino: number;
  layout: Layout;
  /** The size as this node knows it: the size at open, then this node's writes and truncations. */
  size: number;
  /** Time of the last write not yet committed to the metadata service; null
   *  once a time set since (here or on another node) supersedes it. */
  mtime: Timespec | null;
  /** End of the writes not yet committed, since the last commit or a size set
   *  since (here or elsewhere): what the commit claims, never more, so that it
   *  does not undo another node's truncation. */
  dirtyEnd: number;
  /** Another node changed the content of this inlined file: read it again before use. */
  stale: boolean;
  /** Another node changed the data: copies may have been marked stale since; the
   *  layout is fetched again before the next read. */
  layoutOutdated: boolean;
  /** Writes made, and made as of the last commit: equal when nothing is to commit. */
  written: number;
  committed: number;
  writer: FileWriter;
  readAhead: FileReadAhead;
  /** The content while the file is inlined (zeros follow it up to the size), else null. */
  inline: Buffer | null;
  /** The ranges of `inline` this node wrote since its last commit, sorted and
   *  apart: only they are committed, so that other nodes' writes stay. */
  inlineDirty: ByteRange[];
  /** The spill in progress (see OpenFiles.spill): writes, reads and commits wait for it. */
  spilling: Promise<void> | null;
  handles: number;
  /** Handles that bypass the kernel's page cache: none or all of them. */
  directHandles: number;
  /** The layout the writer writes by: the one of the open (see commit). */
  writerLayout: Layout;
}

interface Handle {
  file: OpenFile;
  append: boolean;
  direct: boolean;
  /** Where a sequential read would go next, and how many came in a row. */
  run: { next: number; streak: number };
}

export class OpenFiles {
  private readonly handles = new Map<number, Handle>();
  private readonly files = new Map<number, OpenFile>();
  /** Last closes on their way: the metadata service must hear of a close before
   *  it hears of a new open, or the close would undo the open. */
  private readonly closer: Closer;
  /** What this node knows of files it closed, for opens without a call. */
  readonly closedContent = new ContentCache();
  private nextFh = 0;
  /** Opens of each inode asked of the metadata service and not answered yet. */
  private readonly opening = new Map<number, number>();
  /** Last closes made while an open of the inode was asked: see beginOpen. */
  private readonly closesHeld = new Set<number>();
  private readonly writeBehind: WriteBehind;
  private readonly readAheadBudget = new ReadAheadBudget();
  readonly replicas: ReplicaIo;

  constructor(
    private readonly meta: MetaClient,
    private readonly agents: AgentPool,
    private readonly nodeId: number,
    private readonly attrs: AttrCache,
    /** Makes a file this node created and has not sent yet spilled from its
     *  create on; false if the service may know the file (see Delegations.spill). */
    private readonly spillUnsent: (ino: number) => boolean = () => false,
  ) {
    this.replicas = new ReplicaIo(agents, nodeId, (ino, slot) => {
      // the root marks it stale and repairs it; this read went on with another copy
      this.meta.markStale(ino, [slot]).catch((err) => log.warn(`telling of a bad copy of inode ${ino}: ${(err as Error).message}`));
    });
    this.writeBehind = new WriteBehind(this.replicas);
    this.closer = new Closer(meta, nodeId);
  }

  /** The file if this node has it open. */
  file(ino: number): OpenFile | undefined {
    return this.files.get(ino);
  }

  handle(fh: number): Handle {
    const handle = this.handles.get(fh);
    if (!handle) throw new FsError(E.EBADF);
    return handle;
  }

  checkLimit(): void {
    if (this.handles.size >= OPEN_HANDLES_MAX) throw new FsError(E.ENFILE);
  }

  /** Closes sent so far: taken before an open or create is asked of the service (see add). */
  closesSoFar(): number {
    return this.closer.closesSoFar();
  }

  /** Resolves once a close of the inode in progress has reached the metadata service. */
  closed(ino: number): Promise<boolean> {
    return this.closer.closed(ino);
  }

  /** A handle for a file this node opens without a call: the attributes granted
   *  and what it kept of the file at its last close here (null if it has not). */
  openHere(ino: number, attr: Attr, flags: number): { fh: number; file: OpenFile } | null {
    const content = this.closedContent.get(ino);
    if (!content) return null;
    return this.add({ attr, layout: content.layout, inlined: content.inlined, inlineData: content.inlineData, created: false, cacheMs: 0 }, flags, true);
  }

  /** An open of ino is asked of the service. The kernel sends a release when it
   *  likes, after the next open's request at times: a last close of ino made
   *  until endOpen is held back, for the service counts one open per node. Sent
   *  after the open, it would count the inode closed here while it is open, and
   *  free it if unlinked (reads then fail with ESTALE). */
  beginOpen(ino: number): void {
    this.opening.set(ino, (this.opening.get(ino) ?? 0) + 1);
  }

  /** The open asked is answered, and its handle added, or it failed: a close
   *  held back goes now if the inode is not open here after all. */
  endOpen(ino: number): void {
    const left = (this.opening.get(ino) ?? 1) - 1;
    if (left > 0) {
      this.opening.set(ino, left);
      return;
    }
    this.opening.delete(ino);
    if (this.closesHeld.delete(ino) && !this.files.has(ino)) void this.closer.close(ino);
  }

  /** Opens made without a call that the service has not heard of: told now. */
  async tellOpens(): Promise<void> {
    if (this.closer.untoldCount() > 0) await this.closer.tellNow();
  }

  /** A new handle for a file the metadata service has just opened for this node
   *  (untold: that this node opened by itself, see openHere). */
  add(entry: Entry, flags: number, untold = false, epoch?: number): { fh: number; file: OpenFile } {
    const { attr, layout } = entry;
    if (!layout || layout.nodes.length === 0) throw new FsError(E.EIO, `inode ${attr.ino} has no layout`);
    let file = this.files.get(attr.ino);
    if (!file) {
      const written: WrittenFile = { ino: attr.ino, layout, unsynced: new Set(), failedSlots: new Set(), touched: new Set(), allocation: { byObject: null } };
      const opened: OpenFile = {
        ...written, writerLayout: layout, size: attr.size, mtime: null, dirtyEnd: 0, stale: false, layoutOutdated: false, written: 0, committed: 0, handles: 0, directHandles: 0,
        writer: this.writeBehind.writer(written), readAhead: new FileReadAhead(attr.ino, () => readableLayout(opened), this.replicas, this.readAheadBudget),
        inline: entry.inlined ? Buffer.from(entry.inlineData) : null, inlineDirty: [], spilling: null,
      };
      file = opened;
      this.files.set(attr.ino, file);
      // a last close of the inode may have raced this open (releases come when the kernel likes)
      this.closer.opened(attr.ino, untold, epoch);
    } else {
      if (attr.size > file.size) file.size = attr.size;
      // open elsewhere on this node: what the metadata service has now is newer, unless this node wrote since
      if (file.written === file.committed && (file.inline !== null || !entry.inlined)) {
        file.inline = entry.inlined ? Buffer.from(entry.inlineData) : null;
        file.size = attr.size;
        file.stale = false;
      }
    }
    file.handles++;
    do this.nextFh = this.nextFh >= 0x7fffffff ? 1 : this.nextFh + 1;
    while (this.handles.has(this.nextFh));
    this.handles.set(this.nextFh, { file, append: (flags & constants.O_APPEND) !== 0, direct: false, run: { next: 0, streak: 0 } });
    return { fh: this.nextFh, file };
  }

  /** Whether a new handle bypasses the kernel's page cache: as wanted if it is
   *  the file's only handle on this node, else as the others do, so that no
   *  handle's cached pages go stale under another handle's uncached writes. */
  bypassCache(fh: number, wanted: boolean): boolean {
    const handle = this.handle(fh);
    const { file } = handle;
    handle.direct = file.handles === 1 ? wanted : file.directHandles > 0;
    if (handle.direct) file.directHandles++;
    return handle.direct;
  }

  /** Up to `size` bytes at `offset`, as pieces to send as they are (no joining copy). */
  async read(fh: number, size: number, offset: number): Promise<Buffer[]> {
    const { file, run } = this.handle(fh);
    if (file.spilling) await file.spilling;
    if (file.stale) await this.reload(file);
    if (offset >= file.size) return [];
    if (file.inline) {
      const end = Math.min(offset + size, file.size);
      const pieces = offset < file.inline.length ? [file.inline.subarray(offset, Math.min(end, file.inline.length))] : [];
      return pieces.concat(zeroPieces(end - Math.max(offset, Math.min(end, file.inline.length))));
    }
    // what this node wrote must be read back
    if (!file.writer.idle) await file.writer.settle();
    if (file.layoutOutdated) await this.refreshLayout(file);
    const wanted = Math.min(size, file.size - offset);
    // bytes this node wrote that reached no agent: the objects hold a hole or old data there
    if (file.writer.lostIn(offset, offset + wanted)) throw new FsError(E.EIO, 'this range was written but could not be stored');
    if (FileReadAhead.follow(run, offset, wanted)) {
      const pieces = await file.readAhead.read(offset, wanted, file.size);
      if (pieces) return pieces;
    }
    const layout = readableLayout(file);
    const runs = mapRange(layout.unitBytes, layout.nodes.length, offset, wanted);
    const data = await Promise.all(runs.map((run) => this.replicas.read(file.ino, layout, run.object, run.objectOffset, run.length)));
    // Put the pieces in file order; what an object does not hold is a hole.
    const pieces: { fileOffset: number; buffer: Buffer }[] = [];
    runs.forEach((run, i) => {
      for (const piece of run.pieces) {
        const from = piece.objectOffset - run.objectOffset;
        const available = Math.max(0, Math.min(piece.length, data[i].length - from));
        if (available > 0) pieces.push({ fileOffset: piece.fileOffset, buffer: data[i].subarray(from, from + available) });
        let hole = piece.fileOffset + available;
        for (const zeros of zeroPieces(piece.length - available)) {
          pieces.push({ fileOffset: hole, buffer: zeros });
          hole += zeros.length;
        }
      }
    });
    return pieces.sort((a, b) => a.fileOffset - b.fileOffset).map((p) => p.buffer);
  }

  async write(fh: number, data: Buffer, offset: number): Promise<{ file: OpenFile; end: number }> {
    const { file, append } = this.handle(fh);
    if (append) return { file, end: await this.append(file, data) };
    const at = offset;
    const length = data.length;
    if (at + length > FILE_MAX_BYTES) throw new FsError(E.EFBIG);
    if (file.spilling) await file.spilling;
    if (file.inline && at + length <= INLINE_MAX_BYTES) {
      file.inline = writeInto(file.inline, at, data);
      file.inlineDirty = withRange(file.inlineDirty, at, at + length);
    } else {
      if (file.inline) await (file.spilling ??= this.spill(file).finally(() => (file.spilling = null)));
      file.readAhead.clear();
      await file.writer.write(at, data);
    }
    if (at + length > file.size) file.size = at + length;
    if (at + length > file.dirtyEnd) file.dirtyEnd = at + length;
    file.mtime = now();
    file.written++;
    return { file, end: at + length };
  }

  /** fallocate(2) of [offset, offset + length): mode FALLOCATE_ALLOCATE gives
   *  the range blocks, _PUNCH makes it zeros and frees them, _ZERO makes it
   *  zeros and keeps them; on every good copy of each object the range touches
   *  (an inlined file that stays so has no blocks to give or free). Then the
   *  size (grown unless keepSize), the times and the blocks the objects take are
   *  committed: the change is the cluster's at once, as a truncation is. */
  async fallocate(fh: number, mode: number, offset: number, length: number, keepSize: boolean): Promise<void> {
    const { file } = this.handle(fh);
    if (file.spilling) await file.spilling;
    const end = offset + length;
    const grows = !keepSize && end > file.size;
    const changesData = mode !== FALLOCATE_ALLOCATE;
    let failure: unknown = null;
    // blocks promised past the end count (KEEP_SIZE); a punch there has nothing to free
    const reach = mode === FALLOCATE_PUNCH ? Math.min(end, file.size) : end;
    if (file.inline && reach <= INLINE_MAX_BYTES) {
      const zeroedEnd = Math.min(end, grows ? end : file.size);
      if (changesData && offset < zeroedEnd) {
        const zeros = Buffer.alloc(zeroedEnd - offset);
        file.inline = writeInto(file.inline, offset, zeros);
        file.inlineDirty = withRange(file.inlineDirty, offset, zeroedEnd);
      }
    } else {
      if (file.inline) await (file.spilling ??= this.spill(file).finally(() => (file.spilling = null)));
      // what this node wrote goes first: a write sent later would undo a punch
      await file.writer.settle();
      file.readAhead.clear();
      failure = await this.fallocateObjects(file, mode, offset, end, grows);
      // read ahead meanwhile, from copies not punched yet
      file.readAhead.clear();
      // what the objects take is asked of the agents at the commit
      file.allocation.byObject = null;
    }
    // a failed allocation changed nothing the file shows (the size stays)
    if (failure && !changesData) throw failure;
    // the size as it is now (a truncation elsewhere meanwhile stands), grown
    // only as asked: committed as the end of this node's writes is
    if (grows && !failure && end > file.size) {
      file.size = end;
      file.dirtyEnd = Math.max(file.dirtyEnd, end);
    }
    // as ext4 (file_modified): every fallocate that does something changes mtime and ctime
    file.mtime = now();
    file.written++;
    // committed even after a failure: copies that missed a punch are marked stale with it
    await this.commitNow(file, false);
    if (failure) throw failure;
  }

  /** fallocate on each object's part of [offset, end) (grown to it if extend):
   *  the first failure, or null. */
  private async fallocateObjects(file: OpenFile, mode: number, offset: number, end: number, extend: boolean): Promise<unknown> {
    const { unitBytes, nodes } = file.layout;
    let failure: unknown = null;
    await Promise.all(nodes.map(async (_, object) => {
      const from = objectLength(unitBytes, nodes.length, offset, object);
      const to = objectLength(unitBytes, nodes.length, end, object);
      if (to <= from) return;
      try {
        const done = await this.replicas.fallocate(file.ino, file.layout, object, mode, from, to - from, extend, file.failedSlots);
        // a copy that missed a punch keeps old bytes: stale at the commit, as one that missed a write
        if (mode !== FALLOCATE_ALLOCATE) for (const slot of done.failed) file.failedSlots.add(slot);
        failure ??= done.noSpace;
      } catch (err) {
        failure ??= err;
      }
      file.unsynced.add(object);
      if (mode !== FALLOCATE_ALLOCATE) file.touched.add(object);
    }));
    return failure;
  }

  /** An O_APPEND write: the metadata service puts it at the end of the file as
   *  the whole cluster knows it (the kernel's offset may be stale). Returns the
   *  end of the data written. */
  private async append(file: OpenFile, data: Buffer): Promise<number> {
    // what this node wrote before goes first
    if (file.written !== file.committed) await this.commit(file, false);
    const fresh = await this.meta.append(file.ino, data);
    this.attrs.put(fresh.attr, fresh.cacheMs);
    file.size = Math.max(file.size, fresh.attr.size);
    file.readAhead.clear();
    // this node's copy of an inlined file no longer has all of it
    if (file.inline) file.stale = true;
    return fresh.attr.size;
  }

  /** Gives each stripe object its length for a file of `size` bytes (an absent
   *  object stays absent: it reads as a hole). Done before the size changes, so
   *  that a crash never exposes old bytes past a new end. Returns the stale
   *  copies a repair fenced, which refused the cut: to be marked stale again
   *  once the size is committed (see ReplicaIo.truncate). */
  async truncateObjects(ino: number, layout: Layout, size: number): Promise<number[]> {
    const { unitBytes, nodes } = layout;
    const open = this.files.get(ino);
    const skipped = open?.failedSlots ?? new Set<number>();
    const fencedStale: number[] = [];
    const failed = (await Promise.all(nodes.map((_, index) =>
      this.replicas.truncate(ino, layout, index, objectLength(unitBytes, nodes.length, size, index), skipped, fencedStale)))).flat();
    if (failed.length > 0) {
      // a copy that kept bytes past the new end is stale before the size changes
      await this.meta.markStale(ino, failed);
      if (open) for (const slot of failed) open.failedSlots.add(slot);
    }
    return fencedStale;
  }

  /** Sends what this node wrote and commits its size and mtime (and the content of
   *  an inlined file); false if there was nothing to commit. */
  async commit(file: OpenFile, sync: boolean, startedMs?: number): Promise<boolean> {
    if (file.spilling) await file.spilling;
    return this.commitNow(file, sync, null, startedMs);
  }

  /** spilledContent: the inlined content spill wrote to the objects, committed
   *  even if nothing else is; startedMs: when the file system call it serves
   *  began (its waits for the service share one bound, see CallOptions). */
  private async commitNow(file: OpenFile, sync: boolean, spilledContent: Buffer | null = null, startedMs?: number): Promise<boolean> {
    const written = file.written;
    if (!file.inline) await file.writer.drain();
    // Copies that missed writes (or a sync): stale in the same transaction as the
    // size. Those the writer left out because they were stale when it opened the
    // file too: a repair may have made them good since, without these writes.
    const touched = [...file.touched];
    const staleSlots = [...new Set([...file.failedSlots, ...skippedSlots(file.writerLayout, touched)])];
    if (written === file.committed && staleSlots.length === 0 && !spilledContent) return false;
    const mtime = file.mtime;
    let fresh;
    if (file.inline) {
      // the ranges this node wrote (copied: writes may go on meanwhile); others' stay
      const sent = file.inlineDirty;
      file.inlineDirty = [];
      const content = Buffer.from(file.inline);
      const patches = piecesOf(content, sent);
      try {
        // the end of its own writes, as for objects (storedEnd): a truncation elsewhere stands
        const committed = await this.meta.commitWrite(file.ino, file.dirtyEnd, mtime, sync, { inline: { content, patches }, startedMs });
        fresh = committed;
        // other nodes' writes are in the content now: read it again before use
        if (committed.inlineMerged) file.stale = true;
      } catch (err) {
        for (const range of sent) file.inlineDirty = withRange(file.inlineDirty, range.start, range.end);
        if (!(err instanceof FsError && err.errno === E.EAGAIN) || !file.inline) throw err;
        // another node spilled the file meanwhile (with the content the service had):
        // what this node wrote goes to the objects
        await this.spillWritten(file);
        await file.writer.drain();
        fresh = await this.meta.commitWrite(file.ino, storedEnd(file), mtime, sync, { allocatedBytes: await this.allocated(file), staleSlots, startedMs });
      }
    } else {
      fresh = await this.meta.commitWrite(file.ino, storedEnd(file), mtime, sync, { allocatedBytes: await this.allocated(file), staleSlots, spilledContent, startedMs });
    }
    if (staleSlots.length > 0) file.layout = withStale(file.layout, staleSlots);
    for (const object of touched) file.touched.delete(object);
    // committed, the file is known: other nodes may write it from now on
    file.allocation.byObject = null;
    // the next stat (the kernel forgot the attributes at the write) needs no call
    this.attrs.put(fresh.attr, fresh.cacheMs);
    // bytes that went nowhere: every fsync and close says so until they are written again
    const lostFrom = file.writer.lostFromOffset;
    // (ENOSPC if the disk was full: a writer that heard it at a write hears it again, not a vaguer EIO)
    if (lostFrom < file.dirtyEnd) throw new FsError(file.writer.lostErrno, `bytes written from offset ${lostFrom} could not be stored`);
    if (file.committed < written) file.committed = written;
    if (file.written === written) {
      file.mtime = null;
      file.dirtyEnd = 0;
    }
    return true;
  }

  /** Bytes of disk the file's stripe objects take (for st_blocks), or null if an agent cannot tell. */
  private async allocated(file: OpenFile): Promise<number | null> {
    const seen = file.allocation.byObject;
    if (seen) {
      let bytes = 0;
      for (const objectBytes of seen.values()) bytes += objectBytes;
      return bytes;
    }
    try {
      return await this.replicas.allocated(file.ino, file.layout);
    } catch {
      return null;
    }
  }

  /** The file outgrows its inode. Unless the service does not know it yet,
   *  what this node wrote goes to the metadata service first; then the content as the service has it (other nodes'
   *  writes with it) goes to the stripe objects, and the file stops being
   *  inlined, unless another node's commit changed the content in between (the
   *  service refuses it): then it is done again. */
  private async spill(file: OpenFile): Promise<void> {
    // a file nobody else knows yet (its create is not sent): all it holds is this
    // node's, and it is made spilled (tar x, cp: every file past 8 KiB)
    if (this.spillUnsent(file.ino)) {
      const content = file.inline!;
      // its objects are new: what they take is what the agents answer this node's writes with
      file.allocation.byObject = new Map();
      file.inline = null;
      file.inlineDirty = [];
      file.dirtyEnd = Math.max(file.dirtyEnd, file.size);
      if (content.length > 0) await file.writer.write(0, content);
      return;
    }
    for (let attempt = 0; file.inline; attempt++) {
      if (attempt >= SPILL_ATTEMPTS_MAX) throw new FsError(E.EIO, `inode ${file.ino}: its content kept changing while it was spilled`);
      if (file.written !== file.committed) await this.commitNow(file, false);
      // (spilled by another node: what this node wrote went to the objects)
      if (!file.inline) return;
      const entry = await this.meta.open({ ino: file.ino }, this.nodeId);
      const content = entry.inlined ? Buffer.from(entry.inlineData) : null;
      file.inline = null;
      file.inlineDirty = [];
      // spilled by another node after this node's commit: with what it committed
      if (!content) return;
      file.size = Math.max(file.size, entry.attr.size);
      file.dirtyEnd = Math.max(file.dirtyEnd, entry.attr.size);
      if (content.length > 0) await file.writer.write(0, content);
      try {
        await this.commitNow(file, false, content);
        return;
      } catch (err) {
        // the service's content changed since it was read (EAGAIN): it is read
        // again; on any other failure the file is inlined still, as far as known
        file.inline = content;
        if (!(err instanceof FsError && err.errno === E.EAGAIN)) throw err;
      }
    }
  }

  /** An inlined file another node spilled: the ranges this node wrote go to the objects. */
  private async spillWritten(file: OpenFile): Promise<void> {
    const content = file.inline!;
    const written = file.inlineDirty;
    file.inline = null;
    file.inlineDirty = [];
    for (const piece of piecesOf(content, written)) await file.writer.write(piece.offset, piece.data);
  }

  /** Another node changed the file's content: an inlined copy is read again. */
  private async reload(file: OpenFile): Promise<void> {
    file.stale = false;
    const entry = await this.meta.open({ ino: file.ino }, this.nodeId);
    if (!file.inline) return;
    if (!entry.inlined) {
      // spilled elsewhere: what this node wrote still goes with its commit (see commit)
      if (file.written !== file.committed) return;
      file.inline = null;
      file.size = entry.attr.size;
      return;
    }
    // the service's content, with what this node wrote since its last commit over it
    let content: Buffer = Buffer.from(entry.inlineData);
    for (const piece of piecesOf(file.inline, file.inlineDirty)) content = writeInto(content, piece.offset, piece.data);
    file.inline = content;
    file.size = file.written !== file.committed ? Math.max(file.size, entry.attr.size) : entry.attr.size;
  }

  /** The metadata service says another node changed the inode: its data (a
   *  commit, a truncation), its size (set to `size`), its mtime. What this node
   *  wrote before is older than that change. */
  changedElsewhere(ino: number, data: boolean, sizeSet: boolean, mtimeSet: boolean, size: number): void {
    const file = this.files.get(ino);
    if (!file) return;
    if (mtimeSet) file.mtime = null;
    if (sizeSet) {
      file.dirtyEnd = 0;
      file.size = size;
      // what this node wrote past the new end, before it, is cut with it
      if (file.inline && file.inline.length > size) file.inline = Buffer.from(file.inline.subarray(0, size));
      file.inlineDirty = withoutPast(file.inlineDirty, size);
    } else if (data) {
      file.size = Math.max(file.size, size);
    }
    if (data) {
      file.readAhead.clear();
      if (file.inline) file.stale = true;
      else file.layoutOutdated = true;
    }
  }

  /** The file's copies moved, or are being moved (see src/rebalance/mover.ts):
   *  reads and writes go by the layout the service has now, and this resolves
   *  once the writes sent by the one before are done, so that the service knows
   *  every later write reaches the new copies. */
  async layoutMoved(ino: number): Promise<void> {
    const file = this.files.get(ino);
    if (!file) return;
    const { layout } = await this.meta.getStripe({ ino });
    if (!layout || layout.nodes.length !== file.layout.nodes.length) return;
    file.layout = layout;
    file.layoutOutdated = false;
    file.readAhead.clear();
    file.writer.setLayout(layout);
    await file.writer.inFlight();
  }

  /** The file's layout as the metadata service has it now: copies another node
   *  (or the service) found stale are not read any more. */
  private async refreshLayout(file: OpenFile): Promise<void> {
    file.layoutOutdated = false;
    const { layout } = await this.meta.getStripe({ ino: file.ino });
    if (layout && layout.nodes.length === file.layout.nodes.length) file.layout = layout;
  }

  /** This node set the file's times: its uncommitted writes must not override them. */
  timesSet(ino: number): void {
    const file = this.files.get(ino);
    if (file) file.mtime = null;
  }

  /** Truncation of an open file: an inlined one is cut in place. */
  truncated(file: OpenFile, size: number): void {
    file.size = size;
    // what a cut frees is not told: st_blocks is asked of the agents again
    file.allocation.byObject = null;
    file.dirtyEnd = 0;
    // what was lost past the new end is gone with it
    file.writer.forgetLostFrom(size);
    if (file.inline && file.inline.length > size) file.inline = Buffer.from(file.inline.subarray(0, size));
    file.inlineDirty = withoutPast(file.inlineDirty, size);
  }

  async fsync(fh: number): Promise<void> {
    const startedMs = Date.now();
    const { file } = this.handle(fh);
    if (file.spilling) await file.spilling;
    // inlined: the content is in the metadata, which a synced commit makes durable
    if (file.inline) {
      if (!(await this.commit(file, true, startedMs))) await this.meta.sync(startedMs);
      if (file.inline) return;
      // spilled by another node meanwhile: what this node wrote went to the objects, synced below
    }
    await file.writer.drain();
    await this.syncObjects(file);
    if (!(await this.commit(file, true, startedMs))) await this.meta.sync(startedMs);
  }

  /** Makes what reached the file's objects durable. */
  private async syncObjects(file: OpenFile): Promise<void> {
    const objects = [...file.unsynced];
    file.unsynced.clear();
    try {
      // a copy that could not sync may lose what it took: stale, as one that missed it
      for (const slot of await this.replicas.sync(file.ino, file.layout, objects, file.failedSlots)) file.failedSlots.add(slot);
    } catch (err) {
      for (const index of objects) file.unsynced.add(index);
      throw err;
    }
  }

  async release(fh: number): Promise<void> {
    const handle = this.handles.get(fh);
    if (!handle) return;
    this.handles.delete(fh);
    const { file } = handle;
    if (handle.direct) file.directHandles--;
    try {
      // Nobody hears what a release answers: with other handles left, a failure
      // of the writes is theirs to report (at their flush or fsync), not this
      // release's to take away from them. The last one commits what is left.
      if (file.handles === 1) await this.commit(file, false);
    } finally {
      if (--file.handles === 0) {
        this.files.delete(file.ino);
        file.readAhead.clear();
        this.keepContent(file);
        // not waited for: an open of the inode on this node waits for it instead (closed())
        if (this.opening.has(file.ino)) this.closesHeld.add(file.ino);
        else void this.closer.close(file.ino);
      }
    }
  }

  /** What the next open of a file closed here needs, while its attributes stay granted. */
  private keepContent(file: OpenFile): void {
    const granted = this.attrs.get(file.ino);
    if (!granted || file.stale || file.written !== file.committed || granted.attr.size !== file.size) return;
    this.closedContent.put(file.ino, { layout: file.layout, inlined: file.inline !== null, inlineData: file.inline ?? EMPTY_CONTENT }, granted.remainingMs);
  }

  /** Inodes this node holds open: re-announced if the root restarts. */
  openInos(): number[] {
    return [...this.files.keys()];
  }

  /** Attributes with what this node wrote and has not committed yet. */
  withLocalWrites(attr: Attr): Attr {
    const file = this.files.get(attr.ino);
    if (!file || file.written === file.committed) return attr;
    // not past bytes whose send failed: they are nowhere, and no node will see them
    const size = Math.min(file.size, file.writer.lostFromOffset);
    return { ...attr, size: Math.max(attr.size, size), mtime: file.mtime ?? attr.mtime };
  }
}

/** The end of this node's writes that a commit may claim: never over bytes whose
 *  send failed (they would read as zeros, or as a crashed writer's old data). */
function storedEnd(file: OpenFile): number {
  return Math.min(file.dirtyEnd, file.writer.lostFromOffset);
}

/** The copies of the file this node may read: not those the metadata says are
 *  stale, nor those that failed a write of this node (marked at its next commit). */
function readableLayout(file: OpenFile): Layout {
  return file.failedSlots.size > 0 ? withStale(file.layout, file.failedSlots) : file.layout;
}

/** The slots of the objects written that were stale in the layout they were written by. */
function skippedSlots(layout: Layout, objects: number[]): number[] {
  const skipped: number[] = [];
  for (const object of objects) for (const r of replicasOf(layout, object)) if (r.stale) skipped.push(slotOf(layout, object, r.replica));
  return skipped;
}

