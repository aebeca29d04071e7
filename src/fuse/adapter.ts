// The FUSE adapter: the only module that knows the FUSE binding (fuse-native,
// patched by patches/fuse-native+2.2.6.patch). It turns kernel requests into VFS
// calls and VFS errors into negative errnos, and owns the mount options.
import Fuse from 'fuse-native';
import { E, FsError } from '../common/errno.js';
import { ATTR_TIMEOUT_S, ENTRY_TIMEOUT_S, NAME_MAX_BYTES } from '../common/limits.js';
import { log } from '../common/log.js';
import { S_IFDIR, S_IFMT, isDir, isReg } from '../common/mode.js';
import type { Attr, Timespec } from '../rpc/messages.js';
import type { Caller, Vfs } from '../vfs/vfs.js';

const STAT_WORDS = 22;
const STATFS_WORDS = 17;
const BLOCK_BYTES = 4096;
/** Largest FUSE write request: big_writes lets the kernel send 128 KiB instead of 4 KiB. */
const MAX_WRITE_BYTES = 128 * 1024;
const PREFERRED_IO_BYTES = 1024 * 1024;

export interface MountOptions {
  /** Shown as the source of the mount in /proc/mounts. */
  fsname: string;
  readOnly?: boolean;
  debug?: boolean;
}

type Callback = (result: number, ...values: unknown[]) => void;

function setU64(words: Uint32Array, at: number, value: number): void {
  const low = value % 4294967296;
  words[at] = low;
  words[at + 1] = Math.floor((value - low) / 4294967296);
}

function setTime(words: Uint32Array, at: number, time: Timespec | null): void {
  setU64(words, at, time?.sec ?? 0); // negative seconds wrap to the two's complement the binding reads back
  words[at + 2] = time?.nsec ?? 0;
}

/** A stat in the binding's layout: mode uid gid size(2) dev nlink ino(2) rdev
 *  blksize blocks(2) atime(3) mtime(3) ctime(3). */
export function statWords(attr: Attr): Uint32Array {
  const words = new Uint32Array(STAT_WORDS);
  words[0] = attr.mode;
  words[1] = attr.uid;
  words[2] = attr.gid;
  setU64(words, 3, attr.size);
  words[6] = attr.nlink;
  setU64(words, 7, attr.ino);
  words[9] = attr.rdev;
  words[10] = isDir(attr.mode) ? BLOCK_BYTES : PREFERRED_IO_BYTES;
  setU64(words, 11, isReg(attr.mode) || isDir(attr.mode) ? Math.ceil(attr.size / 512) : 0);
  setTime(words, 13, attr.atime);
  setTime(words, 16, attr.mtime);
  setTime(words, 19, attr.ctime);
  return words;
}

function direntWords(ino: number, mode: number): Uint32Array {
  const words = new Uint32Array(STAT_WORDS);
  words[0] = mode & S_IFMT;
  setU64(words, 7, ino);
  return words;
}

/** The errno to hand the kernel for an error of the VFS. */
function errnoFor(op: string, err: unknown): number {
  if (err instanceof FsError) {
    if (err.errno === E.EIO) log.warn(`${op}: ${err.message}`);
    return err.errno;
  }
  log.error(`${op}: ${(err as Error)?.stack ?? String(err)}`);
  return E.EIO;
}

function caller(): Caller {
  return { uid: Fuse.context[0], gid: Fuse.context[1] };
}

/** Runs a VFS call and answers the kernel: cb(0) on success, cb(-errno) on error. */
function reply(op: string, cb: Callback, work: Promise<unknown>): void {
  work.then(() => cb(0), (err) => cb(-errnoFor(op, err)));
}

function operations(vfs: Vfs) {
  return {
    getattr(path: string, cb: Callback) {
      vfs.getattr(path).then((attr) => cb(0, statWords(attr)), (err) => cb(-errnoFor('getattr', err)));
    },
    fgetattr(_path: string | null, fh: number, cb: Callback) {
      vfs.fgetattr(fh).then((attr) => cb(0, statWords(attr)), (err) => cb(-errnoFor('fgetattr', err)));
    },
    readdir(path: string, cb: Callback) {
      vfs.readdir(path).then((dir) => {
        const names = ['.', '..'];
        const stats = [direntWords(dir.ino, S_IFDIR), direntWords(dir.parent, S_IFDIR)];
        for (const entry of dir.entries) {
          names.push(entry.name);
          stats.push(direntWords(entry.ino, entry.mode));
        }
        cb(0, names, stats);
      }, (err) => cb(-errnoFor('readdir', err)));
    },
    readlink(path: string, cb: Callback) {
      vfs.readlink(path).then((target) => cb(0, target), (err) => cb(-errnoFor('readlink', err)));
    },
    mknod(path: string, mode: number, dev: number, cb: Callback) {
      reply('mknod', cb, vfs.mknod(path, mode, dev, caller()));
    },
    mkdir(path: string, mode: number, cb: Callback) {
      reply('mkdir', cb, vfs.mkdir(path, mode, caller()));
    },
    // fuse-native names the arguments (target, path): symlink(2)'s order
    symlink(target: string, path: string, cb: Callback) {
      reply('symlink', cb, vfs.symlink(target, path, caller()));
    },
    unlink(path: string, cb: Callback) {
      reply('unlink', cb, vfs.unlink(path));
    },
    rmdir(path: string, cb: Callback) {
      reply('rmdir', cb, vfs.rmdir(path));
    },
    rename(from: string, to: string, cb: Callback) {
      reply('rename', cb, vfs.rename(from, to));
    },
    link(from: string, to: string, cb: Callback) {
      reply('link', cb, vfs.link(from, to));
    },
    chmod(path: string, mode: number, cb: Callback) {
      reply('chmod', cb, vfs.chmod(path, mode));
    },
    chown(path: string, uid: number, gid: number, cb: Callback) {
      reply('chown', cb, vfs.chown(path, uid, gid));
    },
    utimens(path: string, atime: Timespec, mtime: Timespec, cb: Callback) {
      reply('utimens', cb, vfs.utimens(path, atime, mtime));
    },
    truncate(path: string, size: number, cb: Callback) {
      reply('truncate', cb, vfs.truncate(path, size));
    },
    ftruncate(_path: string | null, fh: number, size: number, cb: Callback) {
      reply('ftruncate', cb, vfs.ftruncate(fh, size));
    },
    create(path: string, mode: number, flags: number, cb: Callback) {
      const who = caller();
      vfs.create(path, mode, flags, who).then((o) => cb(0, o.fh, o.directIo ? 1 : 0), (err) => cb(-errnoFor('create', err)));
    },
    open(path: string, flags: number, cb: Callback) {
      vfs.open(path, flags).then((o) => cb(0, o.fh, o.directIo ? 1 : 0), (err) => cb(-errnoFor('open', err)));
    },
    read(_path: string | null, fh: number, buffer: Buffer, length: number, offset: number, cb: Callback) {
      vfs.read(fh, buffer, length, offset).then((n) => cb(n), (err) => cb(-errnoFor('read', err)));
    },
    write(_path: string | null, fh: number, buffer: Buffer, length: number, offset: number, cb: Callback) {
      vfs.write(fh, buffer, length, offset).then((n) => cb(n), (err) => cb(-errnoFor('write', err)));
    },
    flush(_path: string | null, fh: number, cb: Callback) {
      reply('flush', cb, vfs.flush(fh));
    },
    fsync(_path: string | null, _datasync: number, fh: number, cb: Callback) {
      reply('fsync', cb, vfs.fsync(fh));
    },
    release(_path: string | null, fh: number, cb: Callback) {
      reply('release', cb, vfs.release(fh));
    },
    statfs(_path: string, cb: Callback) {
      vfs.statfs().then((s) => {
        const words = new Uint32Array(STATFS_WORDS);
        words[0] = BLOCK_BYTES;
        words[1] = BLOCK_BYTES;
        setU64(words, 2, Math.floor(s.totalBytes / BLOCK_BYTES));
        setU64(words, 4, Math.floor(s.freeBytes / BLOCK_BYTES));
        setU64(words, 6, Math.floor(s.freeBytes / BLOCK_BYTES));
        setU64(words, 8, s.files);
        setU64(words, 10, s.filesFree);
        setU64(words, 12, s.filesFree);
        words[16] = NAME_MAX_BYTES;
        cb(0, words);
      }, (err) => cb(-errnoFor('statfs', err)));
    },
    getxattr(path: string, name: string, _position: number, cb: Callback) {
      vfs.getxattr(path, name).then((value) => cb(0, value), (err) => cb(-errnoFor('getxattr', err)));
    },
    setxattr(path: string, name: string, value: Buffer, _position: number, flags: number, cb: Callback) {
      reply('setxattr', cb, vfs.setxattr(path, name, Buffer.from(value), flags));
    },
    listxattr(path: string, cb: Callback) {
      vfs.listxattr(path).then((names) => cb(0, names), (err) => cb(-errnoFor('listxattr', err)));
    },
    removexattr(path: string, name: string, cb: Callback) {
      reply('removexattr', cb, vfs.removexattr(path, name));
    },
  };
}

/** libfuse options: ours, since fuse-native's list cannot express them all. */
function fuseOptions(options: MountOptions): string {
  if (/[,\\\s]/.test(options.fsname)) throw new Error(`a kDFS directory path may not contain commas, backslashes or spaces: ${options.fsname}`);
  const list = [
    `fsname=${options.fsname}`,
    'subtype=kdfs',
    // st_ino is ours (64-bit, the same on every node), not libfuse's
    'use_ino',
    // unlink of an open file really unlinks it (no .fuse_hidden files): the
    // metadata service keeps the inode until its last close
    'hard_remove',
    'big_writes',
    `max_write=${MAX_WRITE_BYTES}`,
    // the kernel checks permissions, as on a local file system
    'default_permissions',
    'allow_other',
    `entry_timeout=${ENTRY_TIMEOUT_S}`,
    `attr_timeout=${ATTR_TIMEOUT_S}`,
    'negative_timeout=0',
    'nonempty',
  ];
  if (options.readOnly) list.push('ro');
  if (options.debug) list.push('debug');
  return '-o' + list.join(',');
}

export class FuseMount {
  private fuse: Fuse | null = null;

  constructor(readonly mountPoint: string, private readonly vfs: Vfs, private readonly options: MountOptions) {}

  /** Mounts; resolves once the kernel has initialised the session. onExit runs when
   *  the session ends, whoever unmounted it. */
  mount(onExit: () => void): Promise<void> {
    const fuse = new Fuse(this.mountPoint, operations(this.vfs), {
      timeout: false,
      onexit: () => {
        this.fuse = null; // the kernel ended the session: nothing left to unmount
        onExit();
      },
    });
    const options = fuseOptions(this.options);
    (fuse as unknown as { _fuseOptions: () => string })._fuseOptions = () => options;
    this.fuse = fuse;
    return new Promise((resolve, reject) => {
      fuse.mount((err: Error | null) => (err ? reject(new Error(`cannot mount ${this.mountPoint}: ${err.message}`)) : resolve()));
    });
  }

  /** Lazy unmount: the mount point is detached at once, the session ends when idle. */
  unmount(): Promise<void> {
    const fuse = this.fuse;
    if (!fuse) return Promise.resolve();
    this.fuse = null;
    return new Promise((resolve) => fuse.unmount((err: Error | null) => {
      if (err) log.warn(`unmount ${this.mountPoint}: ${err.message}`);
      resolve();
    }));
  }
}
