// The metadata store: the namespace's records in an engine (kv/: level on the
// root node's disk, or etcd) behind a write-through cache.
//
// Operations run as transactions: a synchronous function reads records from the
// cache and stages writes. A record not in the cache aborts the attempt (Miss);
// the store loads it and runs the function again. Because the function is
// synchronous and Node runs one thing at a time, an attempt that completes saw
// one consistent state and its writes apply atomically: to the cache at once,
// and to the engine as one transaction. Transactions are written by one
// writer, in order, grouped into as few engine writes as possible.
//
// If the engine fails a write (a full disk or quota), the store drops every
// transaction not yet written, reopens the engine, and starts again from what
// it holds: the callers of those transactions get the errno (ENOSPC), nothing
// half-done remains.
import { E, FsError } from '../common/errno.js';
import { META_CACHE_BYTES_MAX, META_CACHE_RECORDS_MAX } from '../common/limits.js';
import { log } from '../common/log.js';
import { Changes } from './coherence.js';
import { SpaceReserve } from './reserve.js';
import type { BatchOp, KvEngine } from './kv/engine.js';
import { LevelEngine } from './kv/level.js';
import type { FsRecord, Inode, NodeRecord } from '../rpc/messages.js';
import {
  KIND_DIRENT, KIND_INODE, KIND_NODE, KIND_ORPHAN, KIND_REPAIR, KIND_ZERO_LINKS, ROOT_INO, cloneInode, decodeDirent,
  decodeInode, direntKey, direntRange, encodeDirent, encodeInode, fsCodec, fsKey, inodeKey, nodeCodec, nodeKey,
  orphanKey, readU64, repairKey, syncKey, zeroLinksKey, KIND_STRAY, strayKey, decodeStrayKey, KIND_SCHEDULER, schedulerKey, KIND_REQUEST, markValue,
  type Dirent, type Stray,
} from './records.js';

/** Tx.dataChanges: the data changed, beside the CHANGED_* reasons. */
const DATA_BIT = 1 << 30;


/** A record the transaction needs is not in the cache. */
class Miss {
  constructor(readonly key: Buffer) {}
}

interface CacheEntry {
  /** The decoded record, or null when it is known to be absent. */
  value: Inode | Dirent | null;
  /** Sequence number of the last transaction that wrote it (0: as on disk). */
  seq: number;
  /** About how much memory it takes. */
  bytes: number;
}

/** About how much memory a cached record takes, its key and map entry included. */
function recordBytes(name: string, value: Inode | Dirent | null): number {
  const keyBytes = 120 + name.length;
  if (value === null) return keyBytes;
  if (!('attr' in value)) return keyBytes + 96;
  let bytes = keyBytes + 320 + value.inlineData.length;
  for (const [name, v] of Object.entries(value.xattrs)) bytes += name.length + v.length + 64;
  return bytes;
}

interface Staged {
  key: Buffer;
  value: Inode | Dirent | NodeRecord | FsRecord | Buffer | true | null;
}

interface Pending {
  ops: BatchOp[];
  sync: boolean;
  seq: number;
  resolve: () => void;
  reject: (err: Error) => void;
}

/** Most records one engine write takes: bigger groups wait for the next write. */
const WRITE_GROUP_OPS_MAX = 4096;
/** Inode numbers reserved at a time in the file system record. */
const INO_BLOCK = 4096;
/** Loads a transaction may need before it gives up (a path deeper than this is absurd). */
const TX_LOADS_MAX = 4096;
/** Records read at once by preloadInodes. */
const LOADS_IN_FLIGHT_MAX = 64;
/** After a failed write, how often to try to reopen the engine. */
const REOPEN_RETRY_MS = 1000;

/** What the transactions of one request did: the changes to call nodes back
 *  for, and the sequence number of the state the request last saw. */
export class Effects {
  readonly changes = new Changes();
  seq = 0;
  /** The node whose request this is (0: a command). */
  origin = 0;
  /** Unlinked inodes kept because other nodes may have them open unannounced. */
  readonly maybeOpen = new Set<number>();
  /** The call's mark, written with every transaction of it that changes something (see replay.ts). */
  requestKey: Buffer | null = null;
}

export class Tx {
  readonly staged = new Map<string, Staged>();
  /** Inodes whose data (not only attributes) changed, and why (CHANGED_* bits). */
  readonly dataChanges = new Map<number, number>();
  readonly newDirectories: number[] = [];
  /** Inode numbers this transaction took. */
  allocated = 0;
  private fsRecord: FsRecord | null = null;

  constructor(private readonly store: MetaStore) {}

  inode(ino: number): Inode | null {
    return this.read(inodeKey(ino)) as Inode | null;
  }

  /** The inode, or ENOENT. */
  mustInode(ino: number): Inode {
    const inode = this.inode(ino);
    if (!inode) throw new FsError(E.ENOENT);
    return inode;
  }

  /** The inode, to change in place: the transaction writes it when it commits.
   *  Editing the same inode twice gives the same object. */
  editInode(ino: number): Inode {
    const key = inodeKey(ino);
    const staged = this.staged.get(key.toString('latin1'));
    if (staged?.value) return staged.value as Inode;
    const copy = cloneInode(this.mustInode(ino));
    this.stage(key, copy);
    return copy;
  }

  dirent(parent: number, name: string): Dirent | null {
    const key = direntKey(parent, name);
    const name_ = key.toString('latin1');
    if (!this.staged.has(name_) && !this.store.cacheEntry(name_) && this.store.knowsAllEntries(parent)) return null;
    return this.read(key) as Dirent | null;
  }

  /** The directory is new: all its entries will pass through the cache. */
  newDirectory(ino: number): void {
    this.newDirectories.push(ino);
  }

  /** The inode's data changed (a write committed, a truncation), or (data false)
   *  only attributes, for the reasons given (CHANGED_* bits). */
  changed(ino: number, data: boolean, reasons: number): void {
    this.dataChanges.set(ino, (this.dataChanges.get(ino) ?? 0) | reasons | (data ? DATA_BIT : 0));
  }

  putInode(inode: Inode): void {
    this.stage(inodeKey(inode.attr.ino), inode);
  }

  deleteInode(ino: number): void {
    this.stage(inodeKey(ino), null);
  }

  putDirent(parent: number, name: string, dirent: Dirent): void {
    this.stage(direntKey(parent, name), dirent);
  }

  deleteDirent(parent: number, name: string): void {
    this.stage(direntKey(parent, name), null);
  }

  /** Marks an inode with no links that is still open somewhere. */
  setZeroLinks(ino: number, on: boolean): void {
    this.stage(zeroLinksKey(ino), on ? true : null);
  }

  /** Queues the stripe objects of a freed inode for removal. */
  putOrphan(inode: Inode): void {
    this.stage(orphanKey(inode.attr.ino), inode);
  }

  deleteOrphan(ino: number): void {
    this.stage(orphanKey(ino), null);
  }

  /** Marks an inode whose replicas need repair (see src/replication), or unmarks it. */
  setNeedsRepair(ino: number, on: boolean): void {
    this.stage(repairKey(ino), on ? true : null);
  }

  putNode(node: NodeRecord): void {
    this.stage(nodeKey(node.id), node);
  }

  /** A copy that may be left on a node outside every layout (see records.ts), or no longer. */
  setStray(stray: Stray, on: boolean): void {
    this.stage(strayKey(stray), on ? true : null);
  }

  /** One record of the scheduler's state (see records.ts), or none. */
  putSchedulerRecord(name: string, value: Buffer | null): void {
    this.stage(schedulerKey(name), value);
  }

  /** The call whose transaction this is was applied (see replay.ts). */
  markRequest(key: Buffer): void {
    this.stage(key, markValue(Date.now()));
  }

  /** A rebalance is under way, or no longer. */
  setRebalancing(on: boolean): void {
    this.fsRecord = { ...(this.fsRecord ?? this.store.fs), rebalancing: on };
    this.stage(fsKey, this.fsRecord);
  }

  /** A new inode number. The file system record on disk reserves them in blocks
   *  (a block is written once per INO_BLOCK inodes; after a crash, the rest of
   *  the block is skipped: numbers are never reused). */
  allocIno(): number {
    const ino = this.store.nextFreeIno + this.allocated++;
    if (ino >= (this.fsRecord ?? this.store.fs).nextIno) {
      this.fsRecord = { ...this.store.fs, nextIno: ino + INO_BLOCK };
      this.stage(fsKey, this.fsRecord);
    }
    return ino;
  }

  /** count consecutive inode numbers (a node's range for delegated creates). */
  allocInos(count: number): number {
    if (!(Number.isInteger(count) && count > 0 && count <= INO_BLOCK)) throw new RangeError(`bad inode count ${count}`);
    const first = this.store.nextFreeIno + this.allocated;
    this.allocated += count;
    const end = first + count;
    if (end > (this.fsRecord ?? this.store.fs).nextIno) {
      this.fsRecord = { ...this.store.fs, nextIno: end + INO_BLOCK };
      this.stage(fsKey, this.fsRecord);
    }
    return first;
  }

  private stage(key: Buffer, value: Staged['value']): void {
    this.staged.set(key.toString('latin1'), { key, value });
  }

  private read(key: Buffer): Inode | Dirent | null {
    const name = key.toString('latin1');
    const staged = this.staged.get(name);
    if (staged) return staged.value as Inode | Dirent | null;
    const entry = this.store.cacheEntry(name);
    if (!entry) throw new Miss(key);
    return entry.value;
  }
}

export class MetaStore {
  private readonly cache = new Map<string, CacheEntry>();
  private cacheBytes = 0;
  /** Directories whose every entry is in the cache (made by this process, none
   *  evicted since): a name missing from the cache is absent, no need to read. */
  private readonly complete = new Set<number>();
  private readonly loading = new Map<string, Promise<void>>();
  private readonly queue: Pending[] = [];
  private writing = false;
  /** Transactions in the last write, and a drain waiting for as many (see gather). */
  private lastGroupTransactions = 0;
  private gathering: { count: number; done: () => void } | null = null;
  private seq = 0;
  /** Transactions up to this one are on disk: their cache entries may be evicted. */
  private committedSeq = 0;
  private recovering: Promise<void> | null = null;
  /** Set while the engine is closed after a failed write: the errno, and when to try to reopen it. */
  private failed: { errno: number; retryAtMs: number; reopening: Promise<void> | null } | null = null;
  /** The file system record as of the last committed transaction; its nextIno
   *  is the end of the inode numbers reserved. */
  fs!: FsRecord;
  /** The next inode number to hand out. */
  nextFreeIno = 0;
  readonly nodes = new Map<number, NodeRecord>();
  /** Inodes with no links, open on some node (from "Z" records). */
  readonly zeroLinks = new Set<number>();
  /** Inodes with replicas to repair: stale, or not placed for want of nodes. */
  readonly needsRepair = new Set<number>();
  /** Copies that may be on nodes outside every layout, by key (hex): see records.ts. */
  readonly strays = new Map<string, Stray>();
  /** The scheduler's records, by name (all small: kept in memory). */
  readonly schedulerRecords = new Map<string, Buffer>();

  /** reserve: space kept aside on the local disk (level only: etcd has its quota). */
  private constructor(private readonly db: KvEngine, private readonly reserve: SpaceReserve | null) {}

  /** The disk is full: only what frees space may be served (see reserve.ts). */
  get spaceLow(): boolean {
    return this.reserve?.low ?? false;
  }

  /** The store in a level database at location (the root meta-file). */
  static async open(location: string): Promise<MetaStore> {
    const engine = await LevelEngine.open(location);
    // taken once level is open: opening may need to write
    const reserve = new SpaceReserve(location);
    reserve.take();
    return MetaStore.on(engine, reserve);
  }

  /** The store in an open engine. */
  static async on(engine: KvEngine, reserve: SpaceReserve | null = null): Promise<MetaStore> {
    const store = new MetaStore(engine, reserve);
    try {
      await store.loadGlobals();
    } catch (err) {
      await engine.close();
      throw err;
    }
    return store;
  }

  /** mkfs with level: a new root meta-file at location holding the first records. */
  static async create(location: string, fs: FsRecord, root: Inode, rootNode: NodeRecord): Promise<void> {
    await LevelEngine.create(location, MetaStore.initialRecords(fs, root, rootNode));
  }

  /** mkfs: the records of a new file system: its own record, the root directory and the root node. */
  static initialRecords(fs: FsRecord, root: Inode, rootNode: NodeRecord): BatchOp[] {
    return [
      { type: 'put', key: fsKey, value: Buffer.from(fsCodec.encode(fs)) },
      { type: 'put', key: inodeKey(ROOT_INO), value: encodeInode(root) },
      { type: 'put', key: nodeKey(rootNode.id), value: Buffer.from(nodeCodec.encode(rootNode)) },
    ];
  }

  private async loadGlobals(): Promise<void> {
    const fs = await this.db.get(fsKey);
    if (!fs) throw new Error(`${this.db.description} has no file system record`);
    this.fs = fsCodec.decode(fs);
    this.nextFreeIno = this.fs.nextIno;
    this.nodes.clear();
    for await (const [, value] of this.db.range(kindRange(KIND_NODE))) {
      const node = nodeCodec.decode(value);
      this.nodes.set(node.id, {
        id: node.id, uuid: node.uuid, address: node.address, joinedSec: node.joinedSec, dataAddress: node.dataAddress, domain: node.domain ?? '',
        admin: node.admin ?? '', adminSinceSec: node.adminSinceSec ?? 0,
      });
    }
    this.zeroLinks.clear();
    for await (const [key] of this.db.range(kindRange(KIND_ZERO_LINKS))) {
      this.zeroLinks.add(readU64(key, 1));
    }
    this.needsRepair.clear();
    for await (const [key] of this.db.range(kindRange(KIND_REPAIR))) {
      this.needsRepair.add(readU64(key, 1));
    }
    this.schedulerRecords.clear();
    for await (const [key, value] of this.db.range(kindRange(KIND_SCHEDULER))) {
      this.schedulerRecords.set(key.subarray(1).toString('utf8'), value);
    }
    this.strays.clear();
    for await (const [key] of this.db.range(kindRange(KIND_STRAY))) {
      this.strays.set(key.toString('hex'), decodeStrayKey(key));
    }
  }

  cacheEntry(name: string): CacheEntry | undefined {
    return this.cache.get(name);
  }

  knowsAllEntries(dir: number): boolean {
    return this.complete.has(dir);
  }

  /** Runs fn as a transaction (see the top of this file); sync: on disk before
   *  returning. effects collects what it changed. */
  async run<T>(fn: (tx: Tx) => T, sync = false, effects?: Effects): Promise<T> {
    for (let loads = 0; ; loads++) {
      if (this.recovering) await this.recovering;
      if (this.failed) await this.reopen();
      const tx = new Tx(this);
      let result: T;
      try {
        result = fn(tx);
      } catch (err) {
        if (err instanceof Miss && loads < TX_LOADS_MAX) {
          await this.load(err.key);
          continue;
        }
        if (err instanceof Miss) throw new FsError(E.EIO, 'transaction needs too many records');
        throw err;
      }
      if (tx.staged.size > 0 && effects?.requestKey) tx.markRequest(effects.requestKey);
      if (tx.staged.size === 0) {
        // numbers taken within a block already on disk: nothing to write
        this.nextFreeIno += tx.allocated;
        if (effects) effects.seq = this.seq;
        if (sync) await this.barrier(true);
        return result;
      }
      const committed = this.commit(tx, sync);
      if (effects) this.collect(tx, effects);
      await committed;
      return result;
    }
  }

  /** What a committed transaction changed, for callbacks. */
  private collect(tx: Tx, effects: Effects): void {
    effects.seq = this.seq;
    for (const { key, value } of tx.staged.values()) {
      if (key[0] === KIND_INODE) {
        const ino = readU64(key, 1);
        const noted = tx.dataChanges.get(ino) ?? 0;
        effects.changes.inode(ino, (noted & DATA_BIT) !== 0, noted & ~DATA_BIT, (value as Inode | null)?.attr.size ?? 0);
      } else if (key[0] === KIND_DIRENT) {
        effects.changes.entry(readU64(key, 1), key.toString('utf8', 9));
      }
    }
  }

  /** The inode as the cache has it (null if absent or not cached). */
  cachedInode(ino: number): Inode | null {
    const value = this.cache.get(inodeKey(ino).toString('latin1'))?.value;
    return value && 'attr' in value ? value : null;
  }

  /** Reads into the cache the inodes it lacks, LOADS_IN_FLIGHT_MAX at a time:
   *  a transaction over many of them then loads none one by one (each a round
   *  trip to etcd). */
  async preloadInodes(inos: number[]): Promise<void> {
    const missing = inos.map(inodeKey).filter((key) => !this.cache.has(key.toString('latin1')));
    for (let first = 0; first < missing.length; first += LOADS_IN_FLIGHT_MAX) {
      await Promise.all(missing.slice(first, first + LOADS_IN_FLIGHT_MAX).map((key) => this.load(key)));
    }
  }

  /** The sequence number of the last transaction run (see unchangedSince). */
  get lastSeq(): number {
    return this.seq;
  }

  /** True if the inode is in the cache and no transaction after seq changed it. */
  unchangedSince(ino: number, seq: number): boolean {
    const entry = this.cache.get(inodeKey(ino).toString('latin1'));
    return entry !== undefined && entry.seq <= seq;
  }

  /** Resolves once everything committed before the call is written (and synced if sync). */
  async barrier(sync: boolean): Promise<void> {
    if (this.failed) await this.reopen();
    return new Promise((resolve, reject) => this.enqueue({ ops: [], sync, seq: this.seq, resolve, reject }));
  }

  /** One page of a directory, in name order, after `after`. */
  async listDir(parent: number, after: string, limit: number): Promise<{ name: string; dirent: Dirent }[]> {
    // Entries of transactions still being written are in the cache only: wait for them.
    await this.barrier(false);
    const entries: { name: string; dirent: Dirent }[] = [];
    for await (const [key, value] of this.db.range({ ...direntRange(parent, after), limit })) {
      entries.push({ name: key.toString('utf8', 9), dirent: decodeDirent(value) });
    }
    return entries;
  }

  /** Whether the engine keeps calls' marks (etcd: a call may be sent again to the next leader). */
  get marksRequests(): boolean {
    return this.db.marksRequests ?? false;
  }

  /** A call's mark, if it was applied (read from the engine: marks are not cached). */
  async requestMark(key: Buffer): Promise<Buffer | undefined> {
    await this.barrier(false);
    return this.db.get(key);
  }

  /** Inodes whose stripe objects are waiting for removal. */
  /** Up to limit freed inodes whose objects are to go, from inode fromIno on. */
  async orphans(limit: number, fromIno = 0): Promise<Inode[]> {
    const found: Inode[] = [];
    for await (const [, value] of this.db.range({ ...kindRange(KIND_ORPHAN), gte: orphanKey(fromIno), limit })) {
      found.push(decodeInode(value));
    }
    return found;
  }

  /** Every inode as committed, in inode order: for scans of the whole file
   *  system (repair, status), which may see changes made while they run or not. */
  async *allInodes(fromIno = 0): AsyncIterable<Inode> {
    for await (const [, value] of this.db.range({ gte: inodeKey(fromIno), lt: Buffer.from([KIND_INODE + 1]) })) yield decodeInode(value);
  }

  /** Up to limit inodes as committed, from inode fromIno on, in inode order. */
  async inodesFrom(fromIno: number, limit: number): Promise<Inode[]> {
    const found: Inode[] = [];
    for await (const [, value] of this.db.range({ gte: inodeKey(fromIno), lt: Buffer.from([KIND_INODE + 1]), limit })) found.push(decodeInode(value));
    return found;
  }

  /** Number of inodes, for statfs: the next inode number says how many were ever made. */
  inodesAllocated(): number {
    return this.nextFreeIno;
  }

  async close(): Promise<void> {
    this.reserve?.close();
    await this.barrier(false).catch(() => {});
    await this.db.close();
  }

  private load(key: Buffer): Promise<void> {
    const name = key.toString('latin1');
    let loading = this.loading.get(name);
    if (!loading) {
      loading = this.db.get(key).then((value) => {
        // A record in the cache is newer than what was read: keep it. What was
        // read may hold any change written so far (it was evicted, or the cache
        // was dropped): unchangedSince must not take it as older than those.
        if (!this.cache.has(name)) this.cacheSet(name, value === undefined ? null : decodeRecord(key, value), this.committedSeq);
      }).finally(() => this.loading.delete(name));
      this.loading.set(name, loading);
    }
    return loading;
  }

  private commit(tx: Tx, sync: boolean): Promise<void> {
    const seq = ++this.seq;
    const ops: BatchOp[] = [];
    for (const [name, { key, value }] of tx.staged) {
      if (value === null) {
        ops.push({ type: 'del', key });
      } else {
        ops.push({ type: 'put', key, value: encodeRecord(key, value) });
      }
      switch (key[0]) {
        case KIND_INODE:
          this.cacheSet(name, value as Inode | null, seq);
          if (value === null) this.complete.delete(readU64(key, 1));
          break;
        case KIND_DIRENT:
          this.cacheSet(name, value as Dirent | null, seq);
          break;
        case fsKey[0]:
          this.fs = value as FsRecord;
          break;
        case KIND_NODE:
          this.nodes.set((value as NodeRecord).id, value as NodeRecord);
          break;
        case KIND_ZERO_LINKS:
          if (value) this.zeroLinks.add(readU64(key, 1));
          else this.zeroLinks.delete(readU64(key, 1));
          break;
        case KIND_REPAIR:
          if (value) this.needsRepair.add(readU64(key, 1));
          else this.needsRepair.delete(readU64(key, 1));
          break;
        case KIND_STRAY:
          if (value) this.strays.set(key.toString('hex'), decodeStrayKey(key));
          else this.strays.delete(key.toString('hex'));
          break;
        case KIND_SCHEDULER:
          if (value) this.schedulerRecords.set(key.subarray(1).toString('utf8'), value as Buffer);
          else this.schedulerRecords.delete(key.subarray(1).toString('utf8'));
          break;
      }
    }
    for (const ino of tx.newDirectories) this.complete.add(ino);
    this.nextFreeIno += tx.allocated;
    return new Promise((resolve, reject) => this.enqueue({ ops, sync, seq, resolve, reject }));
  }

  private enqueue(pending: Pending): void {
    this.queue.push(pending);
    if (this.gathering && this.queue.length >= this.gathering.count) this.gathering.done();
    if (this.writing) return;
    // at the end of this turn of the event loop: the transactions of all the
    // requests it handles go to disk in one write
    this.writing = true;
    setImmediate(() => void this.drain());
  }

  /** Engines whose writes cost the same whatever they carry (etcd: a Raft round
   *  and fsyncs on every member): the callers the last write answered usually
   *  send their next transaction within a few milliseconds; waiting that long
   *  for as many lets one write carry them all. */
  private async gather(): Promise<void> {
    const gatherMs = this.db.gatherMs ?? 0;
    const count = this.lastGroupTransactions;
    if (gatherMs <= 0 || this.queue.length >= count) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => this.gathering?.done(), gatherMs);
      this.gathering = { count, done: () => { clearTimeout(timer); this.gathering = null; resolve(); } };
    });
  }

  private async drain(): Promise<void> {
    this.writing = true;
    while (this.queue.length > 0) {
      await this.gather();
      const group: Pending[] = [];
      let count = 0;
      while (this.queue.length > 0 && (group.length === 0 || count + this.queue[0].ops.length <= WRITE_GROUP_OPS_MAX)) {
        const next = this.queue.shift()!;
        count += next.ops.length;
        group.push(next);
      }
      const transactions = group.filter((p) => p.ops.length > 0).map((p) => p.ops);
      this.lastGroupTransactions = transactions.length;
      const sync = group.some((p) => p.sync);
      if (transactions.length === 0 && !sync) {
        for (const p of group) p.resolve();
        continue;
      }
      if (transactions.length === 0) transactions.push([{ type: 'put', key: syncKey, value: Buffer.alloc(0) }]);
      if (this.failed) {
        // queued before a failure was handled: the disk state they built on is gone
        for (const p of group) p.reject(new FsError(this.failed.errno, 'metadata write failed'));
        continue;
      }
      try {
        await this.db.write(transactions, sync);
        const done = group[group.length - 1].seq;
        for (const p of group) p.resolve();
        this.committedSeq = done;
      } catch (err) {
        await this.recover(err as Error, group);
      }
    }
    this.writing = false;
    this.evict();
  }


  /** A level write failed: drop everything not on disk and start again from the disk. */
  private async recover(err: Error, group: Pending[]): Promise<void> {
    const errno = this.db.errnoOf(err);
    log.error(`metadata write failed (${errno === E.ENOSPC ? 'ENOSPC' : 'EIO'}): ${err.message}; reloading from disk`);
    const failed = [...group, ...this.queue.splice(0)];
    let done!: () => void;
    this.recovering = new Promise((resolve) => (done = resolve));
    this.cache.clear();
    this.complete.clear();
    // level refuses all writes after a failed one until it is reopened
    await this.db.halt().catch(() => {});
    this.cacheBytes = 0;
    this.failed = { errno, retryAtMs: 0, reopening: null };
    // room for level to reopen, and for removals to free space
    if (errno === E.ENOSPC) this.reserve?.giveBack();
    this.recovering = null;
    done();
    for (const p of failed) p.reject(new FsError(errno, 'metadata write failed'));
  }

  /** Reopens level after a failure, at most once a second; until then operations fail with its errno. */
  private reopen(): Promise<void> {
    const failed = this.failed!;
    if (failed.reopening) return failed.reopening;
    if (Date.now() < failed.retryAtMs) return Promise.reject(new FsError(failed.errno, 'the root meta-file is not writable'));
    failed.retryAtMs = Date.now() + REOPEN_RETRY_MS;
    failed.reopening = (async () => {
      try {
        await this.db.reopen();
        await this.loadGlobals();
        this.failed = null;
        log.info('the root meta-file is open again');
      } catch (err) {
        await this.db.halt().catch(() => {});
        failed.errno = this.db.errnoOf(err as Error);
        throw new FsError(failed.errno, `cannot reopen ${this.db.description}: ${(err as Error).message}`);
      } finally {
        failed.reopening = null;
      }
    })();
    return failed.reopening;
  }

  private cacheSet(name: string, value: Inode | Dirent | null, seq: number): void {
    const bytes = recordBytes(name, value);
    this.cacheBytes += bytes - (this.cache.get(name)?.bytes ?? 0);
    this.cache.set(name, { value, seq, bytes });
  }

  /** Forgets the oldest records written to disk, down to 90% of the limits. */
  private evict(): void {
    if (this.cache.size <= META_CACHE_RECORDS_MAX && this.cacheBytes <= META_CACHE_BYTES_MAX) return;
    const records = Math.floor(META_CACHE_RECORDS_MAX * 0.9);
    const bytes = Math.floor(META_CACHE_BYTES_MAX * 0.9);
    for (const [name, entry] of this.cache) {
      if (this.cache.size <= records && this.cacheBytes <= bytes) break;
      if (entry.seq > this.committedSeq) continue;
      this.cache.delete(name);
      this.cacheBytes -= entry.bytes;
      // an entry of a directory is no longer here: the directory is not wholly known
      if (name.charCodeAt(0) === KIND_DIRENT) this.complete.delete(readU64(Buffer.from(name, 'latin1'), 1));
    }
  }
}

/** Every record of one kind. */
function kindRange(kind: number): { gte: Buffer; lt: Buffer } {
  return { gte: Buffer.from([kind]), lt: Buffer.from([kind + 1]) };
}

function decodeRecord(key: Buffer, value: Buffer): Inode | Dirent {
  return key[0] === KIND_DIRENT ? decodeDirent(value) : decodeInode(value);
}

function encodeRecord(key: Buffer, value: NonNullable<Staged['value']>): Buffer {
  switch (key[0]) {
    case KIND_INODE:
    case KIND_ORPHAN:
      return encodeInode(value as Inode);
    case KIND_DIRENT:
      return encodeDirent(value as Dirent);
    case KIND_NODE:
      return Buffer.from(nodeCodec.encode(value as NodeRecord));
    case fsKey[0]:
      return Buffer.from(fsCodec.encode(value as FsRecord));
    case KIND_ZERO_LINKS:
    case KIND_REPAIR:
    case KIND_STRAY:
      return Buffer.alloc(0);
    case KIND_SCHEDULER:
    case KIND_REQUEST:
      return value as Buffer;
    default:
      throw new Error(`unknown record kind ${key[0]}`);
  }
}
