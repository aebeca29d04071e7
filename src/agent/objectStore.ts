// The stripe objects of one node, as sparse files under DIR/objects/<bucket>/.
// An absent object reads as empty (all holes). Errors are FsError with the errno
// of the local file system (ENOSPC reaches the writer as ENOSPC).
//
// Whole pages from page-aligned buffers are written with O_DIRECT: the disk takes
// them straight from the buffer, without a copy into the page cache (and the page
// allocations of the cache, which cost more than the copy), so that little is left
// to write back at fsync. Reads and unaligned writes go through the page cache;
// Linux keeps the two coherent.
//
// Every block of CHECKSUM_BLOCK_BYTES carries an xxHash64 of its bytes (zeros
// past the end of the object count), kept in a file beside the object
// (<object>.sum, 8 bytes per block; 0: no checksum, a hole never written).
// Writes and truncations of one object take turns, so that a block's checksum
// is computed from what the block holds; every read checks the blocks it
// touches and fails with EBADMSG on a mismatch, which the reader takes as the
// copy being bad (see src/replication).
import fs from 'node:fs';
import path from 'node:path';
import { PAGE_BYTES, buffers } from '../common/bufferPool.js';
import { E, FsError, errnoOf } from '../common/errno.js';
import { log } from '../common/log.js';
import { h64, initHash } from '../common/hash.js';
import { AGENT_OPEN_FILES_MAX } from '../common/limits.js';
import { RecentMap } from '../common/recentMap.js';
import { OBJECT_BUCKETS, bucketName } from '../format/paths.js';
import { FALLOCATE_ALLOCATE, FALLOCATE_PUNCH, FALLOCATE_ZERO, type ObjectKey } from '../rpc/messages.js';
import sys from 'kdfs-sys';

/** What a client needs of an agent, local or remote. */
export interface ObjectIo {
  /** wantAllocated: resolves with the bytes of disk the object takes once
   *  written (as allocated tells); null when not asked, or the agent does not say. */
  write(key: ObjectKey, offset: number, data: Uint8Array, wantAllocated?: boolean): Promise<number | null>;
  /** Bytes of disk the object takes (its allocated blocks; 0 if absent). */
  allocated(key: ObjectKey): Promise<number>;
  /** Up to length bytes at offset, fewer at the end of the object: into the
   *  start of `into` if given (at least length long), else a new buffer. */
  read(key: ObjectKey, offset: number, length: number, into?: Buffer): Promise<Buffer>;
  truncate(key: ObjectKey, length: number): Promise<void>;
  /** fallocate(2) of the object's bytes [offset, offset + length): mode
   *  FALLOCATE_ALLOCATE, _PUNCH or _ZERO; its length kept unless extend (see
   *  ObjectFallocateRequest in proto/kdfs.proto). */
  fallocate(key: ObjectKey, mode: number, offset: number, length: number, extend?: boolean): Promise<void>;
  sync(keys: ObjectKey[]): Promise<void>;
  remove(keys: ObjectKey[]): Promise<void>;
  /** From now on, refuses writes and truncations of each object whose key's gen
   *  is below this key's (see Layout.gen); resolves once those in progress are done. */
  fence(keys: ObjectKey[]): Promise<void>;
  /** The object's length, and the checksums of `count` blocks from block `first`
   *  (8 bytes each; fewer past the end; 0: none recorded). */
  sums(key: ObjectKey, first: number, count: number): Promise<ObjectSums>;
  /** False while the agent is held for failed (its calls fail at once): readers try other copies first. */
  readonly answering?: boolean;
}

export interface SpaceStat { capacityBytes: number; freeBytes: number; usedBytes: number; checksumErrors?: number }
export interface ObjectSums { length: number; sums: Buffer }

export const CHECKSUM_BLOCK_BYTES = 4096;
export const CHECKSUM_BYTES = 8;
/** Blocks whose checksums one Sums call returns at most (512 KiB of them). */
export const SUMS_PER_CALL_MAX = 64 * 1024;
/** Times a read whose checksum failed while the object was being written is tried again. */
const REREADS_MAX = 3;

/** An agent as the root node uses it: objects, and the space of its disk. */
export interface Agent extends ObjectIo {
  space(deadlineMs?: number): Promise<SpaceStat>;
}

/** A change of the blocks [start, end) of an object, done when `done` resolves. */
interface Turn { start: number; end: number; done: Promise<void> }

interface OpenFile {
  path: string;
  fd: number;
  /** The same file opened with O_DIRECT, once an aligned write needs it. */
  directFd: number | null;
  /** The checksums' file, once opened. */
  sumFd: number | null;
  /** Writes and truncations made: a read that saw this change may have read a block between its data and its checksum. */
  changes: number;
  users: number;
  removed: boolean;
}

/** How long, and how many, removed objects a read fails for rather than reading
 *  as holes: longer than any read in flight since the layout that named them. */
const REMOVED_REMEMBERED_MS = 60_000;
const REMOVED_REMEMBERED_MAX = 65_536;
const USED_BYTES_TTL_MS = 5000;
/** Copies fenced (see fence) whose generation is remembered, the latest, removed
 *  ones too (a late write would make an orphan again). A late request reaches a
 *  copy soon after its node is back, when its copies are repaired: an older
 *  fence forgotten past this many lets one through. About 150 bytes each. */
const FENCES_KEPT = 131_072;

export function objectFileName(key: ObjectKey): string {
  const name = `${key.ino.toString(16).padStart(16, '0')}.${key.index}`;
  return key.replica ? `${name}.r${key.replica}` : name;
}

export class ObjectStore implements Agent {
  /** Open descriptors by object file path, least recently used first. */
  private readonly open = new RecentMap<string, OpenFile>();
  /** Objects removed lately, by path, oldest first, with when (see rememberRemoved). */
  private readonly removedRecently = new Map<string, number>();
  /** Space the objects take, as last measured; measured again in the background
   *  when older than USED_BYTES_TTL_MS, so that a Stat never waits for a walk. */
  private used = { bytes: 0, atMs: 0 };
  private measuring: Promise<void> | null = null;
  /** Whether the file system of the objects takes O_DIRECT writes; null until the first tells. */
  private direct: boolean | null = null;

  /** Checksum mismatches found by reads since the agent started. */
  checksumErrors = 0;
  /** The writes and truncations in progress on each object, by the blocks they
   *  change: one that changes the same blocks waits for them. */
  private readonly turns = new Map<string, Turn[]>();
  /** The generation each copy was fenced with, by object file path (see fence). */
  private readonly fences = new RecentMap<string, number>(FENCES_KEPT);

  /** True while object writes must wait for space: on the root node, while the
   *  metadata store uses the reserve it gave back (see src/meta/reserve.ts). */
  writesRefused: () => boolean = () => false;

  constructor(readonly objectsDir: string) {}

  static create(objectsDir: string): void {
    fs.mkdirSync(objectsDir, { recursive: true });
    for (let b = 0; b < OBJECT_BUCKETS; b++) fs.mkdirSync(path.join(objectsDir, bucketName(b)), { recursive: true });
  }

  pathOf(key: ObjectKey): string {
    return path.join(this.objectsDir, bucketName(key.ino % OBJECT_BUCKETS), objectFileName(key));
  }

  async write(key: ObjectKey, offset: number, data: Uint8Array, wantAllocated = false): Promise<number | null> {
    this.refuseWhileFull();
    await initHash();
    const objectPath = this.pathOf(key);
    this.removedRecently.delete(objectPath);
    const blocks = { start: Math.floor(offset / CHECKSUM_BLOCK_BYTES), end: Math.ceil((offset + data.length) / CHECKSUM_BLOCK_BYTES) };
    return this.inTurn(objectPath, blocks, async () => {
      this.checkFence(objectPath, key);
      const file = (await this.acquire(objectPath, true))!;
      try {
        const sums = await this.sumsOfWrite(file, offset, data);
        // the data and its checksums at once: a crash between them leaves a block
        // that fails its check either way (the write was not acknowledged)
        const sumFd = await this.sumFdOf(file);
        await Promise.all([
          this.writeData(file, offset, data),
          pwrite(sumFd, sums, 0, sums.length, Math.floor(offset / CHECKSUM_BLOCK_BYTES) * CHECKSUM_BYTES),
        ]);
        file.changes++;
        // told with the reply: a writer may know its file's st_blocks without asking (see AllocationSeen)
        return wantAllocated ? (await fstat(file.fd)).blocks * 512 : null;
      } finally {
        this.release(file);
      }
    });
  }

  /** ENOSPC while writes must wait for space (see writesRefused). */
  private refuseWhileFull(): void {
    if (this.writesRefused()) throw new FsError(E.ENOSPC, 'the disk is full: its space is kept for removals');
  }

  /** The checksum of a block once its bytes [from, to) (offsets in the block)
   *  are zeros, the rest kept: the block is read and checked first, so that a
   *  checksum is never made over bad bytes. Null if it has none recorded. */
  private async sumWithZeros(file: OpenFile, block: number, from: number, to: number): Promise<Buffer | null> {
    const recorded = await this.readSums(file, block, 1);
    if (recorded.length < CHECKSUM_BYTES || recorded.readBigUInt64BE(0) === 0n) return null;
    const bytes = Buffer.allocUnsafe(CHECKSUM_BLOCK_BYTES);
    await readBlock(file.fd, bytes, block * CHECKSUM_BLOCK_BYTES);
    checkBlock(bytes, recorded, 0, block);
    bytes.fill(0, from, to);
    const sum = Buffer.allocUnsafe(CHECKSUM_BYTES);
    writeSum(sum, 0, bytes);
    return sum;
  }

  /** Runs `change` of the blocks [start, end) once the changes of the object
   *  before it that touch any of them are done. */
  private async inTurn<T>(objectPath: string, blocks: { start: number; end: number }, change: () => Promise<T>): Promise<T> {
    let turns = this.turns.get(objectPath);
    if (!turns) this.turns.set(objectPath, (turns = []));
    const before = turns.filter((t) => t.start < blocks.end && blocks.start < t.end).map((t) => t.done);
    const run = Promise.all(before).then(change);
    const turn: Turn = { ...blocks, done: run.then(() => {}, () => {}) };
    turns.push(turn);
    void turn.done.then(() => {
      const left = this.turns.get(objectPath)?.filter((t) => t !== turn) ?? [];
      if (left.length > 0) this.turns.set(objectPath, left);
      else this.turns.delete(objectPath);
    });
    return run;
  }

  async fence(keys: ObjectKey[]): Promise<void> {
    await Promise.all(keys.map((key) => {
      const objectPath = this.pathOf(key);
      const gen = key.gen ?? 0;
      if (gen > (this.fences.get(objectPath) ?? 0)) this.fences.set(objectPath, gen);
      // a change that passed its check before is in its turn: the fence waits for it
      return this.changesDone(objectPath);
    }));
  }

  /** Checked in the change's turn: a change checked later than a fence is refused by it. */
  private checkFence(objectPath: string, key: ObjectKey): void {
    const fenced = this.fences.get(objectPath);
    if (fenced !== undefined && (key.gen ?? 0) < fenced) {
      throw new FsError(E.ESTALE, `${objectFileName(key)}: a change made under generation ${key.gen ?? 0} of its layout, fenced by ${fenced} (a late request)`);
    }
  }

  /** Resolves once the changes of the object in progress now are done. */
  private async changesDone(objectPath: string): Promise<void> {
    await Promise.all((this.turns.get(objectPath) ?? []).map((t) => t.done));
  }

  /** The checksums of the blocks a write touches, as they will be after it: a
   *  block it covers partly is read from disk and completed with the data. */
  private async sumsOfWrite(file: OpenFile, offset: number, data: Uint8Array): Promise<Buffer> {
    const first = Math.floor(offset / CHECKSUM_BLOCK_BYTES);
    const end = Math.ceil((offset + data.length) / CHECKSUM_BLOCK_BYTES);
    const sums = Buffer.allocUnsafe((end - first) * CHECKSUM_BYTES);
    let scratch: Buffer | null = null;
    let recorded: Buffer | null = null;
    for (let block = first; block < end; block++) {
      const blockStart = block * CHECKSUM_BLOCK_BYTES;
      const from = Math.max(blockStart, offset);
      const to = Math.min(blockStart + CHECKSUM_BLOCK_BYTES, offset + data.length);
      let bytes: Uint8Array;
      if (from === blockStart && to === blockStart + CHECKSUM_BLOCK_BYTES) {
        bytes = data.subarray(from - offset, to - offset);
      } else {
        scratch ??= Buffer.allocUnsafe(CHECKSUM_BLOCK_BYTES);
        await readBlock(file.fd, scratch, blockStart);
        // what the block keeps must be right: a checksum is never made over bad bytes
        recorded ??= await this.readSums(file, first, end - first);
        checkBlock(scratch, recorded, (block - first) * CHECKSUM_BYTES, block);
        scratch.set(data.subarray(from - offset, to - offset), from - blockStart);
        bytes = scratch;
      }
      writeSum(sums, (block - first) * CHECKSUM_BYTES, bytes);
    }
    return sums;
  }

  private async sumFdOf(file: OpenFile): Promise<number> {
    if (file.sumFd === null) {
      const fd = await openFile(file.path + SUMS_SUFFIX, fs.constants.O_RDWR | fs.constants.O_CREAT).catch((err) => {
        throw new FsError(errnoOf(err), `open checksums of ${path.basename(file.path)}: ${(err as Error).message}`);
      });
      if (file.sumFd === null && !file.removed) file.sumFd = fd;
      else fs.close(fd, () => {});
    }
    if (file.sumFd === null) throw new FsError(E.ENOENT, `${path.basename(file.path)} was removed`);
    return file.sumFd;
  }

  private async writeData(file: OpenFile, offset: number, data: Uint8Array): Promise<void> {
    {
      let done = 0;
      while (done < data.length) {
        const directFd = await this.directFdFor(file, offset + done, data.subarray(done));
        if (directFd !== null) {
          try {
            done += await pwrite(directFd, data, done, data.length - done, offset + done);
            this.direct = true;
            continue;
          } catch (err) {
            if (!(err instanceof FsError && err.errno === E.EINVAL)) throw err;
            this.noDirectIo(err);
          }
        }
        done += await pwrite(file.fd, data, done, data.length - done, offset + done);
      }
    }
  }

  /** The O_DIRECT descriptor of the file if data can go to disk directly, else null. */
  private async directFdFor(file: OpenFile, offset: number, data: Uint8Array): Promise<number | null> {
    if (this.direct === false || offset % PAGE_BYTES !== 0 || data.length % PAGE_BYTES !== 0 || !buffers.isPageAligned(data)) return null;
    if (file.directFd === null) {
      let fd: number;
      try {
        fd = await openFile(file.path, fs.constants.O_RDWR | fs.constants.O_DIRECT);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EINVAL') throw new FsError(errnoOf(err), `open ${path.basename(file.path)}: ${(err as Error).message}`);
        this.noDirectIo(err as Error);
        return null;
      }
      // opened concurrently by another write, or closed meanwhile
      if (file.directFd !== null || file.removed) fs.close(fd, () => {});
      else file.directFd = fd;
      if (file.directFd === null) return null;
    }
    return file.directFd;
  }

  /** The file system refuses O_DIRECT (or the buffers are not aligned as it needs): every write goes through the page cache. */
  private noDirectIo(err: Error): void {
    // once a direct write has worked, a refusal is this write's own: it goes through the page cache
    if (this.direct !== null) return;
    this.direct = false;
    log.info(`objects in ${this.objectsDir} are written through the page cache: O_DIRECT refused (${err.message})`);
  }

  async read(key: ObjectKey, offset: number, length: number, into?: Buffer): Promise<Buffer> {
    const objectPath = this.pathOf(key);
    const file = await this.acquire(objectPath, false);
    if (!file) {
      // moved away a moment ago: the reader's layout is older than the move, and
      // another copy has the bytes (an absent object would read as a hole: zeros)
      if (this.removedRecently.has(objectPath)) throw new FsError(E.EIO, `${path.basename(objectPath)} was just removed from this node`);
      return Buffer.alloc(0);
    }
    await initHash();
    try {
      for (let attempt = 0; ; attempt++) {
        const changes = file.changes;
        const busy = this.turns.has(objectPath);
        try {
          return await this.readChecked(file, offset, length, into);
        } catch (err) {
          const mismatch = err instanceof FsError && err.errno === E.EBADMSG;
          // a block read between its data and its checksum: read again once the change is done
          const racing = busy || file.changes !== changes || this.turns.has(objectPath);
          if (mismatch && racing && attempt < REREADS_MAX) {
            await this.changesDone(objectPath);
            continue;
          }
          if (err instanceof BadBlock) {
            this.checksumErrors++;
            log.warn(`${path.basename(objectPath)}: ${err.message}`);
            const block = err.block;
            if (block !== null) await this.inTurn(objectPath, { start: block, end: block + 1 }, () => this.markBad(file, block)).catch(() => {});
          }
          throw err;
        }
      }
    } finally {
      this.release(file);
    }
  }

  /** Reads the whole blocks around the range, checks them, and returns the range. */
  private async readChecked(file: OpenFile, offset: number, length: number, into?: Buffer): Promise<Buffer> {
    const start = Math.floor(offset / CHECKSUM_BLOCK_BYTES) * CHECKSUM_BLOCK_BYTES;
    const end = Math.ceil((offset + length) / CHECKSUM_BLOCK_BYTES) * CHECKSUM_BLOCK_BYTES;
    const direct = start === offset && end === offset + length;
    // whole blocks are read straight into the caller's buffer; others through a scratch one
    const target = direct ? into ?? Buffer.allocUnsafe(length) : buffers.take(end - start).subarray(0, end - start);
    try {
      let read = 0;
      while (read < end - start) {
        const n = await pread(file.fd, target, read, end - start - read, start + read);
        if (n === 0) break;
        read += n;
      }
      await this.check(file, start, target, read);
      const from = offset - start;
      const available = Math.max(0, Math.min(length, read - from));
      // `into` may be longer than asked: only what was read is returned
      if (direct) return target.subarray(0, available);
      const result = into ?? Buffer.allocUnsafe(available);
      target.copy(result, 0, from, from + available);
      return result.subarray(0, available);
    } finally {
      if (!direct) buffers.give(Buffer.from(target.buffer, target.byteOffset, buffers.classOf(end - start)));
    }
  }

  /** Checks the blocks read (from offset `start`, `read` bytes of them there) against their checksums. */
  private async check(file: OpenFile, start: number, blocks: Buffer, read: number): Promise<void> {
    if (read === 0) return;
    const first = start / CHECKSUM_BLOCK_BYTES;
    const count = Math.ceil(read / CHECKSUM_BLOCK_BYTES);
    const sums = await this.readSums(file, first, count);
    // zeros past the end of the object count in its last block
    const blockEnd = count * CHECKSUM_BLOCK_BYTES;
    if (read < blockEnd) blocks.fill(0, read, blockEnd);
    for (let i = 0; i < count; i++) {
      const expected = sums.length >= (i + 1) * CHECKSUM_BYTES ? sums.readBigUInt64BE(i * CHECKSUM_BYTES) : 0n;
      if (expected === 0n) continue;
      const actual = sumOf(blocks.subarray(i * CHECKSUM_BLOCK_BYTES, (i + 1) * CHECKSUM_BLOCK_BYTES));
      if (actual !== expected) throw new BadBlock(first + i);
    }
  }

  /** Records a block found bad as such (its checksum becomes BAD_SUM), so that a
   *  repair comparing checksums copies it, unless it reads well now. */
  private async markBad(file: OpenFile, block: number): Promise<void> {
    const recorded = await this.readSums(file, block, 1);
    if (recorded.length < CHECKSUM_BYTES) return;
    const sum = recorded.readBigUInt64BE(0);
    if (sum === 0n || sum === BAD_SUM) return;
    const bytes = Buffer.allocUnsafe(CHECKSUM_BLOCK_BYTES);
    await readBlock(file.fd, bytes, block * CHECKSUM_BLOCK_BYTES);
    if (sumOf(bytes) === sum) return;
    const bad = Buffer.allocUnsafe(CHECKSUM_BYTES);
    bad.writeBigUInt64BE(BAD_SUM);
    await pwrite(await this.sumFdOf(file), bad, 0, CHECKSUM_BYTES, block * CHECKSUM_BYTES);
  }

  /** Checksums of `count` blocks from `first` (fewer where the file ends). */
  private async readSums(file: OpenFile, first: number, count: number): Promise<Buffer> {
    const sums = Buffer.allocUnsafe(count * CHECKSUM_BYTES);
    let fd: number;
    try {
      fd = await this.sumFdOf(file);
    } catch {
      return Buffer.alloc(0);
    }
    let read = 0;
    while (read < sums.length) {
      const n = await pread(fd, sums, read, sums.length - read, first * CHECKSUM_BYTES + read);
      if (n === 0) break;
      read += n;
    }
    return sums.subarray(0, read);
  }

  async sums(key: ObjectKey, first: number, count: number): Promise<ObjectSums> {
    if (!(Number.isSafeInteger(first) && first >= 0 && Number.isSafeInteger(count) && count >= 0 && count <= SUMS_PER_CALL_MAX)) {
      throw new FsError(E.EINVAL, 'bad checksum range');
    }
    const file = await this.acquire(this.pathOf(key), false);
    if (!file) return { length: 0, sums: Buffer.alloc(0) };
    try {
      const length = (await fstat(file.fd)).size;
      const blocks = Math.max(0, Math.min(count, Math.ceil(length / CHECKSUM_BLOCK_BYTES) - first));
      const sums = Buffer.alloc(blocks * CHECKSUM_BYTES);
      (await this.readSums(file, first, blocks)).copy(sums);
      return { length, sums };
    } finally {
      this.release(file);
    }
  }

  async allocated(key: ObjectKey): Promise<number> {
    const file = await this.acquire(this.pathOf(key), false);
    if (!file) return 0;
    try {
      return (await fstat(file.fd)).blocks * 512;
    } finally {
      this.release(file);
    }
  }

  /** An object removed: reads of it fail for a while (see read), until written again. */
  private rememberRemoved(objectPath: string): void {
    const nowMs = Date.now();
    for (const [oldest, atMs] of this.removedRecently) {
      if (this.removedRecently.size < REMOVED_REMEMBERED_MAX && nowMs - atMs < REMOVED_REMEMBERED_MS) break;
      this.removedRecently.delete(oldest);
    }
    this.removedRecently.delete(objectPath);
    this.removedRecently.set(objectPath, nowMs);
  }

  async truncate(key: ObjectKey, length: number): Promise<void> {
    const objectPath = this.pathOf(key);
    this.removedRecently.delete(objectPath);
    await initHash();
    // the block cut in the middle changes, and every one past it goes
    await this.inTurn(objectPath, { start: Math.floor(length / CHECKSUM_BLOCK_BYTES), end: Infinity }, async () => {
      this.checkFence(objectPath, key);
      const file = await this.acquire(objectPath, false);
      if (!file) return; // absent: all holes, at any length
      try {
        const blocks = Math.ceil(length / CHECKSUM_BLOCK_BYTES);
        const last = blocks - 1;
        // the block cut in the middle: summed again before its bytes past the cut go
        const cutSum = length % CHECKSUM_BLOCK_BYTES !== 0 ? await this.sumWithZeros(file, last, length - last * CHECKSUM_BLOCK_BYTES, CHECKSUM_BLOCK_BYTES) : null;
        await new Promise<void>((resolve, reject) => fs.ftruncate(file.fd, length, (err) => (err ? reject(err) : resolve())));
        const sumFd = await this.sumFdOf(file);
        await new Promise<void>((resolve, reject) => fs.ftruncate(sumFd, blocks * CHECKSUM_BYTES, (err) => (err ? reject(err) : resolve())));
        if (cutSum) await pwrite(sumFd, cutSum, 0, CHECKSUM_BYTES, last * CHECKSUM_BYTES);
        file.changes++;
      } catch (err) {
        throw new FsError(errnoOf(err), `truncate ${objectFileName(key)}: ${(err as Error).message}`);
      } finally {
        this.release(file);
      }
    });
  }

  async fallocate(key: ObjectKey, mode: number, offset: number, length: number, extend = false): Promise<void> {
    if (mode !== FALLOCATE_ALLOCATE && mode !== FALLOCATE_PUNCH && mode !== FALLOCATE_ZERO) throw new FsError(E.EINVAL, `bad fallocate mode ${mode}`);
    if (mode !== FALLOCATE_PUNCH) this.refuseWhileFull();
    await initHash();
    const objectPath = this.pathOf(key);
    this.removedRecently.delete(objectPath);
    const end = offset + length;
    await this.inTurn(objectPath, { start: Math.floor(offset / CHECKSUM_BLOCK_BYTES), end: Math.ceil(end / CHECKSUM_BLOCK_BYTES) }, async () => {
      this.checkFence(objectPath, key);
      // absent, an object is all holes already: only an allocation makes it
      const file = await this.acquire(objectPath, mode !== FALLOCATE_PUNCH);
      if (!file) return;
      try {
        if (mode !== FALLOCATE_ALLOCATE) await this.punch(file, offset, end);
        if (mode !== FALLOCATE_PUNCH) {
          await sys.fallocate(file.fd, extend ? 0 : sys.FALLOC_FL_KEEP_SIZE, offset, length);
          // the checksums of later writes there need room too
          const firstBlock = Math.floor(offset / CHECKSUM_BLOCK_BYTES);
          const blocks = Math.ceil(end / CHECKSUM_BLOCK_BYTES) - firstBlock;
          await sys.fallocate(await this.sumFdOf(file), sys.FALLOC_FL_KEEP_SIZE, firstBlock * CHECKSUM_BYTES, blocks * CHECKSUM_BYTES);
        }
        file.changes++;
      } catch (err) {
        throw new FsError(errnoOf(err), `fallocate ${objectFileName(key)}: ${(err as Error).message}`);
      } finally {
        this.release(file);
      }
    });
  }

  /** Makes the bytes [offset, end) zeros and frees their blocks; the checksum of
   *  each block they touch is made again: one kept in part (at either end) is
   *  read and checked first, one made all zeros gets the checksum of zeros.
   *  Blocks with none recorded (holes never written) keep none: the checksums'
   *  file is written only where it held some, so that it stays sparse. */
  private async punch(file: OpenFile, offset: number, end: number): Promise<void> {
    const objectLength = (await fstat(file.fd)).size;
    const stop = Math.min(end, objectLength);
    const firstBlock = Math.floor(offset / CHECKSUM_BLOCK_BYTES);
    const endBlock = Math.ceil(stop / CHECKSUM_BLOCK_BYTES);
    // the blocks kept in part, summed again before their bytes go
    const edges = new Map<number, Buffer>();
    for (const block of new Set([firstBlock, endBlock - 1])) {
      if (block < firstBlock || block >= endBlock) continue;
      const blockStart = block * CHECKSUM_BLOCK_BYTES;
      const keptBefore = offset > blockStart;
      const keptAfter = Math.min(blockStart + CHECKSUM_BLOCK_BYTES, objectLength) > end;
      if (!keptBefore && !keptAfter) continue;
      const sum = await this.sumWithZeros(file, block, Math.max(offset, blockStart) - blockStart, Math.min(end, blockStart + CHECKSUM_BLOCK_BYTES) - blockStart);
      if (sum) edges.set(block, sum);
    }
    await sys.fallocate(file.fd, sys.FALLOC_FL_PUNCH_HOLE | sys.FALLOC_FL_KEEP_SIZE, offset, end - offset);
    const zerosSum = Buffer.allocUnsafe(CHECKSUM_BYTES);
    writeSum(zerosSum, 0, ZERO_BLOCK);
    // in bounded steps: a punch may span a whole object
    for (let first = firstBlock; first < endBlock; first += SUMS_PER_CALL_MAX) {
      const sums = await this.readSums(file, first, Math.min(SUMS_PER_CALL_MAX, endBlock - first));
      // each run of recorded checksums is written as one
      let runStart = -1;
      for (let at = 0; at <= sums.length; at += CHECKSUM_BYTES) {
        const recorded = at + CHECKSUM_BYTES <= sums.length && sums.readBigUInt64BE(at) !== 0n;
        if (recorded) {
          (edges.get(first + at / CHECKSUM_BYTES) ?? zerosSum).copy(sums, at);
          if (runStart < 0) runStart = at;
        } else if (runStart >= 0) {
          await pwrite(await this.sumFdOf(file), sums, runStart, at - runStart, first * CHECKSUM_BYTES + runStart);
          runStart = -1;
        }
      }
    }
  }

  async sync(keys: ObjectKey[]): Promise<void> {
    await Promise.all(keys.map(async (key) => {
      const file = await this.acquire(this.pathOf(key), false);
      if (!file) return;
      try {
        await fdatasync(file.fd);
        if (file.sumFd !== null) await fdatasync(file.sumFd);
      } finally {
        this.release(file);
      }
    }));
  }

  async remove(keys: ObjectKey[]): Promise<void> {
    for (const key of keys) {
      const file = this.pathOf(key);
      this.rememberRemoved(file);
      const cached = this.open.get(file);
      if (cached) {
        this.open.delete(file);
        cached.removed = true;
        if (cached.users === 0) closeFile(cached);
      }
      for (const name of [file, file + SUMS_SUFFIX]) {
        try {
          await fs.promises.unlink(name);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new FsError(errnoOf(err));
        }
      }
    }
  }

  async space(): Promise<SpaceStat> {
    const st = await fs.promises.statfs(this.objectsDir);
    if (Date.now() - this.used.atMs > USED_BYTES_TTL_MS) this.measureInBackground();
    return { capacityBytes: st.blocks * st.bsize, freeBytes: st.bavail * st.bsize, usedBytes: this.used.bytes, checksumErrors: this.checksumErrors };
  }

  /** Starts measuring the space the objects take (the first Stat of a node may say 0). */
  measureInBackground(): Promise<void> {
    this.measuring ??= this.measureUsed()
      .then((bytes) => {
        this.used = { bytes, atMs: Date.now() };
      })
      .catch(() => {})
      .finally(() => {
        this.measuring = null;
      });
    return this.measuring;
  }

  close(): void {
    for (const file of this.open.values()) {
      fs.closeSync(file.fd);
      if (file.directFd !== null) fs.closeSync(file.directFd);
      if (file.sumFd !== null) fs.closeSync(file.sumFd);
    }
    this.open.clear();
  }

  /** Disk space the objects take (allocated blocks, so holes are free). */
  private async measureUsed(): Promise<number> {
    let bytes = 0;
    for (let b = 0; b < OBJECT_BUCKETS; b++) {
      const dir = path.join(this.objectsDir, bucketName(b));
      let names: string[];
      try {
        names = await fs.promises.readdir(dir);
      } catch {
        continue;
      }
      for (const name of names) {
        try {
          bytes += (await fs.promises.stat(path.join(dir, name))).blocks * 512;
        } catch {
          // removed meanwhile
        }
      }
    }
    return bytes;
  }

  /** An open descriptor for the object, or null if it is absent and create is false. */
  private async acquire(file: string, create: boolean): Promise<OpenFile | null> {
    let entry = this.open.get(file);
    if (entry) {
      this.open.set(file, entry); // used now: kept longer
      entry.users++;
      return entry;
    }
    let fd: number;
    try {
      fd = await openFile(file, create ? fs.constants.O_RDWR | fs.constants.O_CREAT : fs.constants.O_RDWR);
    } catch (err) {
      if (!create && (err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw new FsError(errnoOf(err), `open ${path.basename(file)}: ${(err as Error).message}`);
    }
    entry = this.open.get(file);
    if (entry) {
      // opened concurrently by another request: use that one
      fs.close(fd, () => {});
      entry.users++;
      return entry;
    }
    entry = { path: file, fd, directFd: null, sumFd: null, changes: 0, users: 1, removed: false };
    this.open.set(file, entry);
    this.evict();
    return entry;
  }

  private release(file: OpenFile): void {
    file.users--;
    if (file.removed && file.users === 0) closeFile(file);
  }

  private evict(): void {
    if (this.open.size <= AGENT_OPEN_FILES_MAX) return;
    for (const [name, file] of this.open) {
      if (this.open.size <= AGENT_OPEN_FILES_MAX) break;
      if (file.users > 0) continue;
      this.open.delete(name);
      closeFile(file);
    }
  }
}

function openFile(file: string, flags: number): Promise<number> {
  return new Promise((resolve, reject) => fs.open(file, flags, 0o600, (err, fd) => (err ? reject(err) : resolve(fd))));
}

function closeFile(file: OpenFile): void {
  fs.close(file.fd, () => {});
  if (file.directFd !== null) fs.close(file.directFd, () => {});
  if (file.sumFd !== null) fs.close(file.sumFd, () => {});
  file.directFd = null;
  file.sumFd = null;
}

const SUMS_SUFFIX = '.sum';
const ZERO_BLOCK = new Uint8Array(CHECKSUM_BLOCK_BYTES);
/** The checksum recorded for a block found bad: no block has it (see sumOf). */
const BAD_SUM = 0xffff_ffff_ffff_ffffn;

/** A block that does not match its checksum. */
class BadBlock extends FsError {
  constructor(readonly block: number | null) {
    super(E.EBADMSG, `checksum mismatch in block ${block}`);
  }
}

/** Throws BadBlock unless the block matches its checksum at `at` in `sums` (none recorded: any block does). */
function checkBlock(block: Uint8Array, sums: Buffer, at: number, index: number): void {
  if (sums.length < at + CHECKSUM_BYTES) return;
  const expected = sums.readBigUInt64BE(at);
  if (expected !== 0n && sumOf(block) !== expected) throw new BadBlock(index);
}

/** The checksum of a block (zeros past the object's end included); never 0
 *  (none recorded) nor BAD_SUM (found bad). */
function sumOf(block: Uint8Array): bigint {
  const sum = h64(block);
  return sum === 0n ? 1n : sum === BAD_SUM ? BAD_SUM - 1n : sum;
}

function writeSum(into: Buffer, at: number, block: Uint8Array): void {
  into.writeBigUInt64BE(sumOf(block), at);
}

/** The block at `position` into `block` (CHECKSUM_BLOCK_BYTES long), zeros past the end of the file. */
async function readBlock(fd: number, block: Buffer, position: number): Promise<void> {
  let read = 0;
  while (read < block.length) {
    const n = await pread(fd, block, read, block.length - read, position + read);
    if (n === 0) break;
    read += n;
  }
  block.fill(0, read);
}

function fstat(fd: number): Promise<fs.Stats> {
  return new Promise((resolve, reject) => fs.fstat(fd, (err, st) => (err ? reject(new FsError(errnoOf(err))) : resolve(st))));
}

function fdatasync(fd: number): Promise<void> {
  return new Promise((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(new FsError(errnoOf(err))) : resolve())));
}


function pwrite(fd: number, data: Uint8Array, from: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) =>
    fs.write(fd, data, from, length, position, (err, written) => (err ? reject(new FsError(errnoOf(err), `write: ${err.message}`)) : resolve(written))));
}

function pread(fd: number, buffer: Buffer, from: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) =>
    fs.read(fd, buffer, from, length, position, (err, n) => (err ? reject(new FsError(errnoOf(err), `read: ${err.message}`)) : resolve(n))));
}
