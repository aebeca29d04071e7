// The stripe objects of one node, as sparse files under DIR/objects/<bucket>/.
// An absent object reads as empty (all holes). Errors are FsError with the errno
// of the local file system (ENOSPC reaches the writer as ENOSPC).
//
// Whole pages from page-aligned buffers are written with O_DIRECT: the disk takes
// them straight from the buffer, without a copy into the page cache (and the page
// allocations of the cache, which cost more than the copy), so that little is left
// to write back at fsync. Reads and unaligned writes go through the page cache;
// Linux keeps the two coherent.
import fs from 'node:fs';
import path from 'node:path';
import { PAGE_BYTES, buffers } from '../common/bufferPool.js';
import { E, FsError, errnoOf } from '../common/errno.js';
import { log } from '../common/log.js';
import { AGENT_OPEN_FILES_MAX } from '../common/limits.js';
import { OBJECT_BUCKETS, bucketName } from '../format/paths.js';
import type { ObjectKey } from '../rpc/messages.js';

/** What a client needs of an agent, local or remote. */
export interface ObjectIo {
  write(key: ObjectKey, offset: number, data: Uint8Array): Promise<void>;
  /** Bytes of disk the object takes (its allocated blocks; 0 if absent). */
  allocated(key: ObjectKey): Promise<number>;
  /** Up to length bytes at offset, fewer at the end of the object: into the
   *  start of `into` if given (at least length long), else a new buffer. */
  read(key: ObjectKey, offset: number, length: number, into?: Buffer): Promise<Buffer>;
  truncate(key: ObjectKey, length: number): Promise<void>;
  sync(keys: ObjectKey[]): Promise<void>;
  remove(keys: ObjectKey[]): Promise<void>;
}

export interface SpaceStat { capacityBytes: number; freeBytes: number; usedBytes: number }

/** An agent as the root node uses it: objects, and the space of its disk. */
export interface Agent extends ObjectIo {
  space(deadlineMs?: number): Promise<SpaceStat>;
}

interface OpenFile {
  path: string;
  fd: number;
  /** The same file opened with O_DIRECT, once an aligned write needs it. */
  directFd: number | null;
  users: number;
  removed: boolean;
}

const USED_BYTES_TTL_MS = 5000;

export function objectFileName(key: ObjectKey): string {
  const name = `${key.ino.toString(16).padStart(16, '0')}.${key.index}`;
  return key.replica ? `${name}.r${key.replica}` : name;
}

export class ObjectStore implements Agent {
  /** Open descriptors by object file path, least recently used first. */
  private readonly open = new Map<string, OpenFile>();
  /** Space the objects take, as last measured; measured again in the background
   *  when older than USED_BYTES_TTL_MS, so that a Stat never waits for a walk. */
  private used = { bytes: 0, atMs: 0 };
  private measuring: Promise<void> | null = null;
  /** Whether the file system of the objects takes O_DIRECT writes; null until the first tells. */
  private direct: boolean | null = null;

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

  async write(key: ObjectKey, offset: number, data: Uint8Array): Promise<void> {
    if (this.writesRefused()) throw new FsError(E.ENOSPC, 'the disk is full: its space is kept for removals');
    const file = (await this.acquire(this.pathOf(key), true))!;
    try {
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
    } finally {
      this.release(file);
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
    const file = await this.acquire(this.pathOf(key), false);
    if (!file) return Buffer.alloc(0);
    try {
      const buffer = into ?? Buffer.allocUnsafe(length);
      let done = 0;
      while (done < length) {
        const n = await pread(file.fd, buffer, done, length - done, offset + done);
        if (n === 0) break;
        done += n;
      }
      return done === length ? buffer : buffer.subarray(0, done);
    } finally {
      this.release(file);
    }
  }

  async allocated(key: ObjectKey): Promise<number> {
    const file = await this.acquire(this.pathOf(key), false);
    if (!file) return 0;
    try {
      const stat = await new Promise<fs.Stats>((resolve, reject) => fs.fstat(file.fd, (err, st) => (err ? reject(new FsError(errnoOf(err))) : resolve(st))));
      return stat.blocks * 512;
    } finally {
      this.release(file);
    }
  }

  async truncate(key: ObjectKey, length: number): Promise<void> {
    const file = await this.acquire(this.pathOf(key), false);
    if (!file) return; // absent: all holes, at any length
    try {
      await new Promise<void>((resolve, reject) => fs.ftruncate(file.fd, length, (err) => (err ? reject(err) : resolve())));
    } catch (err) {
      throw new FsError(errnoOf(err), `truncate ${objectFileName(key)}: ${(err as Error).message}`);
    } finally {
      this.release(file);
    }
  }

  async sync(keys: ObjectKey[]): Promise<void> {
    await Promise.all(keys.map(async (key) => {
      const file = await this.acquire(this.pathOf(key), false);
      if (!file) return;
      try {
        await new Promise<void>((resolve, reject) => fs.fdatasync(file.fd, (err) => (err ? reject(new FsError(errnoOf(err))) : resolve())));
      } finally {
        this.release(file);
      }
    }));
  }

  async remove(keys: ObjectKey[]): Promise<void> {
    for (const key of keys) {
      const file = this.pathOf(key);
      const cached = this.open.get(file);
      if (cached) {
        this.open.delete(file);
        cached.removed = true;
        if (cached.users === 0) closeFile(cached);
      }
      try {
        await fs.promises.unlink(file);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new FsError(errnoOf(err));
      }
    }
  }

  async space(): Promise<SpaceStat> {
    const st = await fs.promises.statfs(this.objectsDir);
    if (Date.now() - this.used.atMs > USED_BYTES_TTL_MS) this.measureInBackground();
    return { capacityBytes: st.blocks * st.bsize, freeBytes: st.bavail * st.bsize, usedBytes: this.used.bytes };
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
      // most recently used goes last
      this.open.delete(file);
      this.open.set(file, entry);
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
    entry = { path: file, fd, directFd: null, users: 1, removed: false };
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
  file.directFd = null;
}

function pwrite(fd: number, data: Uint8Array, from: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) =>
    fs.write(fd, data, from, length, position, (err, written) => (err ? reject(new FsError(errnoOf(err), `write: ${err.message}`)) : resolve(written))));
}

function pread(fd: number, buffer: Buffer, from: number, length: number, position: number): Promise<number> {
  return new Promise((resolve, reject) =>
    fs.read(fd, buffer, from, length, position, (err, n) => (err ? reject(new FsError(errnoOf(err), `read: ${err.message}`)) : resolve(n))));
}
