// The VFS of a node: the file system as the FUSE adapter calls it, by inode
// number and open handle. Namespace operations go to the metadata service; file
// data goes straight to the agents (OpenFiles). Errors are FsError(errno).
//
// Consistency, as documented in the README:
// - The kernel caches attributes and directory entries for as long as the
//   metadata service grants (its lease, a few seconds); the service calls this
//   node back (invalidate) before a change elsewhere makes them wrong.
// - Close-to-open: writes reach the agents before write() returns; their size
//   and mtime reach the metadata service at close (flush) or fsync. Opening a
//   file asks the metadata service for fresh attributes: if another node changed
//   the file, the kernel drops its cached attributes and pages (KernelView).
// - An inode that is gone is ESTALE, so that the kernel looks its name up again.
import { constants, readFileSync } from 'node:fs';
import { E, FsError, errnoName, errnoOf } from '../common/errno.js';
import { now } from '../common/clock.js';
import { log } from '../common/log.js';
import { ABSENT_XATTR_CACHE_MS, FILE_MAX_BYTES } from '../common/limits.js';
import { CACHE_LEASE_MS } from '../meta/coherence.js';
import { applyAttrChanges } from '../meta/attrChanges.js';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK, S_ISGID, S_ISUID, isDir, isReg } from '../common/mode.js';
import type { Entry, Fresh, MetaClient } from '../meta/client.js';
import {
  INVALIDATE_ATTR, INVALIDATE_DATA, INVALIDATE_DELEGATION, INVALIDATE_ENTRY, SETATTR_MODE, SETATTR_MTIME, SETATTR_MTIME_NOW, SETATTR_SIZE, CHANGED_LAYOUT, CHANGED_MTIME, CHANGED_SIZE, RENAME_EXCHANGE,
  type Attr, type DelegatedCreate, type DirEntry, type Invalidation, type SetattrRequest, type StatfsReply,
} from '../rpc/messages.js';
import type { AgentPool } from './agents.js';
import { DirHandles } from './dirs.js';
import { OpenFiles, type OpenFile } from './files.js';
import { KernelView } from './kernelView.js';
import { AbsentXattrs } from './absentXattrs.js';
import { AttrCache } from './attrCache.js';
import { DirKnowledge } from './dirKnowledge.js';
import { StaleNames, staleName } from './staleNames.js';
import { HeldDirs } from './heldDirs.js';
import { RecentMap } from '../common/recentMap.js';
import { Delegations } from './delegations.js';
import { Statahead } from './statahead.js';
import { NodeLocks } from '../locks/client.js';
import { FALLOCATE_ALLOCATE, FALLOCATE_PUNCH, FALLOCATE_ZERO, type LockReply, type LockRequest } from '../rpc/messages.js';

// fallocate(2)'s flags (linux/falloc.h)
const FALLOC_FL_KEEP_SIZE = 0x01;
const FALLOC_FL_PUNCH_HOLE = 0x02;
const FALLOC_FL_ZERO_RANGE = 0x10;

/** Who asks: pid is the kernel thread (see StaleNames). */
export interface Caller { uid: number; gid: number; pid: number }

/** An open without a call needs its attributes granted for longer than this. */
const OPEN_HERE_MARGIN_MS = 1000;
/** Threads whose last open is remembered (see Vfs.opened), at most. */
const OPENS_BY_THREAD_MAX = 1024;
/** How long after its open the truncation of an O_TRUNC open may come. */
const OPEN_TRUNCATION_MS = 1000;

export interface Opened {
  fh: number;
  /** The kernel's cached pages of the file are current: keep them. */
  keepCache: boolean;
  /** Bypass the page cache: for a descriptor that only writes (the cache would
   *  only cost a copy of everything written), and for O_APPEND writes when the
   *  kernel's size may be stale. */
  directIo: boolean;
}

/** A process writing, as the kernel names it. */
export interface Writer { uid: number; gid: number; pid: number }

/** Whether a process is in group gid: its group, or one of its supplementary
 *  groups (from /proc; a process gone meanwhile is in no other). */
function inGroup(writer: Writer, gid: number): boolean {
  if (writer.gid === gid) return true;
  try {
    const line = /^Groups:(.*)$/m.exec(readFileSync(`/proc/${writer.pid}/status`, 'utf8'))?.[1] ?? '';
    return line.trim().split(/\s+/).filter(Boolean).map(Number).includes(gid);
  } catch {
    return false;
  }
}

/** copy_file_range moves this much at a time. */
const COPY_CHUNK_BYTES = 1024 * 1024;
const S_IXGRP = 0o010;

/** A descriptor opened for writing only gains nothing from the page cache. */
const O_ACCMODE = 3;
const writeOnly = (flags: number) => (flags & O_ACCMODE) === constants.O_WRONLY;

/** Attributes for the kernel, and how long it may cache them (and the entry, for
 *  lookups and creations). */
export interface Told { attr: Attr; timeoutS: number }

/** What the VFS needs of the kernel's caches: dropping an inode's attributes
 *  (and its cached pages, with data), or an entry. Resolve once done. */
export interface KernelCache {
  invalidateInode(ino: number, data: boolean): Promise<void>;
  /** Drops the attributes the kernel holds of ino before it returns (it waits
   *  for no lock and no notification queued before it). */
  invalidateAttrsNow(ino: number): void;
  invalidateEntry(parent: number, name: string): Promise<void>;
  /** Has the kernel look up the path (names from the mount's root), without
   *  waiting for it: a directory whose dropped entry a process still holds
   *  (its working directory) is moved to that name by the kernel. */
  lookUp(names: string[]): void;
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
   *  answer is kept for a while. */
  private readonly absentXattrs = new AbsentXattrs(ABSENT_XATTR_CACHE_MS);
  private kernelCache: KernelCache | null = null;
  private readonly attrs = new AttrCache();
  private readonly known = new DirKnowledge();
  private readonly staleNames = new StaleNames();
  private readonly heldDirs = new HeldDirs();
  /** The inode each thread opened last, and when (see truncatedByOpen). */
  private readonly openedBy = new RecentMap<number, { ino: number; atMs: number }>(OPENS_BY_THREAD_MAX);
  private readonly statahead: Statahead;
  private readonly delegations: Delegations;
  readonly locks: NodeLocks;

  constructor(private readonly meta: MetaClient, agents: AgentPool, readonly nodeId: number) {
    this.files = new OpenFiles(meta, agents, nodeId, this.attrs, (ino) => this.delegations.spill(ino));
    // a directory whose every entry this node knows is listed without a call
    this.dirs = new DirHandles(meta, (dir) => (this.leaseHolds() ? this.known.list(dir) : null));
    this.statahead = new Statahead(meta, this.known, this.attrs, this.files.closedContent);
    this.delegations = new Delegations((creates) => meta.publish(creates), (count) => meta.reserveInos(count), (create, errno) => this.createRefused(create, errno), nodeId);
    meta.pendingCreates = this.delegations;
    this.locks = new NodeLocks(meta, {
      granted: (ino) => this.revalidate(ino),
      releasing: async (ino) => {
        const file = this.files.file(ino);
        if (file) await this.files.commit(file, false);
      },
    });
    // what this node's own calls changed is no longer as cached
    this.attrs.onGranted = (ino, cacheMs) => this.files.closedContent.granted(ino, cacheMs);
    meta.onChanged = ({ changed, changedAttrs, changedCacheMs }) => {
      for (const ino of changed ?? []) this.forgetInode(ino);
      // such as the directory a creation changed, which the kernel asks for next
      for (const attr of changedAttrs ?? []) this.attrs.put(attr, changedCacheMs ?? 0);
    };
  }

  /** Leaves a name out of the root directory's listing (it can still be looked up). */
  protected hideInRoot(name: string): void {
    this.dirs.hiddenInRoot.add(name);
  }

  /** The FUSE adapter's hook for dropping kernel caches (set once mounted). */
  attachKernel(cache: KernelCache): void {
    this.kernelCache = cache;
  }

  // ------------------------------------------------------------ attributes

  /** Attributes about to be handed to the kernel, with this node's uncommitted
   *  writes; the kernel may keep them for as long as they are granted, no longer
   *  than the lease, and not past this node's lease. */
  private told({ attr, cacheMs }: Fresh, stored = true): Told {
    if (stored) this.attrs.put(attr, cacheMs);
    this.heldDirs.told(attr);
    const merged = this.files.withLocalWrites(attr);
    if (isReg(merged.mode)) this.kernel.record(merged);
    const timeoutMs = Math.min(cacheMs, CACHE_LEASE_MS, this.meta.leaseRemainingMs());
    return { attr: merged, timeoutS: Math.max(0, timeoutMs) / 1000 };
  }

  /** Whether this node may use what it was granted: while its lease holds. A
   *  node that lost it drops it all (what its kernel was told expired with it). */
  private leaseHolds(): boolean {
    if (this.meta.leaseRemainingMs() > 0) return true;
    this.forgetGrants();
    return false;
  }

  /** Drops all that holds only while the service's grants do. */
  private forgetGrants(): void {
    this.attrs.clear();
    this.files.closedContent.clear();
    this.known.clear();
    this.delegations.clear();
  }

  /** What this node keeps of an inode another call changed. */
  private forgetInode(ino: number): void {
    this.attrs.drop(ino);
    this.files.closedContent.drop(ino);
  }

  /** Attributes granted and still valid, as the kernel is told them. */
  private cachedAttr(ino: number): Told | null {
    const cached = this.leaseHolds() ? this.attrs.get(ino) : null;
    return cached ? this.told({ attr: cached.attr, cacheMs: cached.remainingMs }, false) : null;
  }

  /** The entry as this node knows it without a call: null if it does not. */
  private knownEntry(parent: number, name: string): Told | null {
    const known = this.leaseHolds() ? this.known.lookup(parent, name) : null;
    if (known === 0) throw new FsError(E.ENOENT);
    return known === null ? null : this.cachedAttr(known);
  }

  /** pid: the kernel thread that asks (see StaleNames). */
  async lookup(parent: number, name: string, pid = 0): Promise<Told> {
    try {
      const told = await this.lookupHere(parent, name);
      this.staleNames.found(pid, parent, name, told.attr.ino);
      return told;
    } catch (err) {
      this.staleNames.lookupFailed(pid, parent, name);
      throw err;
    }
  }

  private async lookupHere(parent: number, name: string): Promise<Told> {
    const here = this.knownEntry(parent, name) ?? ((await this.statahead.missed(parent)) ? this.knownEntry(parent, name) : null);
    if (here) {
      // (an entry from the service is told in entryIn)
      this.staleNames.tell(parent, name, here.attr.ino, here.attr.mode);
      return here;
    }
    try {
      return this.entryIn(parent, name, await this.meta.getattr({ ino: parent, name }), false);
    } catch (err) {
      // what this node believed of the directory is wrong
      if (err instanceof FsError && err.errno !== E.ENOENT) this.known.forget(parent);
      throw err;
    }
  }

  /** An entry the metadata service looked up or made: the kernel is told of it,
   *  and what this node knows of the directory follows. */
  private entryIn(parent: number, name: string, fresh: Fresh & { created?: boolean }, made: boolean): Told {
    this.staleNames.tell(parent, name, fresh.attr.ino, fresh.attr.mode);
    this.known.granted(parent, fresh.cacheMs);
    if (made) this.known.added(parent, name, fresh.attr.ino, fresh.attr.mode);
    if (made && fresh.created && isDir(fresh.attr.mode)) this.known.created(fresh.attr.ino, parent, fresh.cacheMs);
    return this.told(fresh);
  }

  async getattr(ino: number): Promise<Told> {
    const cached = this.cachedAttr(ino);
    if (cached) return cached;
    try {
      return this.told(await byInode(this.meta.getattr({ ino })));
    } catch (err) {
      const held = errnoOf(err) === E.ESTALE ? this.heldDirs.removed(ino) : null;
      if (!held) throw err;
      return { attr: held, timeoutS: 0 };
    }
  }

  /** The metadata service calls back: another node changed what the kernel caches. */
  async invalidate(items: Invalidation[], taken: () => void = () => {}): Promise<void> {
    const files = items.filter((item) => item.kind === INVALIDATE_ATTR || item.kind === INVALIDATE_DATA);
    // what this node answers itself, at once (see StaleNames): the service may go on once it is told so
    const dropped = new Map<Invalidation, () => void>();
    /** Directories that moved, whose new place the kernel is to look up once it dropped the old. */
    const lookUps = new Map<Invalidation, string[]>();
    for (const item of items) {
      if (item.kind !== INVALIDATE_ENTRY) continue;
      this.known.forget(item.parent);
      const newPlace = item.newParent && this.staleNames.holdsDir(item.parent, item.name) ? this.staleNames.pathOf(item.newParent) : null;
      if (newPlace) lookUps.set(item, [...newPlace, item.newName ?? '']);
      dropped.set(item, this.staleNames.removed(item.parent, item.name));
    }
    // The grants that let a file open without a call go first: an open made
    // while the opens are being told would go untold, and the service, told
    // none, would delete an unlinked file this node has open (ESTALE).
    // The kernel's attributes too (its mode for permission checks, its size):
    // the service may go on once this node took the callback, without waiting
    // for the notifications queued below (an entry's waits for its directory's
    // lock, which this node's own request there holds).
    for (const item of files) {
      this.forgetInode(item.ino);
      this.kernelCache?.invalidateAttrsNow(item.ino);
    }
    taken();
    // opens of these files made without a call: the service counts them before it goes on
    if (files.length > 0) await this.files.tellOpens();
    await Promise.all(items.map((item) => {
      if (item.kind === INVALIDATE_DELEGATION) {
        this.delegations.drop(item.parent);
        return this.delegations.flush();
      }
      if (item.kind === INVALIDATE_ENTRY) {
        const done = dropped.get(item)!;
        return this.kernelCache ? this.kernelCache.invalidateEntry(item.parent, item.name).finally(done) : done();
      }
      const data = item.kind === INVALIDATE_DATA;
      this.forgetInode(item.ino);
      this.known.parentChanged(item.ino);
      this.absentXattrs.forget(item.ino);
      if (data) this.kernel.forget(item.ino);
      this.files.changedElsewhere(item.ino, data, (item.reasons & CHANGED_SIZE) !== 0, (item.reasons & CHANGED_MTIME) !== 0, item.size ?? 0);
      const moved = (item.reasons & CHANGED_LAYOUT) !== 0 ? this.files.layoutMoved(item.ino) : undefined;
      // The attributes went above. Not again: a second notification landing
      // during a getattr sent after the first makes the kernel drop that
      // getattr's fresh reply and check permissions against the mode it had.
      // (Pages cannot be dropped without it: a write that also changed the mode,
      // clearing set-ID bits, keeps that small window.)
      return Promise.all([moved, data ? this.kernelCache?.invalidateInode(item.ino, true) : undefined]);
    }));
    // once every entry is dropped: the new name's, replaced by the move, too
    for (const names of lookUps.values()) this.kernelCache?.lookUp(names);
  }

  /** Drops what this node and its kernel cache of a file (a lock was taken on it). */
  private async revalidate(ino: number): Promise<void> {
    this.attrs.drop(ino);
    this.kernel.forget(ino);
    this.files.changedElsewhere(ino, true, false, false, 0);
    await this.kernelCache?.invalidateInode(ino, true);
  }

  // ------------------------------------------------------------ file locks

  /** F_GETLK. */
  getlk(request: Omit<LockRequest, 'test' | 'wait'>): Promise<LockReply> {
    return this.locks.test(request);
  }

  /** F_SETLK(W) and flock; onWait gets the id that cancelLockWait takes. */
  setlk(request: Omit<LockRequest, 'test' | 'waitId'>, onWait?: (waitId: number) => void, fh?: number): Promise<void> {
    return this.locks.set(request, onWait, fh);
  }

  cancelLockWait(waitId: number): void {
    this.locks.cancel(waitId);
  }

  /** The session with the metadata service was lost and made again: callbacks may
   *  have been missed. Attributes and entries expired with the lease; the pages
   *  of open files are dropped. */
  async sessionLost(): Promise<void> {
    this.forgetGrants();
    this.absentXattrs.clear();
    await Promise.all(this.files.openInos().map((ino) => {
      this.kernel.forget(ino);
      return this.kernelCache?.invalidateInode(ino, true);
    }));
  }

  async setattr(ino: number, changes: Changes, fh: number | null, pid = 0): Promise<Told> {
    if (fh === null && (changes.valid & SETATTR_SIZE) !== 0) {
      // truncate(2), checked even of a file open here; but for the truncation
      // of an O_TRUNC open, which follows it (its open was checked)
      if (!this.truncatedByOpen(ino, pid)) this.reachedByPath(ino, pid);
    } else if (fh === null) {
      this.reachedWithoutHandle(ino, pid);
    }
    // a directory's mode and group decide its new files' group: ask again after a change
    this.delegations.drop(ino);
    // writes of this node made before a time is set are older than it: their mtime must not win
    if (changes.valid & (SETATTR_MTIME | SETATTR_MTIME_NOW)) this.files.timesSet(ino);
    const here = (changes.valid & SETATTR_SIZE) === 0 ? this.setattrHere(ino, changes) : null;
    if (here) return here;
    if (changes.valid & SETATTR_SIZE) {
      const size = changes.size ?? 0;
      if (!Number.isSafeInteger(size) || size < 0) throw new FsError(E.EINVAL);
      if (size > FILE_MAX_BYTES) throw new FsError(E.EFBIG);
      const open = fh !== null ? this.files.handle(fh).file : this.files.file(ino);
      // a spill in progress writes the content it read: the cut comes after it
      if (open?.spilling) await open.spilling;
      let fencedStale: number[] = [];
      if (!open?.inline) {
        // what this node wrote reaches the objects before they are cut
        await open?.writer.settle();
        open?.readAhead.clear();
        // directories and the like have no layout: the metadata service refuses their size
        const layout = open?.layout ?? (await byInode(this.meta.getStripe({ ino }))).layout;
        if (layout) fencedStale = await this.files.truncateObjects(ino, layout, size);
      }
      const fresh = await this.meta.setattr({ target: { ino }, ...changes });
      if (open) this.files.truncated(open, size);
      // being repaired, from before the cut: stale again, to be repaired at the new size
      if (fencedStale.length > 0) await this.meta.markStale(ino, fencedStale);
      return this.told(fresh);
    }
    return this.told(await byInode(this.meta.setattr({ target: { ino }, ...changes })));
  }

  /** A setattr of a file made here under a delegation and not sent yet goes
   *  with its create, without a call: tar x and cp -p set the times, owner and
   *  mode of every file they make. The kernel checked it (default_permissions).
   *  Null if the service must be asked. */
  private setattrHere(ino: number, changes: Changes): Told | null {
    const granted = this.attrs.get(ino);
    if (!granted || !this.leaseHolds()) return null;
    const attr = this.delegations.change(ino, () => {
      const changed = { ...granted.attr };
      applyAttrChanges(changed, changes, now());
      return changed;
    });
    return attr && this.told({ attr, cacheMs: granted.remainingMs });
  }

  readlink(ino: number): Promise<string> {
    return byInode(this.meta.readLink({ ino }));
  }

  statfs(): Promise<StatfsReply> {
    return this.meta.statfs();
  }

  // ------------------------------------------------------------ namespace

  /** A setattr (but a truncation) or a change of extended attributes came
   *  without a file handle: by a path (chmod, setxattr), which the kernel
   *  tries again on ESTALE, or by a descriptor (fchmod, futimens, fsetxattr),
   *  which it does not. Those of a file or directory open here (its open was
   *  checked), or of an inode whose opens the daemon never sees (a FIFO), may
   *  be the latter: let through. */
  private reachedWithoutHandle(ino: number, pid: number): void {
    if (this.files.file(ino) || this.dirs.isOpen(ino) || !this.staleNames.opensSeen(ino)) return;
    this.reachedByPath(ino, pid);
  }

  /** Thread pid opened ino. If with O_TRUNC (the daemon cannot tell: without
   *  atomic O_TRUNC the kernel leaves it out of the open's flags), its
   *  truncation follows from the same thread, without a file handle. */
  private opened(ino: number, pid: number): void {
    if (pid !== 0) this.openedBy.set(pid, { ino, atMs: Date.now() });
  }

  /** Whether a truncation of ino without a handle by thread pid may be that of its O_TRUNC open. */
  private truncatedByOpen(ino: number, pid: number): boolean {
    const last = this.openedBy.get(pid);
    if (last?.ino !== ino || Date.now() - last.atMs > OPEN_TRUNCATION_MS) return false;
    this.openedBy.delete(pid);
    return true;
  }

  /** A request of thread pid reached inos by path walks: ESTALE if one may be
   *  through a name removed elsewhere (see StaleNames). */
  private reachedByPath(inos: number | readonly number[], pid: number, making?: { parent: number; name: string }): void {
    if (this.staleNames.reached(inos, pid, making) === 'stale') throw staleName(typeof inos === 'number' ? inos : inos[0]!);
  }

  async mknod(parent: number, name: string, mode: number, rdev: number, caller: Caller): Promise<Told> {
    return this.make(parent, name, { mode, rdev }, caller);
  }

  async mkdir(parent: number, name: string, mode: number, caller: Caller): Promise<Told> {
    return this.make(parent, name, { mode: S_IFDIR | (mode & 0o7777) }, caller);
  }

  async symlink(parent: number, name: string, target: string, caller: Caller): Promise<Told> {
    return this.make(parent, name, { mode: S_IFLNK | 0o777, target }, caller);
  }

  /** A new entry of any type but a regular file (create opens those). */
  private async make(parent: number, name: string, what: { mode: number; rdev?: number; target?: string }, caller: Caller): Promise<Told> {
    // (bind(2) makes sockets, and does not try again on ESTALE)
    if ((what.mode & S_IFMT) !== S_IFSOCK) this.reachedByPath(parent, caller.pid, { parent, name });
    // a new directory's every entry (none) is known here: its files may be made here from the first
    const delegate = isDir(what.mode) && this.leaseHolds() ? { wantDelegation: true, wantInos: this.delegations.inosWanted() } : {};
    const entry = await this.changing(parent, this.meta.create({ entry: { ino: parent, name }, ...what, uid: caller.uid, gid: caller.gid, exclusive: true, ...delegate }));
    const told = this.entryIn(parent, name, entry, true);
    this.delegations.granted(entry.delegation);
    return told;
  }

  /** A change of the entries of dir by this node: if it fails, what the node
   *  believed of the directory may be wrong (EEXIST of a name it thought absent). */
  private async changing<T>(dir: number, work: Promise<T>): Promise<T> {
    try {
      return await work;
    } catch (err) {
      this.known.forget(dir);
      throw err;
    }
  }

  async unlink(parent: number, name: string, pid = 0): Promise<void> {
    this.reachedByPath(parent, pid);
    // the service frees a file with no link left that no node holds open: it must know this node's
    await this.files.tellOpens();
    await this.changing(parent, this.meta.remove({ ino: parent, name }, false));
    this.known.removed(parent, name);
    this.staleNames.forget(parent, name);
  }

  async rmdir(parent: number, name: string, pid = 0): Promise<void> {
    this.reachedByPath(parent, pid);
    await this.changing(parent, this.meta.remove({ ino: parent, name }, true));
    this.known.removed(parent, name);
    this.staleNames.forget(parent, name);
  }

  /** flags of renameat2: RENAME_NOREPLACE (1), RENAME_EXCHANGE (2). */
  async rename(parent: number, name: string, newParent: number, newName: string, flags = 0, pid = 0): Promise<void> {
    this.reachedByPath([parent, newParent], pid, { parent: newParent, name: newName });
    await this.files.tellOpens();
    await this.changing(parent, this.changing(newParent, this.meta.rename({ ino: parent, name }, { ino: newParent, name: newName }, flags)));
    if (flags & RENAME_EXCHANGE) {
      // the kernel swapped the two entries; what this node knew of both directories is asked again
      for (const [dir, entryName] of [[parent, name], [newParent, newName]] as const) {
        const swapped = this.known.entry(dir, entryName);
        if (swapped) this.known.parentChanged(DirKnowledge.inoOf(swapped));
        this.known.forget(dir);
      }
      this.staleNames.exchanged(parent, name, newParent, newName);
      return;
    }
    const moved = this.known.entry(parent, name);
    this.known.removed(parent, name);
    this.staleNames.moved(parent, name, newParent, newName);
    // a name this node did not know the inode of leaves the destination unknown
    if (!moved) {
      this.known.forget(newParent);
      return;
    }
    this.known.moved(newParent, newName, moved);
    if (newParent !== parent) this.known.reparented(DirKnowledge.inoOf(moved), newParent);
  }

  async link(ino: number, newParent: number, newName: string, pid = 0): Promise<Told> {
    this.reachedByPath([ino, newParent], pid, { parent: newParent, name: newName });
    return this.entryIn(newParent, newName, await this.changing(newParent, this.meta.link({ ino }, { ino: newParent, name: newName })), true);
  }

  /** The inode has no extended attributes, as granted (the kernel asks for
   *  security.capability and ACLs at every write, `ls -l` at every name). */
  private hasNoXattrs(ino: number): boolean {
    return this.leaseHolds() && this.attrs.hasNoXattrs(ino);
  }

  async getxattr(ino: number, name: string): Promise<Buffer> {
    if (this.absentXattrs.has(ino, name) || this.hasNoXattrs(ino)) throw new FsError(E.ENODATA);
    try {
      return await byInode(this.meta.getXattr({ ino }, name));
    } catch (err) {
      if (err instanceof FsError && err.errno === E.ENODATA) this.absentXattrs.add(ino, name);
      throw err;
    }
  }

  async setxattr(ino: number, name: string, value: Uint8Array, flags: number, pid = 0): Promise<void> {
    this.reachedWithoutHandle(ino, pid);
    this.absentXattrs.forget(ino);
    await byInode(this.meta.setXattr({ ino }, name, value, flags));
  }

  async listxattr(ino: number): Promise<string[]> {
    if (this.hasNoXattrs(ino)) return [];
    return byInode(this.meta.listXattr({ ino }));
  }

  async removexattr(ino: number, name: string, pid = 0): Promise<void> {
    this.reachedWithoutHandle(ino, pid);
    this.absentXattrs.forget(ino);
    await byInode(this.meta.removeXattr({ ino }, name));
  }

  // ------------------------------------------------------------ open files

  async create(parent: number, name: string, mode: number, flags: number, caller: Caller): Promise<Told & { opened: Opened }> {
    this.reachedByPath(parent, caller.pid, { parent, name });
    this.files.checkLimit();
    const fileMode = S_IFREG | (mode & 0o7777);
    // a directory whose every entry this node knows may be one it creates in by itself
    const absent = this.leaseHolds() && this.known.lookup(parent, name) === 0;
    // an existing file this node is closing: a close sent during the call goes after its open
    const closesBefore = this.files.closesSoFar();
    const entry = (absent && this.createHere(parent, name, fileMode, caller)) || await this.changing(parent, this.meta.create({
      entry: { ino: parent, name }, mode: fileMode, uid: caller.uid, gid: caller.gid,
      exclusive: (flags & constants.O_EXCL) !== 0, openNode: this.nodeId,
      ...(absent && !this.delegations.held(parent) ? { wantDelegation: true, wantInos: this.delegations.inosWanted() } : {}),
    }));
    this.delegations.granted(entry.delegation);
    this.known.granted(parent, entry.cacheMs);
    this.known.added(parent, name, entry.attr.ino, entry.attr.mode);
    this.staleNames.tell(parent, name, entry.attr.ino, entry.attr.mode);
    this.opened(entry.attr.ino, caller.pid);
    // an existing file whose last close was on its way: announce the open again after it
    if (await this.files.closed(entry.attr.ino)) await this.meta.open({ ino: entry.attr.ino }, this.nodeId);
    const { fh } = this.files.add(entry, flags, false, closesBefore);
    // a new inode has no extended attributes: the kernel's security.capability question needs no call
    if (entry.created) this.absentXattrs.addAll(entry.attr.ino);
    const told = this.told(entry);
    const directIo = this.files.bypassCache(fh, writeOnly(flags) || (flags & constants.O_APPEND) !== 0);
    // writes that bypass the page cache leave what the kernel has cached of the file behind
    if (directIo) this.kernel.forget(entry.attr.ino);
    return { ...told, opened: { fh, keepCache: false, directIo } };
  }

  /** An open without a call: of a file this node closed last, whose attributes
   *  it holds granted (the service calls it back before any change) for more
   *  than OPEN_HERE_MARGIN_MS. The service hears of it with the next batch of
   *  closes. Null if the service must be asked. */
  private openHere(ino: number, flags: number): Opened | null {
    if (this.files.file(ino) || !this.leaseHolds()) return null;
    const granted = this.attrs.get(ino);
    if (!granted || granted.remainingMs <= OPEN_HERE_MARGIN_MS || !isReg(granted.attr.mode)) return null;
    const opened = this.files.openHere(ino, granted.attr, flags);
    if (!opened) return null;
    const { fh } = opened;
    const directIo = this.files.bypassCache(fh, writeOnly(flags) || (flags & constants.O_APPEND) !== 0);
    const fresh = this.kernel.matches(granted.attr);
    if (!fresh || directIo) this.kernel.forget(ino);
    // not fresh: the kernel's pages are of an older content, and nothing here may wait on the kernel
    if (!fresh) setImmediate(() => void this.kernelCache?.invalidateInode(ino, false));
    return { fh, keepCache: fresh && !directIo, directIo };
  }

  /** A create under this node's delegation of the directory; null if it has none. */
  private createHere(parent: number, name: string, mode: number, caller: Caller): Entry | null {
    const time = now();
    const made = this.delegations.create(parent, name, mode, caller.uid, caller.gid, time, this.meta.leaseRemainingMs());
    if (!made) return null;
    // the directory's times, as the service sets them when it makes the file
    // (the kernel asks for them at the next lookup there)
    const dir = this.attrs.get(parent);
    if (dir) this.attrs.put({ ...dir.attr, mtime: time, ctime: time }, dir.remainingMs);
    const attr: Attr = { ino: made.ino, mode, uid: caller.uid, gid: made.gid, nlink: 1, size: 0, rdev: 0, atime: time, mtime: time, ctime: time, blocks: 0 };
    return { attr, layout: made.layout, inlined: true, inlineData: Buffer.alloc(0), created: true, cacheMs: made.cacheMs };
  }

  /** The service refused a create this node had made under a delegation: the
   *  file never existed. */
  private createRefused(create: DelegatedCreate, errno: number): void {
    const parent = create.entry.ino ?? 0;
    log.warn(`creating ${create.entry.name} (inode ${create.ino}) in directory ${parent}: ${errnoName(errno)}`);
    this.known.forget(parent);
    this.attrs.drop(create.ino);
    this.kernel.forget(create.ino);
    // not waited for: the request that learnt of it may be one the kernel holds the directory's lock for
    void this.kernelCache?.invalidateEntry(parent, create.entry.name ?? '');
    void this.kernelCache?.invalidateInode(create.ino, true);
  }

  async open(ino: number, flags: number, pid = 0): Promise<Opened> {
    this.reachedByPath(ino, pid);
    this.opened(ino, pid);
    this.files.checkLimit();
    const here = this.openHere(ino, flags);
    if (here) return here;
    const { entry, fh, file } = await this.askOpen(ino, flags);
    const current = this.files.withLocalWrites({ ...entry.attr, size: Math.max(entry.attr.size, file.size) });
    const fresh = this.kernel.matches(current);
    // O_APPEND writes land where the metadata service says, not where the kernel's page cache would put them
    const directIo = this.files.bypassCache(fh, writeOnly(flags) || (flags & constants.O_APPEND) !== 0);
    if (fresh && !directIo) return { fh, keepCache: true, directIo };
    this.kernel.forget(ino);
    // changed since the kernel last heard of it, maybe by another node: its size and pages may be stale
    if (!fresh) await this.kernelCache?.invalidateInode(ino, false);
    return { fh, keepCache: fresh, directIo };
  }

  /** An open asked of the metadata service, and its handle. */
  private async askOpen(ino: number, flags: number): Promise<{ entry: Entry; fh: number; file: OpenFile }> {
    this.files.beginOpen(ino);
    try {
      await this.files.closed(ino);
      const epoch = this.files.closesSoFar();
      const entry = await byInode(this.meta.open({ ino }, this.nodeId));
      if (!isReg(entry.attr.mode)) throw new FsError(E.EINVAL, 'not a regular file');
      return { entry, ...this.files.add(entry, flags, false, epoch) };
    } finally {
      this.files.endOpen(ino);
    }
  }

  read(fh: number, size: number, offset: number): Promise<Buffer[]> {
    return this.files.read(fh, size, offset);
  }

  /** killSetIdOf: a writer that may not keep set-ID bits (the kernel's
   *  FUSE_WRITE_KILL_SUIDGID): they are cleared, as ext4 does. */
  async write(fh: number, data: Buffer, offset: number, killSetIdOf: Writer | null = null): Promise<number> {
    const handle = this.files.handle(fh);
    if (killSetIdOf) await this.killSetId(handle.file.ino, killSetIdOf);
    const { file, end } = await this.files.write(fh, data, offset);
    if (handle.append) {
      this.kernel.forget(file.ino);
      // an append through the page cache (other handles use it) put the data where the kernel thought the end was
      if (!handle.direct) setImmediate(() => void this.kernelCache?.invalidateInode(file.ino, true));
    } else {
      this.kernel.wrote(file.ino, end, file.mtime!);
    }
    return data.length;
  }

  /** fallocate(2) with the flags Linux file systems share: KEEP_SIZE, and
   *  PUNCH_HOLE (with KEEP_SIZE) or ZERO_RANGE; the others (COLLAPSE_RANGE,
   *  INSERT_RANGE, UNSHARE_RANGE) are EOPNOTSUPP, as on most of them. */
  async fallocate(fh: number, flags: number, offset: number, length: number): Promise<void> {
    const keepSize = (flags & FALLOC_FL_KEEP_SIZE) !== 0;
    const punch = (flags & FALLOC_FL_PUNCH_HOLE) !== 0;
    const zero = (flags & FALLOC_FL_ZERO_RANGE) !== 0;
    if ((flags & ~(FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE)) !== 0 || (punch && (zero || !keepSize))) {
      throw new FsError(E.EOPNOTSUPP, `fallocate flags 0x${flags.toString(16)}`);
    }
    if (!(offset >= 0) || !(length > 0)) throw new FsError(E.EINVAL);
    if (offset + length > FILE_MAX_BYTES) throw new FsError(E.EFBIG);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length)) throw new FsError(E.EINVAL);
    const { file } = this.files.handle(fh);
    try {
      await this.files.fallocate(fh, punch ? FALLOCATE_PUNCH : zero ? FALLOCATE_ZERO : FALLOCATE_ALLOCATE, offset, length, keepSize);
    } catch (err) {
      // the kernel drops its pages of the range only on success; the copies
      // that did it are the file's now (the service calls back the other nodes)
      if (punch || zero) setImmediate(() => void this.kernelCache?.invalidateInode(file.ino, true));
      throw err;
    } finally {
      // the kernel set its own size and times: at the next open, what it caches is asked again
      this.kernel.forget(file.ino);
    }
  }

  private async killSetId(ino: number, writer: Writer): Promise<void> {
    const { attr } = this.cachedAttr(ino) ?? (await this.meta.getattr({ ino }));
    // as the kernel's setattr_should_drop_sgid: set-group-ID without group
    // execute goes only for a writer outside the file's group
    const dropGid = (attr.mode & S_ISGID) !== 0 && ((attr.mode & S_IXGRP) !== 0 || !inGroup(writer, attr.gid));
    const kill = (attr.mode & S_ISUID) | (dropGid ? S_ISGID : 0);
    if (kill === 0) return;
    await this.meta.setattr({ target: { ino }, valid: SETATTR_MODE, mode: attr.mode & ~kill & 0o7777 });
    // the kernel did not ask for this change: its copy of the mode is now wrong
    setImmediate(() => void this.kernelCache?.invalidateInode(ino, false));
  }

  /** copy_file_range(2): the bytes are read and written by this node (the kernel
   *  drops its cached pages of the range written). */
  async copyFileRange(fhIn: number, offsetIn: number, fhOut: number, offsetOut: number, length: number): Promise<number> {
    let copied = 0;
    while (copied < length) {
      const pieces = await this.files.read(fhIn, Math.min(COPY_CHUNK_BYTES, length - copied), offsetIn + copied);
      const data = pieces.length === 1 ? pieces[0] : Buffer.concat(pieces);
      if (data.length === 0) break;
      await this.write(fhOut, data, offsetOut + copied);
      copied += data.length;
    }
    return copied;
  }

  /** close(2) of a descriptor: what this node wrote becomes visible to every node. */
  async flush(fh: number): Promise<void> {
    const startedMs = Date.now();
    const { file } = this.files.handle(fh);
    await this.unlessRefused(file.ino, this.files.commit(file, false, startedMs));
  }

  async fsync(fh: number): Promise<void> {
    await this.unlessRefused(this.files.handle(fh).file.ino, this.files.fsync(fh));
  }

  /** A file whose delegated create the service refused (its name was taken
   *  while this node could not publish) never existed: what was written to it
   *  is lost, which close and fsync report as EIO, not as the ENOENT of
   *  committing an inode the service does not know (whichever comes first). */
  private async unlessRefused<T>(ino: number, work: Promise<T>): Promise<T> {
    try {
      return await work;
    } catch (err) {
      if (err instanceof FsError && (err.errno === E.ENOENT || err.errno === E.ESTALE) && this.delegations.wasRefused(ino)) {
        throw new FsError(E.EIO, `the create of inode ${ino} was refused: what was written to it is lost`);
      }
      throw err;
    }
  }

  release(fh: number): Promise<void> {
    return this.files.release(fh);
  }

  // ------------------------------------------------------------ directories

  /** An entry below a directory opened through its old name would be
   *  removed by `rm -rf` (unlinkat from the directory's descriptor). */
  async opendir(ino: number, pid = 0): Promise<number> {
    this.reachedByPath(ino, pid);
    return this.dirs.open(ino);
  }

  async readdir(fh: number, offset: number, max: number): Promise<DirEntry[]> {
    try {
      return await this.dirs.read(fh, offset, max);
    } catch (err) {
      // a directory removed elsewhere, held open here: empty (see HeldDirs)
      const gone = (errnoOf(err) === E.ENOENT || errnoOf(err) === E.ESTALE) && this.heldDirs.removed(this.dirs.inoOf(fh)) !== null;
      if (gone) return [];
      throw err;
    }
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
