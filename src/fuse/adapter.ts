// The FUSE adapter: the only module that knows the FUSE binding (libfuse3's
// low-level API, kDFS's own: native/fuse, the package kdfs-fuse). It
// turns kernel requests into VFS calls, VFS results into replies, and VFS errors
// into errnos. Kernel node ids are kDFS inode numbers (the root is 1 in both).
// Requests carry up to 1 MiB (negotiated by the binding).
import ll from 'kdfs-fuse';
import { E, FsError } from '../common/errno.js';
import { NAME_MAX_BYTES } from '../common/limits.js';
import { log } from '../common/log.js';
import { isDir, isReg } from '../common/mode.js';
import {
  SETATTR_ATIME, SETATTR_ATIME_NOW, SETATTR_GID, SETATTR_MODE, SETATTR_MTIME, SETATTR_MTIME_NOW, SETATTR_SIZE,
  SETATTR_UID, type Attr,
} from '../rpc/messages.js';
import type { Caller, KernelCache, Opened, Told, Vfs } from '../vfs/vfs.js';
import { LookUps } from './lookUps.js';
import { F_RDLCK, F_UNLCK, F_WRLCK, LOCK_FLOCK, LOCK_POSIX, type LockRequest } from '../rpc/messages.js';

const BLOCK_BYTES = 4096;
const PREFERRED_IO_BYTES = 1024 * 1024;
/** Directory entries handed to the binding per readdir request (it packs what fits). */
const READDIR_BATCH = 256;
/** Pieces one read reply may have (the binding's limit). */
const IOV_MAX = 64;

// FUSE_SET_ATTR_* bits of the kernel's setattr, and ours.
const FUSE_SET_ATTR: [number, number][] = [
  [1, SETATTR_MODE], [2, SETATTR_UID], [4, SETATTR_GID], [8, SETATTR_SIZE], [16, SETATTR_ATIME], [32, SETATTR_MTIME],
  [1 << 7, SETATTR_ATIME_NOW], [1 << 8, SETATTR_MTIME_NOW],
];

const OPEN_DIRECT_IO = 1;
const OPEN_KEEP_CACHE = 2;

export interface MountOptions {
  /** Shown as the source of the mount in /proc/mounts. */
  fsname: string;
  readOnly?: boolean;
  debug?: boolean;
  /** Ignore device nodes, set-ID bits (libfuse's default: kDFS asks for dev and suid otherwise). */
  noDev?: boolean;
  noSuid?: boolean;
}

// One scratch array for every reply: the binding copies it before returning.
const attrWords = new Float64Array(15);

function encodeAttr(attr: Attr): Float64Array {
  attrWords[0] = attr.ino;
  attrWords[1] = attr.mode;
  attrWords[2] = attr.nlink;
  attrWords[3] = attr.uid;
  attrWords[4] = attr.gid;
  attrWords[5] = attr.rdev;
  attrWords[6] = attr.size;
  attrWords[7] = isDir(attr.mode) ? BLOCK_BYTES : PREFERRED_IO_BYTES;
  attrWords[8] = attr.blocks ?? 0;
  attrWords[9] = attr.atime?.sec ?? 0;
  attrWords[10] = attr.atime?.nsec ?? 0;
  attrWords[11] = attr.mtime?.sec ?? 0;
  attrWords[12] = attr.mtime?.nsec ?? 0;
  attrWords[13] = attr.ctime?.sec ?? 0;
  attrWords[14] = attr.ctime?.nsec ?? 0;
  return attrWords;
}

function openFlags(opened: Opened): number {
  return (opened.directIo ? OPEN_DIRECT_IO : 0) | (opened.keepCache ? OPEN_KEEP_CACHE : 0);
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

function fail(op: string, slot: number) {
  return (err: unknown) => ll.replyErr(slot, errnoFor(op, err));
}

function replyEntry(slot: number, { attr, timeoutS }: Told): void {
  ll.replyEntry(slot, encodeAttr(attr), timeoutS, timeoutS);
}

function replyAttr(slot: number, { attr, timeoutS }: Told): void {
  ll.replyAttr(slot, encodeAttr(attr), timeoutS);
}

/** Pause before queueing a notification again when the binding's queue is full. */
const NOTIFY_RETRY_MS = 1;

/** Runs a kernel notification on the binding's notification thread; resolves once
 *  the kernel has taken it (an inode or entry it does not know is no error). */
function notified(start: (done: (result: number) => void) => number): Promise<void> {
  return new Promise((resolve) => {
    const attempt = () => {
      const queued = start(() => resolve());
      if (queued === -E.EAGAIN) setTimeout(attempt, NOTIFY_RETRY_MS);
      else if (queued < 0) resolve();
    };
    attempt();
  });
}

/** The kernel's caches, as the VFS drops them. */
const kernelCache: Omit<KernelCache, 'lookUp'> = {
  invalidateInode: (ino, data) => notified((done) => ll.notifyInvalInode(ino, data ? 0 : -1, 0, done)),
  invalidateEntry: (parent, name) => notified((done) => ll.notifyInvalEntry(parent, name, done)),
  // (-ENOENT: the kernel holds nothing of it; -ENOTCONN: no session)
  invalidateAttrsNow: (ino) => void ll.notifyInvalAttrsNow(ino),
};

function replyOk(slot: number): void {
  ll.replyErr(slot, 0);
}

/** An xattr value or list: its size when asked with size 0, ERANGE when it does not fit. */
function replyXattrData(slot: number, value: Uint8Array, size: number): void {
  // protobufjs decodes an empty bytes field as a plain empty array: the binding wants a Buffer (else no reply, a hang)
  const data = Buffer.isBuffer(value) ? value : Buffer.from(value);
  if (size === 0) ll.replyXattr(slot, data.length);
  else if (data.length > size) ll.replyErr(slot, E.ERANGE);
  else ll.replyBuf(slot, data);
}

/** Requests the kernel sent, by operation: logged when the session ends. */
const requestCounts = new Float64Array(ll.OPS.length);

export function requestCountsByOperation(): Record<string, number> {
  return Object.fromEntries(ll.OPS.map((name, i) => [name, requestCounts[i]]).filter(([, n]) => (n as number) > 0));
}

/** The lock waits of requests being served, by slot: an interrupt cancels them. */
const lockWaits = new Map<number, number>();

/** Requests that change nothing (reads, lookups, attributes) being served, by
 *  slot: an interrupt answers them with EINTR, so that a signal ends a process
 *  waiting on an absent node before the bound does. The token tells a late
 *  answer of the request given up from one of a later request in the same slot. */
const interruptible = new Map<number, { token: number; startMs: number }>();
let nextToken = 1;
/** Any signal with a handler (SIGCHLD of a process that has children...) makes
 *  the kernel send an INTERRUPT, and few programs expect EINTR from stat or
 *  read: only a request that waited this long (it waits on an absent node) is
 *  given up, when its interrupt comes or once it has waited so long. */
const INTERRUPT_AFTER_MS = 1000;

/** Registers an interruptible request; the function says, once, whether its
 *  answer is still wanted. */
function answerable(slot: number): () => boolean {
  const token = nextToken++;
  interruptible.set(slot, { token, startMs: Date.now() });
  return () => {
    if (interruptible.get(slot)?.token !== token) return false;
    interruptible.delete(slot);
    return true;
  };
}

/** The kernel interrupted the request in slot: EINTR once it has waited long enough. */
function interrupt(slot: number): void {
  const request = interruptible.get(slot);
  if (!request) return;
  const giveUp = () => {
    if (interruptible.get(slot)?.token !== request.token) return;
    interruptible.delete(slot);
    ll.replyErr(slot, E.EINTR);
  };
  const waitedMs = Date.now() - request.startMs;
  if (waitedMs >= INTERRUPT_AFTER_MS) giveUp();
  else setTimeout(giveUp, INTERRUPT_AFTER_MS - waitedMs);
}

/** flock(2) operations. */
const LOCK_EX = 2;
const LOCK_NB = 4;
const LOCK_UN = 8;

/** setlk and flock: answered once granted, refused, or (a wait) interrupted. */
function lockRequest(vfs: Vfs, slot: number, request: Omit<LockRequest, 'test' | 'waitId'>, fh?: number): void {
  vfs.setlk(request, (waitId) => lockWaits.set(slot, waitId), fh).then(() => replyOk(slot), (err) => {
    // a conflict is an answer, not a fault
    if (err instanceof FsError && (err.errno === E.EAGAIN || err.errno === E.EINTR)) ll.replyErr(slot, err.errno);
    else fail('lock', slot)(err);
  }).finally(() => lockWaits.delete(slot));
}

/** The handler of every kernel request; numbers are read from ll.args before anything else runs. */
function requestHandler(vfs: Vfs, events: { init(): void; exit(): void }) {
  const A = ll.args;
  const OP = Object.fromEntries(ll.OPS.map((name, i) => [name, i])) as Record<string, number>;
  return (op: number, slot: number, s1: string | null, s2: string | null, data: Buffer | null): void => {
    requestCounts[op]++;
    const ino = A[4];
    const caller: Caller = { uid: A[0], gid: A[1], pid: A[2] };
    switch (op) {
      case OP.lookup: {
        const wanted = answerable(slot);
        vfs.lookup(ino, s1!, A[2]).then((attr) => wanted() && replyEntry(slot, attr), (err) => wanted() && fail('lookup', slot)(err));
        return;
      }
      case OP.getattr: {
        const wanted = answerable(slot);
        vfs.getattr(ino).then((attr) => wanted() && replyAttr(slot, attr), (err) => wanted() && fail('getattr', slot)(err));
        return;
      }
      case OP.setattr: {
        let valid = 0;
        for (const [fuse, ours] of FUSE_SET_ATTR) if (A[5] & fuse) valid |= ours;
        const changes = {
          valid, mode: A[6], uid: A[7], gid: A[8], size: A[9],
          atime: { sec: A[10], nsec: A[11] }, mtime: { sec: A[12], nsec: A[13] },
        };
        const fh = A[14] >= 0 ? A[14] : null;
        vfs.setattr(ino, changes, fh, A[2]).then((attr) => replyAttr(slot, attr), fail('setattr', slot));
        return;
      }
      case OP.readlink:
        vfs.readlink(ino).then((target) => ll.replyReadlink(slot, target), fail('readlink', slot));
        return;
      case OP.mknod:
        vfs.mknod(ino, s1!, A[5], A[6], caller).then((attr) => replyEntry(slot, attr), fail('mknod', slot));
        return;
      case OP.mkdir:
        vfs.mkdir(ino, s1!, A[5], caller).then((attr) => replyEntry(slot, attr), fail('mkdir', slot));
        return;
      case OP.unlink:
        vfs.unlink(ino, s1!, A[2]).then(() => replyOk(slot), fail('unlink', slot));
        return;
      case OP.rmdir:
        vfs.rmdir(ino, s1!, A[2]).then(() => replyOk(slot), fail('rmdir', slot));
        return;
      case OP.symlink:
        vfs.symlink(ino, s2!, s1!, caller).then((attr) => replyEntry(slot, attr), fail('symlink', slot));
        return;
      case OP.rename:
        vfs.rename(ino, s1!, A[5], s2!, A[6], A[2]).then(() => replyOk(slot), fail('rename', slot));
        return;
      case OP.link:
        vfs.link(ino, A[5], s1!, A[2]).then((attr) => replyEntry(slot, attr), fail('link', slot));
        return;
      case OP.open:
        vfs.open(ino, A[5], A[2]).then((opened) => ll.replyOpen(slot, opened.fh, openFlags(opened)), fail('open', slot));
        return;
      case OP.create:
        vfs.create(ino, s1!, A[5], A[6], caller).then(
          ({ attr, timeoutS, opened }) => ll.replyCreate(slot, encodeAttr(attr), timeoutS, timeoutS, opened.fh, openFlags(opened)),
          fail('create', slot),
        );
        return;
      case OP.read: {
        const wanted = answerable(slot);
        vfs.read(A[5], A[6], A[7]).then(
          (pieces) => wanted() && ll.replyIov(slot, pieces.length <= IOV_MAX ? pieces : [Buffer.concat(pieces)]),
          (err) => wanted() && fail('read', slot)(err),
        );
        return;
      }
      case OP.write:
        vfs.write(A[5], data!, A[7], A[8] !== 0 ? { uid: A[0], gid: A[1], pid: A[2] } : null).then((n) => ll.replyWrite(slot, n), fail('write', slot));
        return;
      case OP.copy_file_range:
        vfs.copyFileRange(A[5], A[6], A[8], A[9], A[10]).then((n) => ll.replyWrite(slot, n), fail('copy_file_range', slot));
        return;
      case OP.flush: {
        // close(2): the closer's POSIX locks on the file go (the kernel leaves that to us)
        const fh = A[5];
        vfs.flush(fh).then(() => (s1 !== null ? vfs.locks.releasePosix(ino, s1) : undefined)).then(() => replyOk(slot), fail('flush', slot));
        return;
      }
      case OP.release: {
        const fh = A[5];
        const flock = A[6] && s1 !== null ? vfs.locks.releaseFlock(ino, s1) : Promise.resolve();
        const released = flock.then(() => vfs.locks.releaseHandle(ino, fh));
        released.finally(() => vfs.release(fh)).then(() => replyOk(slot), fail('release', slot));
        return;
      }
      case OP.getlk:
        vfs.getlk({ ino, owner: s1 ?? '', kind: LOCK_POSIX, type: A[6], start: A[7], end: A[8], pid: A[9] }).then(
          (held) => ll.replyLock(slot, held.type ?? F_UNLCK, held.start ?? 0, held.end ?? 0, held.pid ?? 0),
          fail('getlk', slot),
        );
        return;
      case OP.setlk:
        lockRequest(vfs, slot, { ino, owner: s1 ?? '', kind: LOCK_POSIX, type: A[6], start: A[7], end: A[8], pid: A[9], wait: A[10] === 1 }, A[5]);
        return;
      case OP.flock: {
        const operation = A[6];
        const type = operation & LOCK_UN ? F_UNLCK : operation & LOCK_EX ? F_WRLCK : F_RDLCK;
        lockRequest(vfs, slot, { ino, owner: s1 ?? '', kind: LOCK_FLOCK, type, start: 0, end: -1, pid: A[2], wait: (operation & LOCK_NB) === 0 });
        return;
      }
      case OP.interrupt: {
        // lock waits and requests that change nothing are given up; any other
        // request ends by itself, within the bound on calls
        const waitId = lockWaits.get(slot);
        if (waitId !== undefined) vfs.cancelLockWait(waitId);
        interrupt(slot);
        return;
      }
      case OP.forget:
        return;
      case OP.fsync:
        vfs.fsync(A[5]).then(() => replyOk(slot), fail('fsync', slot));
        return;
      case OP.opendir:
        vfs.opendir(ino, A[2]).then((fh) => ll.replyOpen(slot, fh, 0), fail('opendir', slot));
        return;
      case OP.readdir: {
        const size = A[6];
        const offset = A[7];
        vfs.readdir(A[5], offset, READDIR_BATCH).then((entries) => {
          ll.replyDir(slot, size, offset, entries.map((e) => e.name), Float64Array.from(entries, (e) => e.ino), Uint32Array.from(entries, (e) => e.mode));
        }, fail('readdir', slot));
        return;
      }
      case OP.releasedir:
        vfs.releasedir(A[5]);
        replyOk(slot);
        return;
      case OP.fsyncdir:
        vfs.fsyncdir().then(() => replyOk(slot), fail('fsyncdir', slot));
        return;
      case OP.statfs:
        vfs.statfs().then((s) => {
          const blocks = Math.floor(s.totalBytes / BLOCK_BYTES);
          const free = Math.floor(s.freeBytes / BLOCK_BYTES);
          ll.replyStatfs(slot, Float64Array.of(BLOCK_BYTES, BLOCK_BYTES, blocks, free, free, s.files, s.filesFree, s.filesFree, 0, 0, NAME_MAX_BYTES));
        }, fail('statfs', slot));
        return;
      case OP.setxattr:
        vfs.setxattr(ino, s1!, data!, A[5], A[2]).then(() => replyOk(slot), fail('setxattr', slot));
        return;
      case OP.getxattr: {
        const size = A[5];
        vfs.getxattr(ino, s1!).then((value) => replyXattrData(slot, value, size), fail('getxattr', slot));
        return;
      }
      case OP.listxattr: {
        const size = A[5];
        vfs.listxattr(ino).then((names) => replyXattrData(slot, Buffer.from(names.map((n) => n + '\0').join('')), size), fail('listxattr', slot));
        return;
      }
      case OP.removexattr:
        vfs.removexattr(ino, s1!, A[2]).then(() => replyOk(slot), fail('removexattr', slot));
        return;
      case OP.fallocate:
        vfs.fallocate(A[5], A[6], A[7], A[8]).then(() => replyOk(slot), fail('fallocate', slot));
        return;
      case OP.init:
        events.init();
        return;
      case OP.exit:
        events.exit();
        return;
      default:
        ll.replyErr(slot, E.ENOSYS);
    }
  };
}

/** libfuse options, in one -o list. */
function fuseOptions(options: MountOptions): string {
  if (/[,\\\s]/.test(options.fsname)) throw new Error(`a kDFS directory path may not contain commas, backslashes or spaces: ${options.fsname}`);
  const list = [
    `fsname=${options.fsname}`,
    'subtype=kdfs',
    // the kernel checks permissions, as on a local file system
    'default_permissions',
    'allow_other',
  ];
  list.push(options.noDev ? 'nodev' : 'dev', options.noSuid ? 'nosuid' : 'suid');
  if (options.readOnly) list.push('ro');
  if (options.debug) list.push('debug');
  return '-o' + list.join(',');
}

export class FuseMount {
  private mounted = false;
  private resolveExited!: () => void;
  /** Resolves when the session has ended. */
  readonly exited = new Promise<void>((resolve) => (this.resolveExited = resolve));

  constructor(readonly mountPoint: string, private readonly vfs: Vfs, private readonly options: MountOptions) {}

  /** Mounts; resolves once the kernel has initialised the session. onExit runs when
   *  the session ends, whoever unmounted it. */
  mount(onExit: () => void): Promise<void> {
    return new Promise((resolve, reject) => {
      const handler = requestHandler(this.vfs, {
        init: () => {
          this.mounted = true;
          resolve();
        },
        exit: () => {
          log.info(`requests served: ${JSON.stringify(requestCountsByOperation())}`);
          this.mounted = false;
          this.resolveExited();
          onExit();
        },
      });
      const lookUps = new LookUps(this.mountPoint);
      this.vfs.attachKernel({ ...kernelCache, lookUp: (names) => lookUps.add(names) });
      try {
        ll.mount(this.mountPoint, fuseOptions(this.options), handler);
      } catch (err) {
        reject(new Error(`cannot mount ${this.mountPoint}: ${(err as Error).message}`));
      }
    });
  }

  /** Lazy unmount: the mount point is detached at once, the session ends when idle. */
  unmount(): void {
    if (this.mounted) ll.unmount();
  }
}
