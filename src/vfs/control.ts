// The VFS with kDFS's control directory: MOUNT/.kdfs is a real directory
// (modules/ in it holds scheduler modules, in kDFS), hidden from the root's
// listing as CephFS hides .snap; the entries under .kdfs/scheduler are the
// scheduler's tree (src/scheduler/tree.ts), served here and never cached by
// the kernel. Every other call goes to the VFS as is.
import { E, FsError } from '../common/errno.js';
import { ROOT_INO } from '../meta/records.js';
import { CONTROL_DIR, MODULES_DIR, MODULE_SOURCE_MAX_BYTES, SCHEDULER_DIR } from '../scheduler/modules.js';
import { VIRTUAL_INO_BASE, type SchedulerTree } from '../scheduler/tree.js';
import { SETATTR_SIZE, type Attr, type DirEntry } from '../rpc/messages.js';
import { Vfs, type Caller, type Changes, type Opened, type Told, type Writer } from './vfs.js';

/** MOUNT/.kdfs/node: this mount's node id, for programs that run as any user (checkpoint, kdfs run). */
export const NODE_FILE = 'node';
const NODE_FILE_INO = VIRTUAL_INO_BASE - 1;
/** File handles of the tree's files and directories: above every real one. */
const VIRTUAL_FH_BASE = 2 ** 40;
const VIRTUAL_HANDLES_MAX = 4096;

interface VirtualHandle { ino: number; entries: DirEntry[] | null }

export class ControlledVfs extends Vfs {
  private tree: SchedulerTree | null = null;
  /** The real inode of MOUNT/.kdfs, once looked up. */
  private controlIno = 0;
  private readonly handles = new Map<number, VirtualHandle>();
  private nextFh = VIRTUAL_FH_BASE;

  attachScheduler(tree: SchedulerTree): void {
    this.tree = tree;
    this.hideInRoot(CONTROL_DIR);
  }

  /** The source of scheduler module `name` in MOUNT/.kdfs/modules (null: none there), read through this VFS, never the mount. */
  async readModule(name: string): Promise<string | null> {
    let ino: number;
    try {
      const control = await super.lookup(ROOT_INO, CONTROL_DIR);
      const modules = await super.lookup(control.attr.ino, MODULES_DIR);
      ino = (await super.lookup(modules.attr.ino, `${name}.js`)).attr.ino;
    } catch (err) {
      if (err instanceof FsError && err.errno === E.ENOENT) return null;
      throw err;
    }
    const { fh } = await super.open(ino, 0);
    try {
      const pieces = await super.read(fh, MODULE_SOURCE_MAX_BYTES + 1, 0);
      const source = Buffer.concat(pieces);
      if (source.length > MODULE_SOURCE_MAX_BYTES) throw new FsError(E.EFBIG, `module ${name} is larger than ${MODULE_SOURCE_MAX_BYTES} bytes`);
      return source.toString('utf8');
    } finally {
      await super.release(fh);
    }
  }

  private serves(dir: number): SchedulerTree | null {
    return this.tree?.servesDir(dir) ? this.tree : null;
  }

  private virtual(ino: number): SchedulerTree | null {
    return this.tree?.isVirtual(ino) ? this.tree : null;
  }

  private uncached(attr: Attr): Told {
    return { attr, timeoutS: 0 };
  }

  /** .kdfs and what is in it may not be removed or renamed. */
  private protectedEntry(parent: number, name: string): boolean {
    return (parent === ROOT_INO && name === CONTROL_DIR) || (this.controlIno !== 0 && parent === this.controlIno && (name === MODULES_DIR || name === SCHEDULER_DIR));
  }

  override async lookup(parent: number, name: string, pid = 0): Promise<Told> {
    if (this.controlIno !== 0 && parent === this.controlIno && name === NODE_FILE) return this.uncached(this.nodeFileAttr());
    const tree = this.serves(parent);
    if (tree) return this.uncached(await tree.lookup(parent, name));
    const told = await super.lookup(parent, name, pid);
    if (parent === ROOT_INO && name === CONTROL_DIR) this.controlIno = told.attr.ino;
    if (this.tree && this.controlIno !== 0 && parent === this.controlIno && name === SCHEDULER_DIR) this.tree.rootIno = told.attr.ino;
    return told;
  }

  override async getattr(ino: number): Promise<Told> {
    if (ino === NODE_FILE_INO) return this.uncached(this.nodeFileAttr());
    const tree = this.virtual(ino);
    return tree ? this.uncached(await tree.getattr(ino)) : super.getattr(ino);
  }

  override async setattr(ino: number, changes: Changes, fh: number | null, pid = 0): Promise<Told> {
    const tree = this.virtual(ino);
    if (!tree) return super.setattr(ino, changes, fh, pid);
    // echo > ATTR truncates first: nothing to do; anything else is not for the tree
    if (changes.valid & ~SETATTR_SIZE) throw new FsError(E.EPERM);
    return this.uncached(await tree.getattr(ino));
  }

  override readlink(ino: number): Promise<string> {
    return this.virtual(ino)?.readlink(ino) ?? super.readlink(ino);
  }

  override async mknod(parent: number, name: string, mode: number, rdev: number, caller: Caller): Promise<Told> {
    if (this.serves(parent)) throw new FsError(E.EPERM);
    return super.mknod(parent, name, mode, rdev, caller);
  }

  override async mkdir(parent: number, name: string, mode: number, caller: Caller): Promise<Told> {
    const tree = this.serves(parent);
    return tree ? this.uncached(await tree.mkdir(parent, name)) : super.mkdir(parent, name, mode, caller);
  }

  override async symlink(parent: number, name: string, target: string, caller: Caller): Promise<Told> {
    const tree = this.serves(parent);
    return tree ? this.uncached(await tree.symlink(parent, name, target)) : super.symlink(parent, name, target, caller);
  }

  override async unlink(parent: number, name: string, pid = 0): Promise<void> {
    const tree = this.serves(parent);
    if (tree) return tree.unlink(parent, name);
    if (this.protectedEntry(parent, name)) throw new FsError(E.EPERM);
    return super.unlink(parent, name, pid);
  }

  override async rmdir(parent: number, name: string, pid = 0): Promise<void> {
    const tree = this.serves(parent);
    if (tree) return tree.rmdir(parent, name);
    if (this.protectedEntry(parent, name)) throw new FsError(E.EBUSY);
    return super.rmdir(parent, name, pid);
  }

  override async rename(parent: number, name: string, newParent: number, newName: string, flags = 0, pid = 0): Promise<void> {
    if (this.serves(parent) || this.serves(newParent)) throw new FsError(E.EPERM);
    if (this.protectedEntry(parent, name) || this.protectedEntry(newParent, newName)) throw new FsError(E.EBUSY);
    return super.rename(parent, name, newParent, newName, flags, pid);
  }

  override async link(ino: number, newParent: number, newName: string, pid = 0): Promise<Told> {
    if (this.virtual(ino) || this.serves(newParent)) throw new FsError(E.EPERM);
    return super.link(ino, newParent, newName, pid);
  }

  override async create(parent: number, name: string, mode: number, flags: number, caller: Caller): Promise<Told & { opened: Opened }> {
    if (this.serves(parent)) throw new FsError(E.EPERM);
    return super.create(parent, name, mode, flags, caller);
  }

  override async open(ino: number, flags: number, pid = 0): Promise<Opened> {
    if (ino === NODE_FILE_INO) return { fh: this.addHandle(ino, null), keepCache: false, directIo: true };
    const tree = this.virtual(ino);
    if (!tree) return super.open(ino, flags, pid);
    await tree.getattr(ino);
    return { fh: this.addHandle(ino, null), keepCache: false, directIo: true };
  }

  override async read(fh: number, size: number, offset: number): Promise<Buffer[]> {
    const handle = this.handles.get(fh);
    if (!handle) return super.read(fh, size, offset);
    if (handle.ino === NODE_FILE_INO) return [Buffer.from(`${this.nodeId}\n`).subarray(offset, offset + size)];
    const content = await this.tree!.read(handle.ino);
    return [content.subarray(offset, offset + size)];
  }

  override async write(fh: number, data: Buffer, offset: number, killSetIdOf: Writer | null = null): Promise<number> {
    const handle = this.handles.get(fh);
    if (!handle) return super.write(fh, data, offset, killSetIdOf);
    if (handle.ino === NODE_FILE_INO) throw new FsError(E.EACCES);
    if (offset !== 0) throw new FsError(E.EINVAL, 'an attribute is written whole, from its start');
    await this.tree!.write(handle.ino, data);
    return data.length;
  }

  override async copyFileRange(fhIn: number, offsetIn: number, fhOut: number, offsetOut: number, length: number): Promise<number> {
    if (this.handles.has(fhIn) || this.handles.has(fhOut)) throw new FsError(E.EXDEV);
    return super.copyFileRange(fhIn, offsetIn, fhOut, offsetOut, length);
  }

  override async flush(fh: number): Promise<void> {
    if (!this.handles.has(fh)) return super.flush(fh);
  }

  override async fsync(fh: number): Promise<void> {
    if (!this.handles.has(fh)) return super.fsync(fh);
  }

  override async release(fh: number): Promise<void> {
    if (!this.handles.delete(fh)) return super.release(fh);
  }

  override async opendir(ino: number, pid = 0): Promise<number> {
    const tree = this.tree?.servesDir(ino) ? this.tree : null;
    if (!tree) return super.opendir(ino, pid);
    return this.addHandle(ino, null);
  }

  override async readdir(fh: number, offset: number, max: number): Promise<DirEntry[]> {
    const handle = this.handles.get(fh);
    if (!handle) return super.readdir(fh, offset, max);
    handle.entries ??= [{ name: '.', ino: handle.ino, mode: 0o040000 }, { name: '..', ino: handle.ino, mode: 0o040000 }, ...(await this.tree!.readdir(handle.ino))];
    return handle.entries.slice(offset, offset + max);
  }

  override releasedir(fh: number): void {
    if (!this.handles.delete(fh)) super.releasedir(fh);
  }

  override async getxattr(ino: number, name: string): Promise<Buffer> {
    if (this.virtual(ino)) throw new FsError(E.ENODATA);
    return super.getxattr(ino, name);
  }

  override async setxattr(ino: number, name: string, value: Uint8Array, flags: number, pid = 0): Promise<void> {
    if (this.virtual(ino)) throw new FsError(E.EPERM);
    return super.setxattr(ino, name, value, flags, pid);
  }

  override async listxattr(ino: number): Promise<string[]> {
    return this.virtual(ino) ? [] : super.listxattr(ino);
  }

  override async removexattr(ino: number, name: string, pid = 0): Promise<void> {
    if (this.virtual(ino)) throw new FsError(E.ENODATA);
    return super.removexattr(ino, name, pid);
  }

  private nodeFileAttr(): Attr {
    const time = { sec: Math.floor(Date.now() / 1000), nsec: 0 };
    return { ino: NODE_FILE_INO, mode: 0o100444, uid: 0, gid: 0, nlink: 1, size: 4096, rdev: 0, atime: time, mtime: time, ctime: time, blocks: 0 };
  }

  private addHandle(ino: number, entries: DirEntry[] | null): number {
    if (this.handles.size >= VIRTUAL_HANDLES_MAX) throw new FsError(E.ENFILE);
    while (this.handles.has(this.nextFh)) this.nextFh = this.nextFh >= VIRTUAL_FH_BASE + 2 ** 31 ? VIRTUAL_FH_BASE : this.nextFh + 1;
    const fh = this.nextFh++;
    this.handles.set(fh, { ino, entries });
    return fh;
  }
}
