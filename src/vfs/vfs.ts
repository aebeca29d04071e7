// The VFS of a node: the file system as the FUSE adapter calls it, by path and
// by open file handle. It keeps the state of the files this node has open (their
// layout, the size this node's writes reached, which objects need an fsync),
// stripes reads and writes over the agents, and talks to the metadata service
// for everything else. Errors are FsError(errno).
//
// Consistency (see README): attributes and entries are cached by the kernel for
// ATTR_TIMEOUT_S / ENTRY_TIMEOUT_S. Writes reach the agents before write()
// returns; the size and mtime they make reach the metadata service at close
// (flush) or fsync, so another node opening the file after the close sees all of
// it (close-to-open).
import { constants } from 'node:fs';
import { now } from '../common/clock.js';
import { E, FsError } from '../common/errno.js';
import { ATTR_TIMEOUT_S, FILE_MAX_BYTES } from '../common/limits.js';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, isReg } from '../common/mode.js';
import { mapRange, objectLength } from '../layout/stripe.js';
import type { MetaClient } from '../meta/client.js';
import {
  SETATTR_ATIME, SETATTR_ATIME_NOW, SETATTR_GID, SETATTR_MODE, SETATTR_MTIME, SETATTR_MTIME_NOW, SETATTR_SIZE,
  SETATTR_UID,
  type Attr, type DirEntry, type Layout, type ObjectKey, type StatfsReply, type Timespec,
} from '../rpc/messages.js';
import type { AgentPool } from './agents.js';

export interface Caller { uid: number; gid: number }

export interface Opened {
  fh: number;
  /** Bypass the kernel's page cache for this open: the kernel may still believe
   *  an older size of the file, and would cut reads short at it. */
  directIo: boolean;
}

/** utimensat's special nanosecond values. */
export const UTIME_NOW = (1 << 30) - 1;
export const UTIME_OMIT = (1 << 30) - 2;
const UNCHANGED_ID = 0xffffffff;

/** Most files one node holds open at once. */
const OPEN_HANDLES_MAX = 65536;

/** A regular file open on this node, shared by all its handles. */
interface OpenFile {
  ino: number;
  layout: Layout;
  /** The size as this node knows it: the size at open, grown by this node's writes. */
  size: number;
  /** Time of the last write not yet committed to the metadata service. */
  mtime: Timespec | null;
  /** Writes made / committed, to tell whether a commit is needed. */
  written: number;
  committed: number;
  /** Stripe objects written since the last fsync. */
  unsynced: Set<number>;
  handles: number;
}

interface Handle {
  file: OpenFile;
  append: boolean;
}

export class Vfs {
  private readonly handles = new Map<number, Handle>();
  private readonly files = new Map<number, OpenFile>();
  /** The size the kernel was last told for an inode, and when: a newer size at
   *  open means the kernel's copy is stale until ATTR_TIMEOUT_S has passed. */
  private readonly kernelSizes = new Map<number, { size: number; atMs: number }>();
  private nextFh = 1;

  constructor(
    private readonly meta: MetaClient,
    private readonly agents: AgentPool,
    readonly nodeId: number,
  ) {}

  // ------------------------------------------------------------ attributes

  async getattr(path: string): Promise<Attr> {
    return this.told(this.withLocalWrites(await this.meta.getattr({ path })));
  }

  async fgetattr(fh: number): Promise<Attr> {
    const { file } = this.handle(fh);
    return this.told(this.withLocalWrites(await this.meta.getattr({ ino: file.ino })));
  }

  async chmod(path: string, mode: number): Promise<void> {
    await this.meta.setattr({ target: { path }, valid: SETATTR_MODE, mode });
  }

  async chown(path: string, uid: number, gid: number): Promise<void> {
    let valid = 0;
    if (uid !== UNCHANGED_ID) valid |= SETATTR_UID;
    if (gid !== UNCHANGED_ID) valid |= SETATTR_GID;
    if (valid) await this.meta.setattr({ target: { path }, valid, uid, gid });
  }

  async utimens(path: string, atime: Timespec, mtime: Timespec): Promise<void> {
    let valid = 0;
    if (atime.nsec === UTIME_NOW) valid |= SETATTR_ATIME_NOW;
    else if (atime.nsec !== UTIME_OMIT) valid |= SETATTR_ATIME;
    if (mtime.nsec === UTIME_NOW) valid |= SETATTR_MTIME_NOW;
    else if (mtime.nsec !== UTIME_OMIT) valid |= SETATTR_MTIME;
    if (!valid) return;
    const attr = await this.meta.setattr({ target: { path }, valid, atime, mtime });
    // An explicit mtime wins over the one of writes not yet committed.
    const file = this.files.get(attr.ino);
    if (file && valid & (SETATTR_MTIME | SETATTR_MTIME_NOW)) file.mtime = null;
  }

  async truncate(path: string, size: number): Promise<void> {
    const attr = await this.meta.getattr({ path });
    if (!isReg(attr.mode)) throw new FsError((attr.mode & S_IFMT) === S_IFDIR ? E.EISDIR : E.EINVAL);
    const open = this.files.get(attr.ino);
    const layout = open?.layout ?? (await this.meta.getStripe({ ino: attr.ino })).layout;
    await this.resize(attr.ino, layout, Math.max(attr.size, open?.size ?? 0), size);
  }

  async ftruncate(fh: number, size: number): Promise<void> {
    const { file } = this.handle(fh);
    const attr = await this.meta.getattr({ ino: file.ino });
    await this.resize(file.ino, file.layout, Math.max(attr.size, file.size), size);
  }

  /** Truncation: a shrink cuts the objects first, so a crash never exposes old bytes past the new end. */
  private async resize(ino: number, layout: Layout | null, currentSize: number, size: number): Promise<void> {
    if (!Number.isSafeInteger(size) || size < 0) throw new FsError(E.EINVAL);
    if (size > FILE_MAX_BYTES) throw new FsError(E.EFBIG);
    if (size < currentSize && layout) {
      const { unitBytes, nodes } = layout;
      await Promise.all(nodes.map(async (nodeId, index) => {
        const agent = await this.agents.get(nodeId);
        await agent.truncate(objectKey(ino, index), objectLength(unitBytes, nodes.length, size, index));
      }));
    }
    const attr = await this.meta.setattr({ target: { ino }, valid: SETATTR_SIZE, size });
    const file = this.files.get(ino);
    if (file) file.size = size;
    this.told(attr);
  }

  // ------------------------------------------------------------ namespace

  async readdir(path: string): Promise<{ ino: number; parent: number; entries: DirEntry[] }> {
    return this.meta.readDirAll({ path });
  }

  readlink(path: string): Promise<string> {
    return this.meta.readLink({ path });
  }

  async mknod(path: string, mode: number, rdev: number, caller: Caller): Promise<void> {
    await this.meta.create({ path, mode, rdev, uid: caller.uid, gid: caller.gid, exclusive: true });
  }

  async mkdir(path: string, mode: number, caller: Caller): Promise<void> {
    await this.meta.create({ path, mode: S_IFDIR | (mode & 0o7777), uid: caller.uid, gid: caller.gid, exclusive: true });
  }

  async symlink(target: string, path: string, caller: Caller): Promise<void> {
    await this.meta.create({ path, mode: S_IFLNK | 0o777, target, uid: caller.uid, gid: caller.gid, exclusive: true });
  }

  unlink(path: string): Promise<void> {
    return this.meta.remove(path, false);
  }

  rmdir(path: string): Promise<void> {
    return this.meta.remove(path, true);
  }

  rename(from: string, to: string): Promise<void> {
    return this.meta.rename(from, to);
  }

  async link(from: string, to: string): Promise<void> {
    await this.meta.link(from, to);
  }

  statfs(): Promise<StatfsReply> {
    return this.meta.statfs();
  }

  getxattr(path: string, name: string): Promise<Buffer> {
    return this.meta.getXattr({ path }, name);
  }

  setxattr(path: string, name: string, value: Uint8Array, flags: number): Promise<void> {
    return this.meta.setXattr({ path }, name, value, flags);
  }

  listxattr(path: string): Promise<string[]> {
    return this.meta.listXattr({ path });
  }

  removexattr(path: string, name: string): Promise<void> {
    return this.meta.removeXattr({ path }, name);
  }

  // ------------------------------------------------------------ open files

  async create(path: string, mode: number, flags: number, caller: Caller): Promise<Opened> {
    this.checkHandleLimit();
    const entry = await this.meta.create({
      path, mode: S_IFREG | (mode & 0o7777), uid: caller.uid, gid: caller.gid,
      exclusive: (flags & constants.O_EXCL) !== 0, openNode: this.nodeId,
    });
    return this.opened(entry.attr, entry.layout, flags);
  }

  async open(path: string, flags: number): Promise<Opened> {
    this.checkHandleLimit();
    const entry = await this.meta.open({ path }, this.nodeId);
    return this.opened(entry.attr, entry.layout, flags);
  }

  async read(fh: number, buffer: Buffer, length: number, offset: number): Promise<number> {
    const { file } = this.handle(fh);
    if (offset >= file.size) return 0;
    const wanted = Math.min(length, file.size - offset);
    const { unitBytes, nodes } = file.layout;
    await Promise.all(mapRange(unitBytes, nodes.length, offset, wanted).map(async (run) => {
      const agent = await this.agents.get(nodes[run.object]);
      const data = await agent.read(objectKey(file.ino, run.object), run.objectOffset, run.length);
      for (const piece of run.pieces) {
        const at = piece.fileOffset - offset;
        const from = piece.objectOffset - run.objectOffset;
        const available = Math.max(0, Math.min(piece.length, data.length - from));
        if (available > 0) data.copy(buffer, at, from, from + available);
        // beyond the object's end: a hole
        if (available < piece.length) buffer.fill(0, at + available, at + piece.length);
      }
    }));
    return wanted;
  }

  async write(fh: number, data: Buffer, length: number, offset: number): Promise<number> {
    const { file, append } = this.handle(fh);
    // O_APPEND writes go at the end as this node knows it, which the kernel's
    // offset may not be when its copy of the size is stale.
    const at = append ? file.size : offset;
    if (at + length > FILE_MAX_BYTES) throw new FsError(E.EFBIG);
    const { unitBytes, nodes } = file.layout;
    await Promise.all(mapRange(unitBytes, nodes.length, at, length).map(async (run) => {
      const agent = await this.agents.get(nodes[run.object]);
      const pieces = run.pieces.map((p) => data.subarray(p.fileOffset - at, p.fileOffset - at + p.length));
      await agent.write(objectKey(file.ino, run.object), run.objectOffset, pieces.length === 1 ? pieces[0] : Buffer.concat(pieces));
      file.unsynced.add(run.object);
    }));
    if (at + length > file.size) file.size = at + length;
    file.mtime = now();
    file.written++;
    const told = this.kernelSizes.get(file.ino);
    if (told && told.size < file.size) told.size = file.size;
    return length;
  }

  /** close(2) of a descriptor: what this node wrote becomes visible to every node. */
  async flush(fh: number): Promise<void> {
    await this.commit(this.handle(fh).file, false);
  }

  async fsync(fh: number): Promise<void> {
    const { file } = this.handle(fh);
    const objects = [...file.unsynced];
    file.unsynced.clear();
    try {
      const byNode = new Map<number, ObjectKey[]>();
      for (const index of objects) {
        const nodeId = file.layout.nodes[index];
        if (!byNode.has(nodeId)) byNode.set(nodeId, []);
        byNode.get(nodeId)!.push(objectKey(file.ino, index));
      }
      await Promise.all([...byNode].map(async ([nodeId, keys]) => (await this.agents.get(nodeId)).sync(keys)));
    } catch (err) {
      for (const index of objects) file.unsynced.add(index);
      throw err;
    }
    if (!(await this.commit(file, true))) await this.meta.sync();
  }

  async release(fh: number): Promise<void> {
    const handle = this.handles.get(fh);
    if (!handle) return;
    this.handles.delete(fh);
    const { file } = handle;
    try {
      await this.commit(file, false);
    } finally {
      if (--file.handles === 0) {
        this.files.delete(file.ino);
        await this.meta.close(file.ino, this.nodeId);
      }
    }
  }

  /** Inodes this node holds open, one per handle: re-announced if the root restarts. */
  openInos(): number[] {
    return [...this.handles.values()].map((h) => h.file.ino);
  }

  // ------------------------------------------------------------ helpers

  private opened(attr: Attr, layout: Layout | null, flags: number): Opened {
    if (!isReg(attr.mode)) throw new FsError(E.EINVAL, 'not a regular file');
    if (!layout || layout.nodes.length === 0) throw new FsError(E.EIO, 'file without layout');
    let file = this.files.get(attr.ino);
    if (!file) {
      file = { ino: attr.ino, layout, size: attr.size, mtime: null, written: 0, committed: 0, unsynced: new Set(), handles: 0 };
      this.files.set(attr.ino, file);
    } else if (attr.size > file.size) {
      file.size = attr.size;
    }
    file.handles++;
    const fh = this.allocFh();
    this.handles.set(fh, { file, append: (flags & constants.O_APPEND) !== 0 });
    const told = this.kernelSizes.get(attr.ino);
    const directIo = told !== undefined && Date.now() - told.atMs < ATTR_TIMEOUT_S * 1000 + 100 && told.size !== file.size;
    return { fh, directIo };
  }

  /** Commits size and mtime of this node's writes; false if there was nothing to commit. */
  private async commit(file: OpenFile, sync: boolean): Promise<boolean> {
    const written = file.written;
    if (written === file.committed) return false;
    await this.meta.commitWrite(file.ino, file.size, file.mtime ?? now(), sync);
    if (file.committed < written) file.committed = written;
    if (file.written === written) file.mtime = null;
    return true;
  }

  /** Attributes with what this node wrote and has not committed yet. */
  private withLocalWrites(attr: Attr): Attr {
    const file = this.files.get(attr.ino);
    if (!file || file.written === file.committed) return attr;
    return { ...attr, size: Math.max(attr.size, file.size), mtime: file.mtime ?? attr.mtime };
  }

  /** Records the size the kernel is about to be told. */
  private told(attr: Attr): Attr {
    if (isReg(attr.mode)) {
      const atMs = Date.now();
      this.kernelSizes.delete(attr.ino);
      this.kernelSizes.set(attr.ino, { size: attr.size, atMs });
      // oldest first: forget what the kernel has forgotten
      for (const [ino, told] of this.kernelSizes) {
        if (atMs - told.atMs < ATTR_TIMEOUT_S * 1000 + 100) break;
        this.kernelSizes.delete(ino);
      }
    }
    return attr;
  }

  private handle(fh: number): Handle {
    const handle = this.handles.get(fh);
    if (!handle) throw new FsError(E.EBADF);
    return handle;
  }

  private checkHandleLimit(): void {
    if (this.handles.size >= OPEN_HANDLES_MAX) throw new FsError(E.ENFILE);
  }

  private allocFh(): number {
    do {
      this.nextFh = this.nextFh >= 0x7fffffff ? 1 : this.nextFh + 1;
    } while (this.handles.has(this.nextFh));
    return this.nextFh;
  }
}

export function objectKey(ino: number, index: number): ObjectKey {
  return { ino, index, replica: 0 };
}
