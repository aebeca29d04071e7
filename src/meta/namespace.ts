// The namespace operations of the metadata service, each one transaction of the
// store. Permission checks are the kernel's (every node mounts with
// default_permissions); these check what only the namespace knows: existence,
// types, emptiness, loops, limits.
import { now } from '../common/clock.js';
import { E, FsError } from '../common/errno.js';
import {
  FILE_MAX_BYTES, INLINE_MAX_BYTES, LINK_MAX, NAME_MAX_BYTES, PATH_MAX_BYTES, READDIR_PLUS_INLINE_MAX_BYTES, STRIPE_COUNT_MAX, STRIPE_UNIT_DEFAULT_BYTES,
  STRIPE_UNIT_MAX_BYTES, STRIPE_UNIT_MIN_BYTES, SYMLINK_MAX_BYTES, XATTR_NAME_MAX_BYTES, XATTR_TOTAL_MAX_BYTES,
  XATTR_VALUE_MAX_BYTES,
} from '../common/limits.js';
import {
  PERMISSION_BITS, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, S_ISGID, isDir, isKnownType, isLink, isReg,
} from '../common/mode.js';
import {
  SETATTR_MTIME, SETATTR_MTIME_NOW, SETATTR_SIZE, RENAME_NOREPLACE, RENAME_EXCHANGE,
  type Attr, type CreateRequest, type DelegatedCreate, type DirEntry, type FailedCreate, type InlinePatch, type Inode, type Layout, type SetattrRequest, type StripePolicy,
  type Target,
} from '../rpc/messages.js';
import { applyPatches } from '../common/patch.js';
import { BUILTIN_PLACEMENTS, makeLayout, placementOf, type PlacementInput } from '../layout/placement.js';
import { REPLICAS_MAX, goodReplicas, layoutComplete, replicaCount, slotOf, withStale } from '../layout/replicas.js';
import { FIRST_INO, ROOT_INO, type Stray } from './records.js';
import type { Effects, MetaStore, Tx } from './store.js';
import { CHANGED_MTIME, CHANGED_SIZE } from './coherence.js';
import { applyAttrChanges, checkTime } from './attrChanges.js';
import { GracedFrees } from './gracedFrees.js';

const DIRECTORY_SIZE_BYTES = 4096;
const XATTR_CREATE = 1;
/** Inode ranges remembered per node (its delegated creates use the last ones). */
const RESERVED_RANGES_MAX = 4;
/** No node: what mayBeOpen leaves out to count every node. */
const NO_NODE = -1;
const XATTR_REPLACE = 2;
const XATTR_NAMESPACES = ['user.', 'trusted.', 'security.'];

export class Namespace {
  /** The nodes that hold each inode open: pins inodes whose last link is gone.
   *  A set, not a count, so that Open and Close may be repeated safely. */
  private readonly opens = new Map<number, Set<number>>();
  /** Until the nodes have re-announced their open files after a restart of the
   *  service, any unlinked inode may be open somewhere: none is freed. */
  private opensKnown = false;
  /** Whether a node other than `origin` may hold the inode open without having told (set by the service). */
  mayBeOpen: ((ino: number, origin: number) => boolean) | null = null;
  /** Inodes no node may open now (see fenced), until the promise resolves. */
  private readonly fences = new Map<number, Promise<void>>();
  /** Each node's ranges of inode numbers, and those of their creates made (and committed). */
  private readonly reserved = new Map<number, { first: number; end: number; made: Set<number> }[]>();

  constructor(private readonly store: MetaStore) {}

  /** A member's failure domain, for placing copies apart. */
  private readonly domainOf = (nodeId: number): string => this.store.nodes.get(nodeId)?.domain ?? '';
  /** The weights of a weighing placement policy (the scheduler's, on the root node). */
  weightsOf: (placement: string) => Map<number, number> | null = () => null;
  /** Whether a placement policy exists: a built-in one, or a module loaded in the scheduler. */
  placementKnown: (placement: string) => boolean = (placement) => BUILTIN_PLACEMENTS.includes(placement);

  private placement(nodeIds: number[], writerNodeId: number): PlacementInput {
    return { nodeIds, domainOf: this.domainOf, writerNodeId, weightsOf: this.weightsOf };
  }

  // ------------------------------------------------------------ lookups

  async getattr(target: Target, effects?: Effects): Promise<Attr> {
    return this.store.run((tx) => this.resolve(tx, target).attr, false, effects);
  }

  async readLink(target: Target, effects?: Effects): Promise<string> {
    return this.store.run((tx) => {
      const inode = this.resolve(tx, target);
      if (!isLink(inode.attr.mode)) throw new FsError(E.EINVAL);
      return inode.target;
    }, false, effects);
  }

  /** One page of a directory: entries after `after`, and whether more follow. */
  async readDir(target: Target, after: string, limit: number): Promise<{ ino: number; parent: number; entries: DirEntry[]; more: boolean }> {
    const dir = await this.store.run((tx) => this.resolve(tx, target));
    if (!isDir(dir.attr.mode)) throw new FsError(E.ENOTDIR);
    const page = await this.store.listDir(dir.attr.ino, after, limit + 1);
    const more = page.length > limit;
    const entries = page.slice(0, limit).map(({ name, dirent }) => ({ name, ino: dirent.ino, mode: dirent.mode }));
    return { ino: dir.attr.ino, parent: dir.parent || dir.attr.ino, entries, more };
  }

  /** A page of the directory with each entry's attributes (null: gone since
   *  listed), the names it has in all, and the store's sequence number before
   *  the listing was read: what changed after it may be missing. */
  async readDirPlus(target: Target, after: string, limit: number): Promise<{
    ino: number; parent: number; entries: DirEntry[]; more: boolean; names: number; seenSeq: number;
  }> {
    const seenSeq = this.store.lastSeq;
    const page = await this.readDir(target, after, limit);
    await this.store.preloadInodes(page.entries.map((entry) => entry.ino));
    const inodes = new Map<number, Inode | null>();
    // a miss loads the record and runs the function again: what was read stays read
    const names = await this.store.run((tx) => {
      for (const { ino } of page.entries) if (!inodes.has(ino)) inodes.set(ino, tx.inode(ino));
      return tx.inode(page.ino)?.entries ?? 0;
    });
    let inlineBytes = 0;
    const entries = page.entries.map((entry): DirEntry => {
      const inode = inodes.get(entry.ino);
      if (!inode) return { ...entry, attr: null };
      const noXattrs = Object.keys(inode.xattrs ?? {}).length === 0;
      const opens = isReg(inode.attr.mode) && inode.layout !== null && (!inode.inlined || inlineBytes + inode.inlineData.length <= READDIR_PLUS_INLINE_MAX_BYTES);
      if (!opens) return { ...entry, attr: inode.attr, noXattrs };
      if (inode.inlined) inlineBytes += inode.inlineData.length;
      return { ...entry, attr: inode.attr, noXattrs, layout: inode.layout, inlined: inode.inlined, inlineData: inode.inlined ? inode.inlineData : EMPTY };
    });
    return { ...page, entries, names, seenSeq };
  }

  // ------------------------------------------------------------ changes

  async create(request: CreateRequest, nodeIds: number[], defaultPolicy: StripePolicy | null, effects?: Effects): Promise<{ inode: Inode; existed: boolean }> {
    const type = request.mode & S_IFMT;
    if (!isKnownType(request.mode)) throw new FsError(E.EINVAL, 'unknown file type');
    const target = request.target ?? '';
    if (type === S_IFLNK) {
      if (target.length === 0) throw new FsError(E.ENOENT);
      if (Buffer.byteLength(target) > SYMLINK_MAX_BYTES) throw new FsError(E.ENAMETOOLONG);
    }
    return this.unfenced(() => this.store.run((tx) => {
      const { parent, name } = this.resolveEntry(tx, request.entry);
      const existing = tx.dirent(parent.attr.ino, name);
      if (existing) {
        // O_CREAT without O_EXCL of an existing regular file opens it
        if (request.exclusive || type !== S_IFREG || !request.openNode) throw new FsError(E.EEXIST);
        this.checkFence(existing.ino);
        const inode = tx.mustInode(existing.ino);
        if (isDir(inode.attr.mode)) throw new FsError(E.EISDIR);
        this.addOpen(inode.attr.ino, request.openNode);
        return { inode, existed: true };
      }
      if (type === S_IFDIR && parent.attr.nlink >= LINK_MAX) throw new FsError(E.EMLINK);
      const time = now();
      const ino = tx.allocIno();
      let mode = request.mode;
      let gid = request.gid;
      if (parent.attr.mode & S_ISGID) {
        // BSD group semantics in set-group-ID directories
        gid = parent.attr.gid;
        if (type === S_IFDIR) mode |= S_ISGID;
      }
      const size = type === S_IFDIR ? DIRECTORY_SIZE_BYTES : type === S_IFLNK ? Buffer.byteLength(target) : 0;
      const inode: Inode = {
        attr: {
          ino, mode, uid: request.uid, gid, nlink: type === S_IFDIR ? 2 : 1, size, rdev: request.rdev ?? 0,
          atime: time, mtime: time, ctime: time, blocks: type === S_IFDIR ? blocksOf(DIRECTORY_SIZE_BYTES) : 0,
        },
        layout: type === S_IFREG ? makeLayout(ino, parent.policy, defaultPolicy, this.placement(nodeIds, request.openNode ?? 0)) : null,
        target: type === S_IFLNK ? target : '',
        parent: type === S_IFDIR ? parent.attr.ino : 0,
        entries: 0,
        policy: type === S_IFDIR && parent.policy ? { ...parent.policy } : null,
        xattrs: {},
        inlined: type === S_IFREG,
        inlineData: EMPTY,
      };
      tx.putInode(inode);
      if (type === S_IFDIR) tx.newDirectory(ino);
      tx.putDirent(parent.attr.ino, name, { ino, mode: type });
      const p = tx.editInode(parent.attr.ino);
      p.entries++;
      if (type === S_IFDIR) p.attr.nlink++;
      p.attr.mtime = p.attr.ctime = time;
      if (request.openNode && type === S_IFREG) this.addOpen(ino, request.openNode);
      return { inode, existed: false };
    }, false, effects));
  }

  async remove(entry: Target, directory: boolean, effects?: Effects): Promise<void> {
    await this.store.run((tx) => {
      const { parent, name } = this.resolveEntry(tx, entry);
      const dirent = tx.dirent(parent.attr.ino, name);
      if (!dirent) throw new FsError(E.ENOENT);
      const inode = tx.mustInode(dirent.ino);
      if (directory) {
        if (!isDir(inode.attr.mode)) throw new FsError(E.ENOTDIR);
        if (inode.entries > 0) throw new FsError(E.ENOTEMPTY);
      } else if (isDir(inode.attr.mode)) {
        throw new FsError(E.EISDIR);
      }
      const time = now();
      tx.deleteDirent(parent.attr.ino, name);
      const p = tx.editInode(parent.attr.ino);
      p.entries--;
      p.attr.mtime = p.attr.ctime = time;
      if (directory) {
        p.attr.nlink--;
        tx.deleteInode(inode.attr.ino);
      } else {
        this.dropLink(tx, inode.attr.ino, time, effects);
      }
    }, false, effects);
  }

  async rename(from: Target, to: Target, flags = 0, effects?: Effects): Promise<void> {
    if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE) || flags === (RENAME_NOREPLACE | RENAME_EXCHANGE)) throw new FsError(E.EINVAL, 'unsupported rename flags');
    if (flags & RENAME_EXCHANGE) return this.exchange(from, to, effects);
    const dirsMoved: [number, string, number, string][] = [];
    await this.store.run((tx) => {
      dirsMoved.length = 0;
      const src = this.resolveEntry(tx, from);
      const dst = this.resolveEntry(tx, to);
      if (src.parent.attr.ino === dst.parent.attr.ino && src.name === dst.name) {
        if (!tx.dirent(src.parent.attr.ino, src.name)) throw new FsError(E.ENOENT);
        return;
      }
      const moving = tx.dirent(src.parent.attr.ino, src.name);
      if (!moving) throw new FsError(E.ENOENT);
      const inode = tx.mustInode(moving.ino);
      const movingDir = isDir(inode.attr.mode);
      if (movingDir) this.assertNotAncestor(tx, inode.attr.ino, dst.parent.attr.ino);
      const replaced = tx.dirent(dst.parent.attr.ino, dst.name);
      if (replaced && flags & RENAME_NOREPLACE) throw new FsError(E.EEXIST);
      if (replaced?.ino === moving.ino) return; // two links to one inode: nothing to do
      const time = now();
      const dstParent = tx.editInode(dst.parent.attr.ino);
      const srcParent = tx.editInode(src.parent.attr.ino);
      if (replaced) {
        const victim = tx.mustInode(replaced.ino);
        if (movingDir && !isDir(victim.attr.mode)) throw new FsError(E.ENOTDIR);
        if (!movingDir && isDir(victim.attr.mode)) throw new FsError(E.EISDIR);
        if (isDir(victim.attr.mode)) {
          if (victim.entries > 0) throw new FsError(E.ENOTEMPTY);
          dstParent.attr.nlink--;
          tx.deleteInode(victim.attr.ino);
        } else {
          this.dropLink(tx, victim.attr.ino, time, effects);
        }
        dstParent.entries--;
      } else if (movingDir && dst.parent.attr.ino !== src.parent.attr.ino && dstParent.attr.nlink >= LINK_MAX) {
        throw new FsError(E.EMLINK);
      }
      tx.deleteDirent(src.parent.attr.ino, src.name);
      tx.putDirent(dst.parent.attr.ino, dst.name, moving);
      srcParent.entries--;
      dstParent.entries++;
      if (movingDir && src.parent.attr.ino !== dst.parent.attr.ino) {
        srcParent.attr.nlink--;
        dstParent.attr.nlink++;
      }
      const moved = tx.editInode(inode.attr.ino);
      if (movingDir) moved.parent = dst.parent.attr.ino;
      moved.attr.ctime = time;
      srcParent.attr.mtime = srcParent.attr.ctime = time;
      dstParent.attr.mtime = dstParent.attr.ctime = time;
      if (movingDir) dirsMoved.push([src.parent.attr.ino, src.name, dst.parent.attr.ino, dst.name]);
    }, false, effects);
    for (const moved of dirsMoved) effects?.changes.dirMoved(...moved);
  }

  /** renameat2's RENAME_EXCHANGE: the two entries, which both exist, swap
   *  their inodes at once. */
  private async exchange(from: Target, to: Target, effects?: Effects): Promise<void> {
    const dirsMoved: [number, string, number, string][] = [];
    await this.store.run((tx) => {
      dirsMoved.length = 0;
      const a = this.resolveEntry(tx, from);
      const b = this.resolveEntry(tx, to);
      const aDir = a.parent.attr.ino;
      const bDir = b.parent.attr.ino;
      const atA = tx.dirent(aDir, a.name);
      const atB = tx.dirent(bDir, b.name);
      if (!atA || !atB) throw new FsError(E.ENOENT);
      // one entry, or two links of one inode: nothing changes
      if (atA.ino === atB.ino) return;
      const inodeA = tx.mustInode(atA.ino);
      const inodeB = tx.mustInode(atB.ino);
      // neither directory may go below itself
      if (isDir(inodeA.attr.mode)) this.assertNotAncestor(tx, inodeA.attr.ino, bDir);
      if (isDir(inodeB.attr.mode)) this.assertNotAncestor(tx, inodeB.attr.ino, aDir);
      tx.putDirent(aDir, a.name, atB);
      tx.putDirent(bDir, b.name, atA);
      const time = now();
      const parentA = tx.editInode(aDir);
      const parentB = tx.editInode(bDir);
      for (const [inode, fromDir, toDir, toParent, fromParent, oldName, newName] of [
        [inodeA, aDir, bDir, parentB, parentA, a.name, b.name],
        [inodeB, bDir, aDir, parentA, parentB, b.name, a.name],
      ] as const) {
        const moved = tx.editInode(inode.attr.ino);
        moved.attr.ctime = time;
        if (!isDir(inode.attr.mode)) continue;
        moved.parent = toDir;
        dirsMoved.push([fromDir, oldName, toDir, newName]);
        // a subdirectory's ".." links its parent
        if (fromDir !== toDir) {
          fromParent.attr.nlink--;
          toParent.attr.nlink++;
        }
      }
      parentA.attr.mtime = parentA.attr.ctime = time;
      parentB.attr.mtime = parentB.attr.ctime = time;
    }, false, effects);
    for (const moved of dirsMoved) effects?.changes.dirMoved(...moved);
  }

  async link(inode: Target, entry: Target, effects?: Effects): Promise<Attr> {
    return this.store.run((tx) => {
      const source = this.resolve(tx, inode);
      if (isDir(source.attr.mode)) throw new FsError(E.EPERM);
      if (source.attr.nlink === 0) throw new FsError(E.ENOENT);
      if (source.attr.nlink >= LINK_MAX) throw new FsError(E.EMLINK);
      const { parent, name } = this.resolveEntry(tx, entry);
      if (tx.dirent(parent.attr.ino, name)) throw new FsError(E.EEXIST);
      const time = now();
      tx.putDirent(parent.attr.ino, name, { ino: source.attr.ino, mode: source.attr.mode & S_IFMT });
      const p = tx.editInode(parent.attr.ino);
      p.entries++;
      p.attr.mtime = p.attr.ctime = time;
      const linked = tx.editInode(source.attr.ino);
      linked.attr.nlink++;
      linked.attr.ctime = time;
      return linked.attr;
    }, false, effects);
  }

  async setattr(request: SetattrRequest, effects?: Effects): Promise<Attr> {
    const valid = request.valid;
    if (valid & SETATTR_SIZE) {
      const size = request.size ?? 0;
      if (!Number.isSafeInteger(size) || size < 0) throw new FsError(E.EINVAL);
      if (size > FILE_MAX_BYTES) throw new FsError(E.EFBIG);
    }
    return this.store.run((tx) => {
      const found = this.resolve(tx, request.target);
      const inode = tx.editInode(found.attr.ino);
      const attr = inode.attr;
      const time = now();
      if (valid & SETATTR_SIZE) {
        if (isDir(attr.mode)) throw new FsError(E.EISDIR);
        if (!isReg(attr.mode)) throw new FsError(E.EINVAL);
        attr.size = request.size ?? 0;
        attr.mtime = time;
        if (inode.inlined && inode.inlineData.length > attr.size) inode.inlineData = Buffer.from(inode.inlineData.subarray(0, attr.size));
        // cut blocks go; a longer file gains a hole, which takes none
        attr.blocks = inode.inlined ? blocksOf(inode.inlineData.length) : Math.min(attr.blocks ?? 0, blocksOf(attr.size));
      }
      applyAttrChanges(attr, request, time);
      tx.changed(attr.ino, (valid & SETATTR_SIZE) !== 0,
        ((valid & SETATTR_SIZE) ? CHANGED_SIZE : 0) | ((valid & (SETATTR_MTIME | SETATTR_MTIME_NOW | SETATTR_SIZE)) ? CHANGED_MTIME : 0));
      return attr;
    }, false, effects);
  }

  /** Makes the creates a node answered under its delegations (see Delegation
   *  in proto/kdfs.proto); returns those that could not be made. */
  async publish(creates: DelegatedCreate[], nodeId: number, memberIds: number[], effects?: Effects): Promise<FailedCreate[]> {
    const failed = await this.store.run((tx) => this.applyCreates(tx, creates, nodeId, memberIds), false, effects);
    this.committedCreates(creates, failed, nodeId);
    return failed;
  }

  /** Creates of a node's ranges made and committed: a copy of one that comes later is made already. */
  private committedCreates(creates: DelegatedCreate[], failed: FailedCreate[], nodeId: number): void {
    const refused = new Set(failed.map((f) => f.ino));
    for (const { ino } of creates) if (!refused.has(ino)) this.rangeOf(nodeId, ino)?.made.add(ino);
  }

  /** The inode numbers of a node's delegated creates: a range of its own. */
  async reserveInos(nodeId: number, count: number): Promise<number> {
    const first = await this.store.run((tx) => tx.allocInos(count));
    let ranges = this.reserved.get(nodeId);
    if (!ranges) this.reserved.set(nodeId, (ranges = []));
    ranges.push({ first, end: first + count, made: new Set() });
    if (ranges.length > RESERVED_RANGES_MAX) ranges.shift();
    return first;
  }

  private rangeOf(nodeId: number, ino: number): { first: number; end: number; made: Set<number> } | undefined {
    return this.reserved.get(nodeId)?.find((range) => ino >= range.first && ino < range.end);
  }

  private applyCreates(tx: Tx, creates: DelegatedCreate[], nodeId: number, memberIds: number[]): FailedCreate[] {
    const failed: FailedCreate[] = [];
    for (const create of creates) {
      try {
        this.applyCreate(tx, create, nodeId, memberIds);
      } catch (err) {
        if (!(err instanceof FsError)) throw err;
        failed.push({ ino: create.ino, errno: err.errno });
      }
    }
    return failed;
  }

  private applyCreate(tx: Tx, create: DelegatedCreate, nodeId: number, memberIds: number[]): void {
    const { ino, layout } = create;
    // A number of the node's ranges made already (sent again after a lost
    // reply, or carried by two calls), and maybe renamed or unlinked since:
    // never made twice, nor its inode written over. Known without a read (with
    // etcd, a round trip): made and committed, or made by a transaction not
    // written yet, which the cache holds until it is.
    const range = this.rangeOf(nodeId, ino);
    if (range && (range.made.has(ino) || this.store.cachedInode(ino) !== null)) return;
    const { parent, name } = this.resolveEntry(tx, create.entry);
    const existing = tx.dirent(parent.attr.ino, name);
    // outside the node's ranges (the service restarted since), sent again after a lost reply
    if (existing?.ino === ino) return;
    if (existing) throw new FsError(E.EEXIST);
    if ((create.mode & S_IFMT) !== S_IFREG) throw new FsError(E.EINVAL, 'only regular files are created under a delegation');
    if (!layout || !validNewLayout(layout, memberIds)) {
      throw new FsError(E.EINVAL, 'bad layout in a delegated create');
    }
    // a number outside the node's ranges (the service restarted since): only if unused
    if (!range && (ino < FIRST_INO || ino >= this.store.nextFreeIno || tx.inode(ino))) throw new FsError(E.EINVAL, `inode ${ino} is not the node's`);
    const time = checkTime(create.time);
    const gid = parent.attr.mode & S_ISGID ? parent.attr.gid : create.gid;
    const attr: Attr = { ino, mode: create.mode, uid: create.uid, gid, nlink: 1, size: 0, rdev: 0, atime: time, mtime: time, ctime: time, blocks: 0 };
    // setattrs the node made before it sent the create (it checked them, as its kernel did)
    if (create.changed) {
      attr.mode = S_IFREG | (create.changed.mode & PERMISSION_BITS);
      attr.uid = create.changed.uid;
      attr.gid = create.changed.gid;
      attr.atime = checkTime(create.changed.atime);
      attr.mtime = checkTime(create.changed.mtime);
      attr.ctime = checkTime(create.changed.ctime);
    }
    tx.putInode({
      attr,
      layout: { unitBytes: layout.unitBytes, nodes: [...layout.nodes], replicas: replicaCount(layout), mirrors: [...(layout.mirrors ?? [])], stale: [] },
      target: '', parent: 0, entries: 0, policy: null, xattrs: {}, inlined: !create.spilled, inlineData: EMPTY,
    });
    tx.putDirent(parent.attr.ino, name, { ino, mode: S_IFREG });
    const p = tx.editInode(parent.attr.ino);
    p.entries++;
    // creates sent in separate calls may arrive out of order: times never go back
    const last = p.attr.mtime;
    if (!last || time.sec > last.sec || (time.sec === last.sec && time.nsec > last.nsec)) p.attr.mtime = p.attr.ctime = time;
    this.addOpen(ino, nodeId);
  }

  /** Writes reached the agents (the file is at least `size` long), or come inline
   *  (the whole content of an inlined file, `size` long); modified at mtime. */
  /** merge: with inline, the ranges the node wrote (the file's content as it is
   *  now, patched; the size only grows), and whether the result is other than
   *  inline (set here). Without merge, inline replaces the content and the size.
   *  spilledContent: without inline, what the node wrote to the objects of a
   *  file still inlined (EAGAIN if the content is other now, or the file was spilled). */
  async commitWrite(ino: number, size: number, mtime: Attr['mtime'], sync: boolean, inline: Buffer | null, effects?: Effects, allocatedBytes: number | null = null,
    delegated?: { creates: DelegatedCreate[]; nodeId: number; memberIds: number[]; failed: FailedCreate[] }, staleSlots: number[] = [],
    merge: { patches: InlinePatch[]; merged: boolean } | null = null, spilledContent: Buffer | null = null): Promise<Attr | null> {
    if (!Number.isSafeInteger(size) || size < 0 || size > FILE_MAX_BYTES) throw new FsError(E.EFBIG);
    if (inline && inline.length > INLINE_MAX_BYTES) throw new FsError(E.EINVAL, 'inline data too large');
    const attr = await this.store.run((tx) => {
      if (delegated) {
        delegated.failed = this.applyCreates(tx, delegated.creates, delegated.nodeId, delegated.memberIds);
        // the file itself was never made: the other creates still are
        if (delegated.failed.some((f) => f.ino === ino)) return null;
      }
      const current = tx.mustInode(ino);
      if (!isReg(current.attr.mode)) throw new FsError(E.EINVAL);
      // another node spilled the file to its objects meanwhile: the writer must too
      if (inline && !current.inlined) throw new FsError(E.EAGAIN);
      // a spill of a content other nodes' commits have changed since, or another
      // node's spill, which may have written over this node's bytes: done again
      if (spilledContent && (!current.inlined || !current.inlineData.equals(spilledContent))) throw new FsError(E.EAGAIN);
      const inode = tx.editInode(ino);
      if (inline && merge) {
        // checked before anything is allocated: a patch's offset comes from the node
        if (merge.patches.some((patch) => !Number.isSafeInteger(patch.offset) || patch.offset + patch.data.length > INLINE_MAX_BYTES)) {
          throw new FsError(E.EINVAL, 'inline data too large');
        }
        if (size > inode.attr.size) inode.attr.size = size;
        // never past the size (a truncation elsewhere cut what the node wrote)
        const patched = Buffer.from(applyPatches(inode.inlineData, merge.patches).subarray(0, inode.attr.size));
        inode.inlineData = patched;
        inode.attr.blocks = blocksOf(patched.length);
        merge.merged = inode.attr.size !== size || !patched.equals(inline);
      } else if (inline) {
        inode.inlineData = Buffer.from(inline);
        inode.attr.size = size;
        inode.attr.blocks = blocksOf(inline.length);
      } else {
        if (inode.inlined) {
          inode.inlined = false;
          inode.inlineData = EMPTY;
        }
        if (size > inode.attr.size) inode.attr.size = size;
        inode.attr.blocks = allocatedBytes !== null ? Math.ceil(allocatedBytes / 512) : Math.max(inode.attr.blocks ?? 0, blocksOf(inode.attr.size));
      }
      if (mtime) inode.attr.mtime = checkTime(mtime);
      inode.attr.ctime = now();
      // the writer's data is on the copies it did not report: one must be left
      if (staleSlots.length > 0 && !this.markStaleIn(tx, inode, staleSlots, false)) {
        throw new FsError(E.EIO, 'the copies that took the writes are stale: the data is on no good copy');
      }
      tx.changed(ino, true, 0);
      return inode.attr;
    }, sync, effects);
    if (delegated) this.committedCreates(delegated.creates, delegated.failed, delegated.nodeId);
    return attr;
  }

  // ------------------------------------------------------------ replicas

  /** Copies found bad (by a reader, a scrub) or that missed a truncation: never
   *  read again until repaired. The last good copy of an object is never marked:
   *  its bad blocks fail their checksums anyway, and it is the only source left. */
  async markStale(ino: number, slots: number[], effects?: Effects): Promise<void> {
    await this.store.run((tx) => {
      const inode = tx.mustInode(ino);
      if (!inode.layout) return;
      this.markStaleIn(tx, tx.editInode(ino), slots, true);
      tx.changed(ino, true, 0);
    }, true, effects);
  }

  /** Copies known to be gone (their node's directory was replaced): stale, even
   *  an object's last good one, so that no read takes its absence for holes. */
  async markLost(ino: number, slots: number[]): Promise<void> {
    await this.store.run((tx) => {
      const inode = tx.mustInode(ino);
      if (!inode.layout) return;
      const edited = tx.editInode(ino);
      edited.layout = withStale(edited.layout!, slots);
      tx.setNeedsRepair(ino, true);
      tx.changed(ino, true, 0);
    }, true);
  }

  /** Marks the slots stale. An object would be left without a good copy: with
   *  keepLast, its last good copy stays good; else nothing is marked, and false. */
  private markStaleIn(tx: Tx, inode: Inode, slots: number[], keepLast: boolean): boolean {
    const layout = inode.layout;
    if (!layout) return true;
    const slotCount = layout.nodes.length * replicaCount(layout);
    const valid = new Set(slots.filter((slot) => Number.isInteger(slot) && slot >= 0 && slot < slotCount));
    for (let object = 0; object < layout.nodes.length; object++) {
      const good = goodReplicas(layout, object).map((r) => slotOf(layout, object, r.replica));
      if (good.length === 0 || !good.every((slot) => valid.has(slot))) continue;
      if (!keepLast) return false;
      valid.delete(good[0]);
    }
    if (valid.size === 0) return true;
    inode.layout = withStale(layout, valid);
    tx.setNeedsRepair(inode.attr.ino, true);
    return true;
  }

  /** The inode's layout becomes `layout` (copies repaired, or moved to other
   *  nodes), unless it is no longer `expected`, or (with `data`) the file's size
   *  or ctime changed since the copies were made: false then, and nothing changes. */
  async replaceLayout(ino: number, expected: Layout, layout: Layout, data: { size: number; ctime: Attr['ctime'] } | null,
    strays: { add?: Stray[]; drop?: Stray[] } | Stray[] = []): Promise<boolean> {
    const { add = [], drop = [] } = Array.isArray(strays) ? { add: strays } : strays;
    return this.store.run((tx) => {
      const current = tx.inode(ino);
      if (!current?.layout || !sameLayout(current.layout, expected)) return false;
      // ctime: every change of the data or the times sets it (an mtime may be set back)
      if (data && (current.attr.size !== data.size || !sameTime(current.attr.ctime, data.ctime))) return false;
      // opened meanwhile: its writer would not write to the copies made
      if (data && (this.opens.has(ino) || !this.opensKnown)) return false;
      const inode = tx.editInode(ino);
      inode.layout = layout;
      tx.setNeedsRepair(ino, !layoutComplete(layout));
      // the copies left behind are removed from their nodes after this commit (see src/rebalance/strays.ts)
      for (const stray of drop) tx.setStray(stray, false);
      for (const stray of add) tx.setStray(stray, true);
      return true;
    }, true);
  }

  /** Takes the moves out of the inode's layout (see Layout.moves); whether it had any. */
  async clearMoves(ino: number): Promise<boolean> {
    return this.store.run((tx) => {
      if (!tx.inode(ino)?.layout?.moves?.length) return false;
      const inode = tx.editInode(ino);
      inode.layout = { ...inode.layout!, moves: [] };
      return true;
    }, true);
  }

  /** A writer may have died in the middle of writing the file: its copies may
   *  differ where it wrote last. One good copy of each object is kept (the first
   *  whose node `live` says answers), the others are marked stale, so that every
   *  reader reads the kept one until repair has copied it over the others. */
  async reconcile(ino: number, live: (nodeId: number) => boolean): Promise<number[]> {
    return this.store.run((tx) => {
      const current = tx.inode(ino);
      if (!current?.layout || current.inlined || !isReg(current.attr.mode)) return [];
      const layout = current.layout;
      const slots: number[] = [];
      for (let object = 0; object < layout.nodes.length; object++) {
        const good = goodReplicas(layout, object);
        const keeper = good.find((r) => live(r.node)) ?? good[0];
        for (const r of good) if (r !== keeper) slots.push(slotOf(layout, object, r.replica));
      }
      if (slots.length > 0) {
        this.markStaleIn(tx, tx.editInode(ino), slots, true);
        tx.changed(ino, true, 0);
      }
      return slots;
    }, true);
  }

  /** The inode needs no repair (it is gone, or whole again). */
  async repairDone(ino: number): Promise<void> {
    await this.store.run((tx) => tx.setNeedsRepair(ino, false), false);
  }

  // ------------------------------------------------------------ open files

  async open(target: Target, nodeId: number, effects?: Effects): Promise<Inode> {
    return this.unfenced(() => this.store.run((tx) => {
      const inode = this.resolve(tx, target);
      this.checkFence(inode.attr.ino);
      this.addOpen(inode.attr.ino, nodeId);
      return inode;
    }, false, effects));
  }

  /** Runs `work` while no node may open the inode (it waits), if no node holds
   *  it open now: false, and nothing done, if one does. */
  async fenced(ino: number, work: () => Promise<void>): Promise<boolean> {
    while (this.fences.has(ino)) await this.fences.get(ino);
    if (this.isOpen(ino)) return false;
    const done = work();
    const fence = done.then(() => {}, () => {});
    this.fences.set(ino, fence);
    try {
      await done;
    } finally {
      this.fences.delete(ino);
    }
    return true;
  }

  /** Whether opens of the inode wait for a fence now. */
  isFenced(ino: number): boolean {
    return this.fences.has(ino);
  }

  private checkFence(ino: number): void {
    const fence = this.fences.get(ino);
    if (fence) throw new Fenced(fence);
  }

  /** Runs an open, again once the fence it met is lifted. */
  private async unfenced<T>(open: () => Promise<T>): Promise<T> {
    for (;;) {
      try {
        return await open();
      } catch (err) {
        if (!(err instanceof Fenced)) throw err;
        await err.lifted;
      }
    }
  }

  /** The node closed its last handle of the inode. */
  async close(ino: number, nodeId: number): Promise<void> {
    const nodes = this.opens.get(ino);
    if (!nodes?.delete(nodeId) || nodes.size > 0) return;
    this.opens.delete(ino);
    // a node whose kernel found its name before it went may be opening it: see
    // releaseUnopened (its grants were forgotten at the unlink's callbacks)
    if (this.store.zeroLinks.has(ino)) await this.releaseUnopened(ino);
  }

  /** Whether a close by nodeId would free an unlinked inode that another node,
   *  holding its attributes granted, may have opened without telling yet: that
   *  node must be called back first (it tells its opens), as at the unlink. */
  closeMayFreeUnopened(ino: number, nodeId: number): boolean {
    const nodes = this.opens.get(ino);
    return nodes !== undefined && nodes.size === 1 && nodes.has(nodeId) && this.store.zeroLinks.has(ino) && (this.mayBeOpen?.(ino, nodeId) ?? false);
  }

  /** A node (re)started: what it holds open replaces what the service knew of it.
   *  Returns the inodes it held open and holds no more: its process may have
   *  died in the middle of writing them. */
  async replaceOpens(nodeId: number, inos: number[]): Promise<number[]> {
    const released: number[] = [];
    const dropped: number[] = [];
    const kept = new Set(inos);
    for (const [ino, nodes] of this.opens) {
      if (!nodes.delete(nodeId)) continue;
      if (!kept.has(ino)) dropped.push(ino);
      if (nodes.size === 0) {
        this.opens.delete(ino);
        released.push(ino);
      }
    }
    for (const ino of inos) this.addOpen(ino, nodeId);
    for (const ino of released) if (!this.opens.has(ino)) await this.freeIfUnlinked(ino);
    return dropped;
  }

  /** The nodes have re-announced their open files: free the unlinked inodes none claimed. */
  async opensAnnounced(): Promise<void> {
    if (this.opensKnown) return;
    this.opensKnown = true;
    for (const ino of [...this.store.zeroLinks]) if (!this.opens.has(ino)) await this.freeIfUnlinked(ino);
  }

  /** Whether a node told it holds the inode open (or may have, before the nodes re-announced their opens). */
  isOpen(ino: number): boolean {
    return this.opens.has(ino) || !this.opensKnown;
  }

  /** The nodes that hold the inode open. */
  openOn(ino: number): Iterable<number> {
    return this.opens.get(ino) ?? [];
  }

  private addOpen(ino: number, nodeId: number): void {
    let nodes = this.opens.get(ino);
    if (!nodes) this.opens.set(ino, (nodes = new Set()));
    nodes.add(nodeId);
  }

  private async freeIfUnlinked(ino: number): Promise<void> {
    if (!this.opensKnown) return;
    await this.store.run((tx) => {
      const inode = tx.inode(ino);
      if (!inode || inode.attr.nlink > 0 || this.opens.has(ino)) return;
      this.free(tx, inode);
    });
  }

  // ------------------------------------------------------------ extended attributes

  async getXattr(target: Target, name: string): Promise<Buffer> {
    checkXattrName(name);
    return this.store.run((tx) => {
      const value = this.resolve(tx, target).xattrs[name];
      if (!value) throw new FsError(E.ENODATA);
      return value;
    });
  }

  async listXattr(target: Target): Promise<string[]> {
    return this.store.run((tx) => Object.keys(this.resolve(tx, target).xattrs));
  }

  async setXattr(target: Target, name: string, value: Buffer, flags: number, effects?: Effects): Promise<void> {
    checkXattrName(name);
    if (value.length > XATTR_VALUE_MAX_BYTES) throw new FsError(E.E2BIG);
    await this.store.run((tx) => {
      const found = this.resolve(tx, target);
      const exists = name in found.xattrs;
      if (flags & XATTR_CREATE && exists) throw new FsError(E.EEXIST);
      if (flags & XATTR_REPLACE && !exists) throw new FsError(E.ENODATA);
      let total = Buffer.byteLength(name) + value.length;
      for (const [other, v] of Object.entries(found.xattrs)) if (other !== name) total += Buffer.byteLength(other) + v.length;
      if (total > XATTR_TOTAL_MAX_BYTES) throw new FsError(E.ENOSPC);
      const inode = tx.editInode(found.attr.ino);
      inode.xattrs[name] = Buffer.from(value);
      inode.attr.ctime = now();
    }, false, effects);
  }

  async removeXattr(target: Target, name: string, effects?: Effects): Promise<void> {
    checkXattrName(name);
    await this.store.run((tx) => {
      const found = this.resolve(tx, target);
      if (!(name in found.xattrs)) throw new FsError(E.ENODATA);
      const inode = tx.editInode(found.attr.ino);
      delete inode.xattrs[name];
      inode.attr.ctime = now();
    }, false, effects);
  }

  // ------------------------------------------------------------ striping

  async setStripe(target: Target, policy: StripePolicy, nodeIds: number[], defaultPolicy: StripePolicy | null, effects?: Effects): Promise<void> {
    checkPolicy(policy);
    const placement = policy.placement ?? '';
    if (placement !== '' && !this.placementKnown(placement)) throw new FsError(E.ENOENT, `no placement policy ${JSON.stringify(placement)}: the built-in ones are ${BUILTIN_PLACEMENTS.join(', ')}; others must be loaded in .kdfs/scheduler`);
    await this.store.run((tx) => {
      const found = this.resolve(tx, target);
      const inode = tx.editInode(found.attr.ino);
      if (isDir(inode.attr.mode)) {
        inode.policy = { unitBytes: policy.unitBytes, count: policy.count, replicas: policy.replicas ?? 0, placement: policy.placement ?? '' };
      } else if (isReg(inode.attr.mode)) {
        if (inode.attr.size !== 0) throw new FsError(E.EBUSY, 'the layout of a file with data cannot change');
        // a layout's generation never goes down: copies of the old one may be fenced (see Layout.gen)
        inode.layout = { ...makeLayout(inode.attr.ino, policy, defaultPolicy, this.placement(nodeIds, 0)), gen: (inode.layout?.gen ?? 0) + 1 };
      } else {
        throw new FsError(E.EINVAL);
      }
      inode.attr.ctime = now();
    }, false, effects);
  }

  async getStripe(target: Target, nodeIds: number[], defaultPolicy: StripePolicy | null): Promise<{ directory: boolean; policy: StripePolicy | null; layout: Layout | null }> {
    const inode = await this.store.run((tx) => this.resolve(tx, target));
    if (isDir(inode.attr.mode)) {
      const unitBytes = inode.policy?.unitBytes || defaultPolicy?.unitBytes || STRIPE_UNIT_DEFAULT_BYTES;
      const wanted = inode.policy?.count || defaultPolicy?.count || nodeIds.length;
      const replicas = inode.policy?.replicas || defaultPolicy?.replicas || 1;
      return { directory: true, policy: { unitBytes, count: Math.min(wanted, nodeIds.length), replicas, placement: placementOf(inode.policy, defaultPolicy) }, layout: null };
    }
    if (!isReg(inode.attr.mode)) throw new FsError(E.EINVAL);
    return { directory: false, policy: null, layout: inode.layout };
  }

  // ------------------------------------------------------------ helpers

  /** The inode a target designates: an inode, or the entry `name` of a directory. */
  private resolve(tx: Tx, target: Target): Inode {
    if (!target.name) return this.resolveInode(tx, target);
    const { parent, name } = this.resolveEntry(tx, target);
    const dirent = tx.dirent(parent.attr.ino, name);
    if (!dirent) throw new FsError(E.ENOENT);
    return tx.mustInode(dirent.ino);
  }

  /** An inode by number, or by path from the root (every component a directory). */
  private resolveInode(tx: Tx, target: Target): Inode {
    if (target.ino) return tx.mustInode(target.ino);
    let inode = tx.mustInode(ROOT_INO);
    for (const name of components(target.path ?? '')) {
      if (!isDir(inode.attr.mode)) throw new FsError(E.ENOTDIR);
      const dirent = tx.dirent(inode.attr.ino, name);
      if (!dirent) throw new FsError(E.ENOENT);
      inode = tx.mustInode(dirent.ino);
    }
    return inode;
  }

  /** The directory and name of an entry: `name` in the directory designated, or
   *  (without a name) the last component of the path. */
  private resolveEntry(tx: Tx, target: Target): { parent: Inode; name: string } {
    let name = target.name ?? '';
    let dir: Target = target;
    if (!name) {
      const names = components(target.path ?? '');
      if (target.ino || names.length === 0) throw new FsError(E.EINVAL, 'not an entry');
      name = names.pop()!;
      dir = { path: names.join('/') };
    } else {
      checkName(name);
    }
    const parent = this.resolveInode(tx, dir);
    if (!isDir(parent.attr.mode)) throw new FsError(E.ENOTDIR);
    return { parent, name };
  }

  /** EINVAL if directory `ancestor` is `ino` or above it: a directory cannot move into itself. */
  private assertNotAncestor(tx: Tx, ancestor: number, ino: number): void {
    for (let current = ino, depth = 0; ; depth++) {
      if (current === ancestor) throw new FsError(E.EINVAL);
      if (current === ROOT_INO || depth > PATH_MAX_BYTES) return;
      current = tx.mustInode(current).parent;
    }
  }

  /** One link fewer; the inode goes when none is left and no node holds it open.
   *  A node that holds the inode's attributes granted may have opened it
   *  without telling yet, or be opening it: the inode is kept until that node
   *  answered its callback, and a moment more (see releaseUnopened). The
   *  caller's node too: it told its opens, but another of its processes may
   *  have an open on its way. */
  private dropLink(tx: Tx, ino: number, time: Attr['ctime'], effects?: Effects): void {
    const inode = tx.editInode(ino);
    inode.attr.nlink--;
    inode.attr.ctime = time;
    if (inode.attr.nlink > 0) return;
    if (this.opens.has(ino) || !this.opensKnown) {
      tx.setZeroLinks(ino, true);
    } else if (effects && this.mayBeOpen?.(ino, NO_NODE)) {
      tx.setZeroLinks(ino, true);
      effects.maybeOpen.add(ino);
    } else {
      this.free(tx, inode);
    }
  }

  /** An inode kept for nodes that may have had it open: freed unless one said so, a moment later (see GracedFrees). */
  async releaseUnopened(ino: number): Promise<void> {
    if (!this.graced.keep(ino)) await this.freeIfUnlinked(ino);
  }

  private readonly graced = new GracedFrees(async (inos) => {
    // (not known: those left unlinked are freed once they are, see opensAnnounced)
    if (!this.opensKnown) return;
    await this.store.run((tx) => {
      for (const ino of inos) {
        const inode = tx.inode(ino);
        if (inode && inode.attr.nlink === 0 && !this.opens.has(ino)) this.free(tx, inode);
      }
    });
  });

  private free(tx: Tx, inode: Inode): void {
    tx.deleteInode(inode.attr.ino);
    if (this.store.zeroLinks.has(inode.attr.ino)) tx.setZeroLinks(inode.attr.ino, false);
    // an inlined file never wrote its objects
    if (inode.layout && inode.layout.nodes.length > 0 && !inode.inlined) tx.putOrphan({ ...inode, inlineData: EMPTY, xattrs: {} });
  }
}

const EMPTY = Buffer.alloc(0);

/** 512-byte blocks that `bytes` of data take, in 4 KiB blocks as on ext4. */
export function blocksOf(bytes: number): number {
  return Math.ceil(bytes / 4096) * 8;
}

/** Path components, checked. */
export function components(path: string): string[] {
  if (Buffer.byteLength(path) > PATH_MAX_BYTES) throw new FsError(E.ENAMETOOLONG);
  const names = path.split('/').filter((n) => n.length > 0);
  for (const name of names) checkName(name);
  return names;
}

/** A name a directory may hold. */
function checkName(name: string): void {
  if (Buffer.byteLength(name) > NAME_MAX_BYTES) throw new FsError(E.ENAMETOOLONG);
  if (name === '.' || name === '..' || name.includes('/') || name.includes('\0')) throw new FsError(E.EINVAL, `bad name ${JSON.stringify(name)}`);
}

function checkPolicy(policy: StripePolicy): void {
  const { unitBytes, count } = policy;
  if (unitBytes !== 0 && (unitBytes < STRIPE_UNIT_MIN_BYTES || unitBytes > STRIPE_UNIT_MAX_BYTES || unitBytes % STRIPE_UNIT_MIN_BYTES !== 0)) {
    throw new FsError(E.EINVAL, `stripe unit must be a multiple of ${STRIPE_UNIT_MIN_BYTES} bytes up to ${STRIPE_UNIT_MAX_BYTES}`);
  }
  if (!Number.isInteger(count) || count < 0 || count > STRIPE_COUNT_MAX) throw new FsError(E.EINVAL, `stripe count must be 0..${STRIPE_COUNT_MAX}`);
  const replicas = policy.replicas ?? 0;
  if (!Number.isInteger(replicas) || replicas < 0 || replicas > REPLICAS_MAX) throw new FsError(E.EINVAL, `replicas must be 0..${REPLICAS_MAX}`);
}

function checkXattrName(name: string): void {
  if (name.length === 0 || Buffer.byteLength(name) > XATTR_NAME_MAX_BYTES) throw new FsError(E.ERANGE);
  if (!XATTR_NAMESPACES.some((prefix) => name.startsWith(prefix) && name.length > prefix.length)) throw new FsError(E.EOPNOTSUPP);
}

/** A layout a node made for a new file (see makeLayout): its units in range, its
 *  copies on members, as many mirrors as its replicas ask, none stale. */
function validNewLayout(layout: Layout, memberIds: number[]): boolean {
  const replicas = replicaCount(layout);
  const mirrors = layout.mirrors ?? [];
  return layout.nodes.length > 0 && layout.nodes.every((id) => memberIds.includes(id))
    && layout.unitBytes >= STRIPE_UNIT_MIN_BYTES && layout.unitBytes <= STRIPE_UNIT_MAX_BYTES
    && replicas <= REPLICAS_MAX && mirrors.length === layout.nodes.length * (replicas - 1)
    && mirrors.every((id) => id === 0 || memberIds.includes(id)) && (layout.stale ?? []).length === 0 && (layout.moves ?? []).length === 0
    && (layout.gen ?? 0) === 0;
}

function sameLayout(a: Layout, b: Layout): boolean {
  const same = (x: number[] | undefined, y: number[] | undefined) => (x ?? []).length === (y ?? []).length && (x ?? []).every((v, i) => v === (y ?? [])[i]);
  const moves = (l: Layout) => (l.moves ?? []).flatMap((m) => [m.slot, m.node]);
  return a.unitBytes === b.unitBytes && a.replicas === b.replicas && same(a.nodes, b.nodes) && same(a.mirrors, b.mirrors) && same(a.stale, b.stale)
    && same(moves(a), moves(b)) && (a.gen ?? 0) === (b.gen ?? 0);
}

function sameTime(a: Attr['mtime'], b: Attr['mtime']): boolean {
  return (a?.sec ?? 0) === (b?.sec ?? 0) && (a?.nsec ?? 0) === (b?.nsec ?? 0);
}

/** An open met a fence (see Namespace.fenced): it is made again once lifted. */
class Fenced extends Error {
  constructor(readonly lifted: Promise<void>) {
    super('the inode is fenced');
  }
}
