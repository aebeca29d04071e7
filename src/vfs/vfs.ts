// The VFS of a node: the file system as the FUSE adapter calls it, by inode
// number and open handle. Namespace operations go to the metadata service; file
// data goes straight to the agents (OpenFiles). Errors are FsError(errno).
//
// Consistency, as documented in the README:
// - The kernel caches attributes and directory entries for ATTR_TIMEOUT_S and
//   ENTRY_TIMEOUT_S: what another node changes shows within that time.
// - Close-to-open: writes reach the agents before write() returns; their size
//   and mtime reach the metadata service at close (flush) or fsync. Opening a
//   file asks the metadata service for fresh attributes: if another node changed
//   the file, the kernel drops its cached attributes and pages (KernelView).
// - An inode that is gone is ESTALE, so that the kernel looks its name up again.
import { constants } from 'node:fs';
import { E, FsError } from '../common/errno.js';
import { ATTR_TIMEOUT_S, FILE_MAX_BYTES } from '../common/limits.js';
import { S_IFDIR, S_IFLNK, S_IFREG, isReg } from '../common/mode.js';
import type { MetaClient } from '../meta/client.js';
import {
  SETATTR_SIZE,
  type Attr, type DirEntry, type SetattrRequest, type StatfsReply,
} from '../rpc/messages.js';
import type { AgentPool } from './agents.js';
import { DirHandles } from './dirs.js';
import { OpenFiles } from './files.js';
import { KernelView } from './kernelView.js';
import { AbsentXattrs } from './absentXattrs.js';

export interface Caller { uid: number; gid: number }

export interface Opened {
  fh: number;
  /** The kernel's cached pages of the file are current: keep them. */
  keepCache: boolean;
  /** Bypass the page cache: for a descriptor that only writes (the cache would
   *  only cost a copy of everything written), and for O_APPEND writes when the
   *  kernel's size may be stale. */
  directIo: boolean;
}

/** A descriptor opened for writing only gains nothing from the page cache. */
const O_ACCMODE = 3;
const writeOnly = (flags: number) => (flags & O_ACCMODE) === constants.O_WRONLY;

/** What the kernel's caches need from the VFS: dropping an inode's attributes. */
export interface KernelCache {
  invalidateAttributes(ino: number): void;
}

/** Attribute changes of setattr (SETATTR_* bits in valid). */
export type Changes = Omit<SetattrRequest, 'target'>;

/** ENOENT of an inode addressed by number means it went away: ESTALE makes the
 *  kernel look its name up again instead of failing. */
async function byInode<T>(work: Promise<T>): Promise<T> {
  try {
    return await work;
  } catch (err) {
    if (err instanceof FsError && err.errno === E.ENOENT) throw new FsError(E.ESTALE);
    throw err;
  }
}

export class Vfs {
  readonly files: OpenFiles;
  private readonly dirs: DirHandles;
  private readonly kernel = new KernelView();
  /** The kernel asks every write whether the file has security.capability: the
   *  answer is kept as long as attributes are. */
  private readonly absentXattrs = new AbsentXattrs(ATTR_TIMEOUT_S * 1000);
  private kernelCache: KernelCache | null = null;

  constructor(private readonly meta: MetaClient, agents: AgentPool, readonly nodeId: number) {
    this.files = new OpenFiles(meta, agents, nodeId);
    this.dirs = new DirHandles(meta);
  }

  /** The FUSE adapter's hook for dropping kernel caches (set once mounted). */
  attachKernel(cache: KernelCache): void {
    this.kernelCache = cache;
  }

  // ------------------------------------------------------------ attributes

  /** Attributes about to be handed to the kernel, with this node's uncommitted writes. */
  private told(attr: Attr): Attr {
    const merged = this.files.withLocalWrites(attr);
    if (isReg(merged.mode)) this.kernel.record(merged);
    return merged;
  }

  async lookup(parent: number, name: string): Promise<Attr> {
    return this.told(await this.meta.getattr({ ino: parent, name }));
  }

  async getattr(ino: number): Promise<Attr> {
    return this.told(await byInode(this.meta.getattr({ ino })));
  }

  async setattr(ino: number, changes: Changes, fh: number | null): Promise<Attr> {
    if (changes.valid & SETATTR_SIZE) {
      const size = changes.size ?? 0;
      if (!Number.isSafeInteger(size) || size < 0) throw new FsError(E.EINVAL);
      if (size > FILE_MAX_BYTES) throw new FsError(E.EFBIG);
      const open = fh !== null ? this.files.handle(fh).file : this.files.file(ino);
      if (!open?.inline) {
        // what this node wrote reaches the objects before they are cut
        await open?.writer.settle();
        open?.readAhead.clear();
        // directories and the like have no layout: the metadata service refuses their size
        const layout = open?.layout ?? (await byInode(this.meta.getStripe({ ino }))).layout;
        if (layout) await this.files.truncateObjects(ino, layout, size);
      }
      const attr = await this.meta.setattr({ target: { ino }, ...changes });
      if (open) this.files.truncated(open, size);
      return this.told(attr);
    }
    return this.told(await byInode(this.meta.setattr({ target: { ino }, ...changes })));
  }

  readlink(ino: number): Promise<string> {
    return byInode(this.meta.readLink({ ino }));
  }

  statfs(): Promise<StatfsReply> {
    return this.meta.statfs();
  }

  // ------------------------------------------------------------ namespace

  async mknod(parent: number, name: string, mode: number, rdev: number, caller: Caller): Promise<Attr> {
    const entry = await this.meta.create({ entry: { ino: parent, name }, mode, rdev, uid: caller.uid, gid: caller.gid, exclusive: true });
    return this.told(entry.attr);
  }

  async mkdir(parent: number, name: string, mode: number, caller: Caller): Promise<Attr> {
    const entry = await this.meta.create({ entry: { ino: parent, name }, mode: S_IFDIR | (mode & 0o7777), uid: caller.uid, gid: caller.gid, exclusive: true });
    return entry.attr;
  }

  async symlink(parent: number, name: string, target: string, caller: Caller): Promise<Attr> {
    const entry = await this.meta.create({ entry: { ino: parent, name }, mode: S_IFLNK | 0o777, target, uid: caller.uid, gid: caller.gid, exclusive: true });
    return entry.attr;
  }

  unlink(parent: number, name: string): Promise<void> {
    return this.meta.remove({ ino: parent, name }, false);
  }

  rmdir(parent: number, name: string): Promise<void> {
    return this.meta.remove({ ino: parent, name }, true);
  }

  /** flags of renameat2: RENAME_NOREPLACE (1), RENAME_EXCHANGE (2, not supported). */
  rename(parent: number, name: string, newParent: number, newName: string, flags = 0): Promise<void> {
    return this.meta.rename({ ino: parent, name }, { ino: newParent, name: newName }, flags);
  }

  async link(ino: number, newParent: number, newName: string): Promise<Attr> {
    return this.told(await this.meta.link({ ino }, { ino: newParent, name: newName }));
  }

  async getxattr(ino: number, name: string): Promise<Buffer> {
    if (this.absentXattrs.has(ino, name)) throw new FsError(E.ENODATA);
    try {
      return await byInode(this.meta.getXattr({ ino }, name));
    } catch (err) {
      if (err instanceof FsError && err.errno === E.ENODATA) this.absentXattrs.add(ino, name);
      throw err;
    }
  }

  async setxattr(ino: number, name: string, value: Uint8Array, flags: number): Promise<void> {
    this.absentXattrs.forget(ino);
    await byInode(this.meta.setXattr({ ino }, name, value, flags));
  }

  listxattr(ino: number): Promise<string[]> {
    return byInode(this.meta.listXattr({ ino }));
  }

  async removexattr(ino: number, name: string): Promise<void> {
    this.absentXattrs.forget(ino);
    await byInode(this.meta.removeXattr({ ino }, name));
  }

  // ------------------------------------------------------------ open files

  async create(parent: number, name: string, mode: number, flags: number, caller: Caller): Promise<{ attr: Attr; opened: Opened }> {
    this.files.checkLimit();
    const entry = await this.meta.create({
      entry: { ino: parent, name }, mode: S_IFREG | (mode & 0o7777), uid: caller.uid, gid: caller.gid,
      exclusive: (flags & constants.O_EXCL) !== 0, openNode: this.nodeId,
    });
    // an existing file whose last close was on its way: announce the open again after it
    if (await this.files.closed(entry.attr.ino)) await this.meta.open({ ino: entry.attr.ino }, this.nodeId);
    const { fh } = this.files.add(entry, flags);
    // a new inode has no extended attributes: the kernel's security.capability question needs no call
    if (entry.created) this.absentXattrs.addAll(entry.attr.ino);
    const attr = this.told(entry.attr);
    const directIo = this.files.bypassCache(fh, writeOnly(flags));
    // writes that bypass the page cache leave what the kernel has cached of the file behind
    if (directIo) this.kernel.forget(entry.attr.ino);
    return { attr, opened: { fh, keepCache: false, directIo } };
  }

  async open(ino: number, flags: number): Promise<Opened> {
    this.files.checkLimit();
    await this.files.closed(ino);
    const entry = await byInode(this.meta.open({ ino }, this.nodeId));
    if (!isReg(entry.attr.mode)) throw new FsError(E.EINVAL, 'not a regular file');
    const { fh, file } = this.files.add(entry, flags);
    const current = this.files.withLocalWrites({ ...entry.attr, size: Math.max(entry.attr.size, file.size) });
    const fresh = this.kernel.matches(current);
    // O_APPEND must not trust the kernel's copy of the size when it may be stale
    const directIo = this.files.bypassCache(fh, writeOnly(flags) || (!fresh && (flags & constants.O_APPEND) !== 0));
    if (fresh && !directIo) return { fh, keepCache: true, directIo };
    this.kernel.forget(ino);
    // changed since the kernel last heard of it, maybe by another node: its size and pages may be stale
    if (!fresh) this.kernelCache?.invalidateAttributes(ino);
    return { fh, keepCache: fresh, directIo };
  }

  read(fh: number, size: number, offset: number): Promise<Buffer[]> {
    return this.files.read(fh, size, offset);
  }

  async write(fh: number, data: Buffer, offset: number): Promise<number> {
    const { file, end } = await this.files.write(fh, data, offset);
    this.kernel.wrote(file.ino, end, file.mtime!);
    return data.length;
  }

  /** close(2) of a descriptor: what this node wrote becomes visible to every node. */
  async flush(fh: number): Promise<void> {
    await this.files.commit(this.files.handle(fh).file, false);
  }

  fsync(fh: number): Promise<void> {
    return this.files.fsync(fh);
  }

  release(fh: number): Promise<void> {
    return this.files.release(fh);
  }

  // ------------------------------------------------------------ directories

  async opendir(ino: number): Promise<number> {
    return this.dirs.open(ino);
  }

  readdir(fh: number, offset: number, max: number): Promise<DirEntry[]> {
    return this.dirs.read(fh, offset, max);
  }

  releasedir(fh: number): void {
    this.dirs.release(fh);
  }

  /** Directory changes are on disk. */
  fsyncdir(): Promise<void> {
    return this.meta.sync();
  }

  openInos(): number[] {
    return this.files.openInos();
  }
}
