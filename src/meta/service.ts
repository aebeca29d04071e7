// The Meta gRPC service of the root node: the namespace and the membership.
import { E, FsError } from '../common/errno.js';
import { READDIR_PAGE_ENTRIES, READDIR_PLUS_PAGE_ENTRIES } from '../common/limits.js';
import { log } from '../common/log.js';
import type { ObjectStore } from '../agent/objectStore.js';
import { CHANGED_LAYOUT, REBALANCE_START, REBALANCE_STOP } from '../rpc/messages.js';
import type { ChangedInReply, Delegation, DirEntry, FailedCreate, Handlers, Layout, MetaMethods, Target } from '../rpc/messages.js';
import type { Caller } from '../rpc/sessionServer.js';
import { Cluster, type MetaLocal } from './cluster.js';
import { Changes, Coherence, type CallbackTarget, type Holding } from './coherence.js';
import { LockService, lockCaller } from '../locks/service.js';
import { Appender } from './append.js';
import { REPAIR_GRACE_DEFAULT_MS, Repairer } from '../replication/repair.js';
import { MOVE_RATE_DEFAULT_BYTES_PER_S, Mover } from '../rebalance/mover.js';
import { nodeAdmin } from '../rebalance/admin.js';
import { BackgroundScrub, SCRUB_INTERVAL_DEFAULT_MS, SCRUB_RATE_DEFAULT_BYTES_PER_S } from '../replication/backgroundScrub.js';

/** The root node's choices about copies (mount.kdfs options). */
export interface ReplicationOptions {
  /** How long a node may stay down before its copies are made elsewhere. */
  repairGraceMs?: number;
  /** The background scrub's rate (0: none) and how often a pass begins. */
  scrubBytesPerS?: number;
  scrubIntervalMs?: number;
  /** The rate of moves of copies (drains, rebalances). */
  moveBytesPerS?: number;
}
import { Namespace } from './namespace.js';
import { namedBy } from '../rpc/targets.js';
import { FIRST_INO, ROOT_INO } from './records.js';
import { S_IFDIR, isDir } from '../common/mode.js';
import { Effects, MetaStore } from './store.js';
import { placementOf } from '../layout/placement.js';
import { SchedulerService } from '../scheduler/service.js';
import { randomBytes } from 'node:crypto';
import type { DataKey } from '../security/dataAuth.js';
import type { KvEngine } from './kv/engine.js';
import { MARKED_METHODS, replayed } from './replay.js';
import { CONTROL_DIR, MODULES_DIR, SCHEDULER_DIR } from '../scheduler/modules.js';

type Ops = { [K in keyof MetaMethods]: (request: MetaMethods[K][0], effects: Effects, caller?: Caller) => Promise<MetaMethods[K][1]> };

/** Calls a node makes while its kernel holds a directory's lock (the one a
 *  callback invalidating an entry of that directory would wait for), and
 *  whether they add names there or also remove some (see Coherence.callBack). */
const HOLDS_DIRECTORY_LOCK: Partial<Record<keyof MetaMethods, Holding>> = { Create: 'adds', Link: 'adds', Remove: 'removes', Rename: 'removes' };

/** The reply of each method that the caller's kernel may cache: the inode whose
 *  attributes it carries, and the directory whose entry it is. */
const CACHEABLE: Partial<Record<keyof MetaMethods, (request: never) => number | null>> = {
  Getattr: (request: Target) => (request.name ? request.ino ?? null : null),
  Create: (request: MetaMethods['Create'][0]) => request.entry?.ino ?? null,
  Link: (request: MetaMethods['Link'][0]) => request.entry?.ino ?? null,
  Setattr: () => null,
  Open: () => null,
  CommitWrite: () => null,
  Append: () => null,
};

/** Degraded files one Health reply lists, at most. */
const HEALTH_INOS_MAX = 10_000;

/** Inode numbers given to a node at once for its delegated creates, at most. */
const INO_RANGE_MAX = 4096;

/** The node making delegated creates: only nodes have delegations. */
function delegator(caller: Caller | undefined): number {
  if (!caller) throw new FsError(E.EINVAL, 'delegated creates come from nodes');
  return caller.nodeId;
}

/** The directories a request names (delegations of them are recalled before
 *  it is served), or anywhere: it may touch any (paths; removals and renames of
 *  directories, whose emptiness depends on creates not yet sent). */
function namedDirectories(method: keyof MetaMethods, request: unknown): { inos: number[]; anywhere: boolean } {
  const named = { inos: [] as number[], anywhere: false };
  if (NAMES_NO_DIRECTORY.has(method)) return named;
  if (method === 'Rename' || (method === 'Remove' && (request as MetaMethods['Remove'][0]).directory)) named.anywhere = true;
  const { inos, path } = namedBy(request);
  named.inos = inos;
  if (path) named.anywhere = true;
  return named;
}
const NAMES_NO_DIRECTORY = new Set<keyof MetaMethods>(['Register', 'ListNodes', 'Health', 'NodeAdmin', 'Rebalance', 'Scheduler', 'DataKey', 'Repair', 'Statfs', 'Close', 'Sync', 'Publish', 'ReserveInos', 'Lock', 'CancelLock', 'ReclaimLocks']);

/** How long after a start the nodes have to re-announce their open files (they
 *  re-register every few seconds); unlinked inodes are kept until then. */
export const OPENS_GRACE_MS = 15_000;
/** Reported as free inodes: kDFS has no fixed inode table. */
const FILES_FREE = 2 ** 32;

const OK = { errno: 0 };
/** Served by call() itself, for nodes only. */
const notForGrpc = (): Promise<never> => Promise.reject(new FsError(E.EINVAL, 'locks are taken by nodes'));

/** A target names an inode by number, or by a path from the root ("/..."). */
function target(t: Target | null | undefined): Target {
  if (!t || (!t.ino && !(typeof t.path === 'string' && t.path.startsWith('/')))) throw new FsError(E.EINVAL, 'no target');
  return t;
}

/** What takes metadata space: refused while the root's disk is full, so that the
 *  reserve given back serves removals (see reserve.ts). */
const SPACE_TAKING_METHODS = new Set<keyof MetaMethods>(['Create', 'Link', 'CommitWrite', 'Publish', 'ReserveInos', 'SetXattr', 'SetStripe', 'Append']);

export class MetaService {
  readonly namespace: Namespace;
  readonly cluster: Cluster;
  readonly coherence: Coherence;
  readonly locks: LockService;
  private readonly appender: Appender;
  readonly repairer: Repairer;
  readonly mover: Mover;
  readonly scheduler: SchedulerService;
  private readonly scrub: BackgroundScrub;
  private graceTimer: NodeJS.Timeout | null = null;
  private readonly ops: Ops;
  /** The members' key of the data channel (src/security/dataAuth.ts): new at every start, replaced at a revocation. */
  // epochs from the clock: a key made after a restart is never taken for the one before it
  dataKey: DataKey = { key: randomBytes(32), epoch: Math.floor(Date.now() / 1000) };
  /** Where nodes open their sessions (set once the node serves them). */
  sessionAddress = '';

  private constructor(readonly store: MetaStore, local: MetaLocal, options: ReplicationOptions) {
    this.namespace = new Namespace(store);
    this.cluster = new Cluster(store, this.namespace, local, (nodeId) => this.coherence.silentMs(nodeId));
    this.coherence = new Coherence((ino) => this.namespace.openOn(ino));
    this.namespace.mayBeOpen = (ino, origin) => this.coherence.grantedElsewhere(ino, origin);
    this.locks = new LockService(() => this.cluster.nodeIds());
    this.appender = new Appender(store, this.cluster.replicas);
    this.repairer = new Repairer(store, this.namespace, this.cluster, (ino, data) => this.invalidateInode(ino, data), options.repairGraceMs ?? REPAIR_GRACE_DEFAULT_MS);
    const reportBad = async (ino: number, slots: number[]) => {
      await this.namespace.markStale(ino, slots);
      await this.invalidateInode(ino, true);
    };
    this.scrub = new BackgroundScrub(store, this.cluster.replicas.agents, (ino) => this.namespace.isOpen(ino), (nodeId) => this.cluster.isLive(nodeId), reportBad, {
      bytesPerS: options.scrubBytesPerS ?? SCRUB_RATE_DEFAULT_BYTES_PER_S, intervalMs: options.scrubIntervalMs ?? SCRUB_INTERVAL_DEFAULT_MS,
    });
    this.cluster.opensDropped = (inos, nodeId) => this.repairer.reconcile(inos, nodeId);
    this.cluster.replaced = (nodeId) => this.repairer.replaced(nodeId);
    this.mover = new Mover(store, this.namespace, this.cluster, this.repairer, (ino, data) => this.invalidateInode(ino, data),
      (ino) => this.invalidateInode(ino, true, CHANGED_LAYOUT), options.moveBytesPerS ?? MOVE_RATE_DEFAULT_BYTES_PER_S);
    this.scheduler = new SchedulerService(store, async () => {
      const placeable = new Set(this.cluster.placeableIds());
      return (await this.cluster.nodes()).filter((node) => placeable.has(node.id));
    });
    this.namespace.weightsOf = (placement) => this.scheduler.weightsOf(placement);
    this.namespace.placementKnown = (placement) => this.scheduler.placementKnown(placement);
    this.ops = this.makeOps();
  }

  /** The service on its store: a level database at `where`, or an engine (etcd). */
  static async open(where: string | KvEngine, local: MetaLocal, options: ReplicationOptions = {}): Promise<MetaService> {
    const store = typeof where === 'string' ? await MetaStore.open(where) : await MetaStore.on(where);
    const service = new MetaService(store, local, options);
    // other nodes may have been granted caches by the service before this one
    if ([...store.nodes.keys()].some((id) => id !== local.nodeId)) service.coherence.tookOver();
    service.cluster.startReaper();
    service.repairer.start();
    service.mover.start();
    service.scrub.start();
    service.cluster.startSpaceProbes();
    service.scheduler.load();
    await service.makeControlDirs();
    service.graceTimer = setTimeout(() => {
      service.namespace.opensAnnounced().catch((err) => log.error(`freeing unclaimed inodes: ${(err as Error).message}`));
    }, OPENS_GRACE_MS);
    service.graceTimer.unref();
    return service;
  }

  /** Calls back the nodes that cache the inode (its attributes; with data, its
   *  content and layout too): for changes made by the service itself. */
  private async invalidateInode(ino: number, data: boolean, reasons = 0): Promise<void> {
    const changes = new Changes();
    changes.inode(ino, data, reasons, this.store.cachedInode(ino)?.attr.size ?? 0);
    await this.coherence.invalidate(changes, 0);
  }

  get fsid(): string {
    return this.store.fs.fsid;
  }

  /** Told of revocations (the node process closes the revoked nodes' sessions and its agent's old connections). */
  onRevoked: (ids: number[], dataKeyEpoch: number) => void = () => {};

  /** kdfs node revoke: a new data key, which the revoked nodes will never get, and their connections closed. */
  private revoke(ids: number[]): void {
    this.dataKey = { key: randomBytes(32), epoch: Math.max(this.dataKey.epoch + 1, Math.floor(Date.now() / 1000)) };
    log.warn(`node${ids.length > 1 ? 's' : ''} ${ids.join(', ')} revoked: data key replaced (epoch ${this.dataKey.epoch})`);
    this.onRevoked(ids, this.dataKey.epoch);
  }

  /** A node whose credentials were revoked (kdfs node revoke): refused on every channel. */
  isRevoked(nodeId: number): boolean {
    return this.store.nodes.get(nodeId)?.admin === 'revoked';
  }

  /** The root's disk is full: see reserve.ts. */
  get spaceLow(): boolean {
    return this.store.spaceLow;
  }

  /** MOUNT/.kdfs/ with modules/ (scheduler modules: only root may write) and
   *  scheduler/ (the control tree, which nodes serve): made when missing. */
  private async makeControlDirs(): Promise<void> {
    const make = async (parent: number, name: string): Promise<number> => {
      try {
        return (await this.namespace.create({ entry: { ino: parent, name }, mode: S_IFDIR | 0o755, uid: 0, gid: 0, rdev: 0, target: '', exclusive: true, openNode: 0, wantDelegation: false, wantInos: 0 }, [], null)).inode.attr.ino;
      } catch (err) {
        if (!(err instanceof FsError) || err.errno !== E.EEXIST) throw err;
        return (await this.namespace.getattr({ ino: parent, name })).ino;
      }
    };
    try {
      const control = await make(ROOT_INO, CONTROL_DIR);
      await make(control, MODULES_DIR);
      await make(control, SCHEDULER_DIR);
    } catch (err) {
      // a file system whose /.kdfs a user made first still serves, without the control tree
      log.warn(`/${CONTROL_DIR} cannot be made (${(err as Error).message}): the scheduler's control tree is unavailable`);
    }
  }

  async close(): Promise<void> {
    if (this.graceTimer) clearTimeout(this.graceTimer);
    await this.scheduler.close();
    await this.scrub.close();
    await this.mover.close();
    await this.repairer.close();
    this.cluster.close();
    this.coherence.close();
    this.locks.close();
    await this.store.close();
  }

  /** The service's methods, for a caller (a node's session or its own node), or
   *  for no node (gRPC: commands). */
  handlers(): Handlers<MetaMethods> {
    const handlers = {} as Record<string, (request: unknown, caller?: Caller) => Promise<unknown>>;
    for (const method of Object.keys(this.ops)) handlers[method] = (request, caller) => this.call(method as keyof MetaMethods, request, caller);
    return handlers as unknown as Handlers<MetaMethods>;
  }

  /** A node opened a session (or the root node started): it is called back on
   *  this target, and holds locks in this incarnation. */
  attach(target: CallbackTarget & { incarnation: string }): void {
    this.coherence.attach(target);
    this.locks.sessionOpened(target.nodeId, target.incarnation);
    this.cluster.sessionChanged();
  }

  /** A session ended. Only the node's current one counts: its next session may
   *  have opened before the old connection's end was noticed. */
  detach(target: CallbackTarget): void {
    if (this.coherence.target(target.nodeId) !== target) return;
    this.coherence.detach(target);
    this.locks.sessionClosed(target.nodeId);
    this.cluster.sessionChanged();
  }

  /** Serves a call: the operation, then the callbacks its changes need, then
   *  what the caller's kernel may cache of the reply. call: a node's call on
   *  its session (its mark's key, and whether it was sent before: see
   *  replay.ts), when the store keeps marks. */
  async call(method: keyof MetaMethods, request: unknown, caller?: Caller, call?: { key: Buffer; resent: boolean }): Promise<unknown> {
    switch (method) {
      case 'Lock':
        return this.locks.lock(lockCaller(caller), request as MetaMethods['Lock'][0]);
      case 'CancelLock':
        this.locks.cancel(lockCaller(caller), (request as MetaMethods['CancelLock'][0]).waitId);
        return { errno: 0 };
      case 'ReclaimLocks':
        this.locks.reclaim(lockCaller(caller), (request as MetaMethods['ReclaimLocks'][0]).locks);
        return { errno: 0 };
    }
    const op = this.ops[method] as (request: unknown, effects: Effects, caller?: Caller) => Promise<unknown>;
    if (!op) throw new FsError(E.EINVAL, `no method ${method}`);
    if (this.store.spaceLow && SPACE_TAKING_METHODS.has(method)) throw new FsError(E.ENOSPC, 'the root node\'s disk is full: only removals are served');
    const origin = caller?.nodeId ?? 0;
    const mark = call && this.store.marksRequests && MARKED_METHODS.has(method) ? call.key : null;
    if (mark && call!.resent && (await this.store.requestMark(mark)) !== undefined) {
      log.info(`${method} of node ${origin}, sent again (after a restart or failover), was applied: answered from the state now`);
      return replayed(method, request, (again) => this.call(method, again, caller), (target) => this.call('Getattr', target, caller));
    }
    const named = namedDirectories(method, request);
    // what other nodes create under delegations in those directories comes first
    const leave = await this.coherence.enter(named.inos, origin, named.anywhere);
    try {
      return await this.serve(method, op, request, caller, origin, mark);
    } finally {
      leave();
    }
  }

  private async serve(method: keyof MetaMethods, op: (request: unknown, effects: Effects, caller?: Caller) => Promise<unknown>, request: unknown, caller: Caller | undefined, origin: number, mark: Buffer | null): Promise<unknown> {
    const effects = new Effects();
    effects.origin = origin;
    effects.requestKey = mark;
    // before the rename is made: a change of the directory by another node made
    // as soon as it is must call this node back
    const movedInto = method === 'Rename' ? (request as MetaMethods['Rename'][0]).to?.ino : undefined;
    if (caller && movedInto) this.coherence.movedInto(caller.nodeId, movedInto);
    // a copy: some replies are shared constants (OK), and what follows adds to them
    const reply = { ...(await op(request, effects, caller)) as object } as ChangedInReply & {
      attr?: { ino: number; mode: number } | null; cacheMs?: number; created?: boolean; delegation?: Delegation | null;
    };
    if (!effects.changes.empty) {
      // only a change of entries holds a directory lock in the caller's kernel
      await this.coherence.invalidate(effects.changes, origin, (caller && HOLDS_DIRECTORY_LOCK[method]) || 'nothing');
      // after the callbacks, which forget every grant of what changed
      if (caller) this.tellChanges(reply, effects, caller.nodeId);
      // the nodes called back told their unannounced opens before answering
      for (const ino of effects.maybeOpen) await this.namespace.releaseUnopened(ino);
    }
    const cacheable = CACHEABLE[method] as ((request: unknown) => number | null) | undefined;
    if (caller && cacheable && reply.attr) {
      const ino = reply.attr.ino;
      const dir = cacheable(request);
      const current = this.store.unchangedSince(ino, effects.seq) && (dir === null || this.store.unchangedSince(dir, effects.seq));
      reply.cacheMs = current ? this.coherence.grant(caller.nodeId, ino, dir) : 0;
      // a directory this node just made: its (no) entries too
      // (refused past the node's share of grants: then nothing of it is cacheable,
      // or the node would take the directory for known and empty)
      if (reply.cacheMs > 0 && reply.created && isDir(reply.attr.mode) && this.coherence.grant(caller.nodeId, ino, ino) === 0) reply.cacheMs = 0;
      const create = request as MetaMethods['Create'][0];
      // of the directory created in, or of the one made (empty: the node knows all its entries)
      const delegated = reply.created && isDir(reply.attr.mode) ? ino : dir;
      if (method === 'Create' && reply.cacheMs > 0 && create.wantDelegation && delegated !== null) reply.delegation = await this.delegation(caller.nodeId, delegated, create.wantInos ?? 0);
    }
    return reply;
  }

  /** The weights a placement policy gives the nodes, in their order; empty when it has none. */
  private weightsFor(placement: string, nodeIds: number[]): number[] {
    const weights = this.namespace.weightsOf(placement);
    return weights ? nodeIds.map((id) => weights.get(id) ?? 0) : [];
  }

  /** A delegation of dir to a node, with the inode numbers it asked for; null if refused. */
  private async delegation(nodeId: number, dir: number, wantInos: number): Promise<Delegation | null> {
    const parent = this.store.cachedInode(dir);
    if (!parent || !isDir(parent.attr.mode)) return null;
    const inoCount = Math.min(wantInos, INO_RANGE_MAX);
    // numbers first: a delegation given is usable at once
    const inoFirst = inoCount > 0 ? await this.namespace.reserveInos(nodeId, inoCount) : 0;
    const cacheMs = this.coherence.delegate(nodeId, dir);
    if (cacheMs === 0) return inoCount > 0 ? { dir: 0, cacheMs: 0, inoFirst, inoCount, policy: null, nodeIds: [], parentMode: 0, parentGid: 0 } : null;
    const fallback = this.store.fs.defaultPolicy;
    const placeable = this.cluster.placeableIds();
    return {
      dir, cacheMs, inoFirst, inoCount,
      policy: {
        unitBytes: parent.policy?.unitBytes || fallback?.unitBytes || 0, count: parent.policy?.count || fallback?.count || 0, replicas: parent.policy?.replicas || fallback?.replicas || 0,
        placement: placementOf(parent.policy, fallback),
      },
      nodeIds: placeable, nodeDomains: placeable.map((id) => this.cluster.domainOf(id)), nodeWeights: this.weightsFor(placementOf(parent.policy, fallback), placeable), parentMode: parent.attr.mode, parentGid: parent.attr.gid,
    };
  }

  /** Grants a node the entries of a listed directory and the attributes of its
   *  entries, if none changed since seenSeq (before the listing was read);
   *  attributes that did, or cannot be granted, are left out of the page.
   *  Returns how long the grants last (0: none, every attribute left out). */
  private grantListing(nodeId: number, page: { ino: number; entries: DirEntry[] }, seenSeq: number): number {
    const cacheMs = this.store.unchangedSince(page.ino, seenSeq) ? this.coherence.grant(nodeId, page.ino, page.ino) : 0;
    const moving = this.mover.mayMove();
    for (const entry of page.entries) {
      if (!entry.attr) continue;
      const current = cacheMs > 0 && this.store.unchangedSince(entry.ino, seenSeq) && this.coherence.grant(nodeId, entry.ino, null) > 0;
      if (!current) Object.assign(entry, { attr: null, noXattrs: false, layout: null, inlined: false, inlineData: undefined });
      else if (entry.layout && (moving || !this.layoutSettled(entry.ino, entry.layout))) Object.assign(entry, { layout: null, inlined: false, inlineData: undefined });
    }
    return cacheMs;
  }

  /** Whether a listing may give the file's layout, by which the node then opens
   *  it without a call: not while a job of the service may change the layout
   *  (repair, the cut after a dead writer, a move), as those rely on every open
   *  made meanwhile being counted by an Open call (see Namespace.fenced). */
  private layoutSettled(ino: number, layout: Layout): boolean {
    return !this.store.needsRepair.has(ino) && !this.namespace.isFenced(ino) && (layout.moves?.length ?? 0) === 0;
  }

  /** What the call changed, in its reply: the inodes, and the new attributes of
   *  those the caller may cache (granted as any reply's). */
  private tellChanges(reply: ChangedInReply, effects: Effects, nodeId: number): void {
    reply.changed = [...effects.changes.inodes.keys()];
    reply.changedAttrs = [];
    for (const ino of reply.changed) {
      const inode = this.store.cachedInode(ino);
      if (!inode || !this.store.unchangedSince(ino, effects.seq)) continue;
      const cacheMs = this.coherence.grant(nodeId, ino, null);
      if (cacheMs === 0) break;
      reply.changedAttrs.push(inode.attr);
      reply.changedCacheMs = cacheMs;
    }
  }

  private makeOps(): Ops {
    const ns = this.namespace;
    const cluster = this.cluster;
    const policy = () => this.store.fs.defaultPolicy;
    return {
      Register: async (request) => ({ ...(await cluster.register(request)), sessionAddress: this.sessionAddress }),
      ListNodes: async () => ({ nodes: await cluster.nodes() }),
      Health: async (request) => {
        const counts = await this.repairer.counts(Math.min(request.inosMax ?? 0, HEALTH_INOS_MAX), request.countCopies ?? false);
        return { errno: 0, ...counts, repairedCopies: this.repairer.repairedCopies };
      },
      NodeAdmin: async (request) => nodeAdmin(request, {
        cluster, store: this.store, mover: this.mover, recallDelegations: async () => (await this.coherence.enter([], 0, true))(), revoked: (ids) => this.revoke(ids),
      }),
      Scheduler: (request) => this.scheduler.handle(request),
      DataKey: async () => ({ errno: 0, key: this.dataKey.key, epoch: this.dataKey.epoch }),
      Rebalance: async (request) => {
        if (request.op === REBALANCE_START) await this.mover.startRebalance();
        else if (request.op === REBALANCE_STOP) await this.mover.stopRebalance();
        return { errno: 0, message: '', rebalance: this.mover.rebalance, drain: this.mover.drain, shares: await this.mover.currentShares() };
      },
      Statfs: async () => {
        let totalBytes = 0;
        let freeBytes = 0;
        for (const node of await cluster.nodes()) {
          if (!node.up) continue;
          totalBytes += node.capacityBytes;
          freeBytes += node.freeBytes;
        }
        return { errno: 0, totalBytes, freeBytes, files: this.filesUsed() + FILES_FREE, filesFree: FILES_FREE };
      },
      Getattr: async (request, fx) => ({ errno: 0, attr: await ns.getattr(target(request), fx) }),
      Setattr: async (request, fx) => ({ errno: 0, attr: await ns.setattr({ ...request, target: target(request.target) }, fx) }),
      async Create(request, fx) {
        target(request.entry);
        const { inode, existed } = await ns.create(request, cluster.placeableIds(), policy(), fx);
        return { errno: 0, attr: inode.attr, layout: inode.layout, inlined: inode.inlined, inlineData: inode.inlineData, created: !existed };
      },
      async Remove(request, fx) {
        await ns.remove(target(request.entry), request.directory, fx);
        return OK;
      },
      async Rename(request, fx) {
        await ns.rename(target(request.from), target(request.to), request.flags ?? 0, fx);
        return OK;
      },
      Link: async (request, fx) => ({ errno: 0, attr: await ns.link(target(request.inode), target(request.entry), fx) }),
      ReadDir: async (request, _fx, caller) => {
        if (!request.plus) {
          const limit = Math.min(request.limit || READDIR_PAGE_ENTRIES, READDIR_PAGE_ENTRIES);
          return { errno: 0, ...(await ns.readDir(target(request.target), request.after, limit)) };
        }
        const limit = Math.min(request.limit || READDIR_PLUS_PAGE_ENTRIES, READDIR_PLUS_PAGE_ENTRIES);
        const { seenSeq, ...page } = await ns.readDirPlus(target(request.target), request.after, limit);
        return { errno: 0, ...page, cacheMs: caller ? this.grantListing(caller.nodeId, page, seenSeq) : 0 };
      },
      ReadLink: async (request, fx) => ({ errno: 0, target: await ns.readLink(target(request), fx) }),
      async Open(request, fx) {
        const inode = await ns.open(target(request.target), request.nodeId, fx);
        return { errno: 0, attr: inode.attr, layout: inode.layout, inlined: inode.inlined, inlineData: inode.inlineData };
      },
      Close: async (request) => {
        for (const ino of request.opens ?? []) await ns.open({ ino }, request.nodeId).catch(() => undefined);
        for (const ino of [...(request.ino ? [request.ino] : []), ...(request.inos ?? [])]) {
          // the last known open of an unlinked file: a node it is granted to may have opened it untold
          if (ns.closeMayFreeUnopened(ino, request.nodeId)) {
            const changes = new Changes();
            changes.inode(ino, false, 0, 0);
            await this.coherence.invalidate(changes, request.nodeId);
          }
          await ns.close(ino, request.nodeId);
        }
        return OK;
      },
      async CommitWrite(request, fx, caller) {
        const delegated = request.creates?.length ? { creates: request.creates, nodeId: delegator(caller), memberIds: cluster.dataMemberIds(), failed: [] as FailedCreate[] } : undefined;
        // a node that says what it wrote (inline_patches) keeps what other nodes wrote
        const merge = request.inlined && request.inlinePatches?.length ? { patches: request.inlinePatches, merged: false } : null;
        const attr = await ns.commitWrite(request.ino, request.size, request.mtime, request.sync, request.inlined ? Buffer.from(request.inlineData ?? []) : null, fx,
          request.allocatedKnown ? request.allocatedBytes ?? 0 : null, delegated, request.staleSlots ?? [], merge,
          !request.inlined && request.spilled ? Buffer.from(request.spilledContent ?? []) : null);
        return { errno: attr ? 0 : E.EIO, attr, failed: delegated?.failed ?? [], inlineMerged: merge?.merged ?? false };
      },
      async ReserveInos(request, fx, caller) {
        const inoCount = Math.min(request.count, INO_RANGE_MAX);
        if (inoCount <= 0) throw new FsError(E.EINVAL, 'no inode count');
        return { errno: 0, inoFirst: await ns.reserveInos(delegator(caller), inoCount), inoCount };
      },
      Publish: async (request, fx, caller) => ({ errno: 0, failed: await ns.publish(request.creates ?? [], delegator(caller), cluster.dataMemberIds(), fx) }),
      Sync: async () => {
        await this.store.barrier(true);
        return OK;
      },
      GetXattr: async (request) => ({ errno: 0, value: await ns.getXattr(target(request.target), request.name ?? ''), names: [] }),
      async SetXattr(request, fx) {
        await ns.setXattr(target(request.target), request.name ?? '', Buffer.from(request.value ?? []), request.flags ?? 0, fx);
        return OK;
      },
      ListXattr: async (request) => ({ errno: 0, value: Buffer.alloc(0), names: await ns.listXattr(target(request.target)) }),
      async RemoveXattr(request, fx) {
        await ns.removeXattr(target(request.target), request.name ?? '', fx);
        return OK;
      },
      async SetStripe(request, fx) {
        if (!request.policy) throw new FsError(E.EINVAL);
        await ns.setStripe(target(request.target), request.policy, cluster.placeableIds(), policy(), fx);
        return OK;
      },
      Append: async (request, fx) => ({ errno: 0, attr: await this.appender.append(request.ino, Buffer.from(request.data ?? []), fx) }),
      Lock: notForGrpc,
      CancelLock: notForGrpc,
      ReclaimLocks: notForGrpc,
      Repair: async (request) => {
        await this.repairer.repairNow(request.ino);
        return OK;
      },
      async MarkStale(request, fx) {
        await ns.markStale(request.ino, request.slots ?? [], fx);
        return OK;
      },
      GetStripe: async (request) => ({ errno: 0, ...(await ns.getStripe(target(request), cluster.nodeIds(), policy())) }),
    };
  }

  private filesUsed(): number {
    return this.store.inodesAllocated() - FIRST_INO + 1;
  }
}
