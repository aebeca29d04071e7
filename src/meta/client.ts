// The metadata service as a node's client sees it: one method per namespace
// operation, errors thrown as FsError(errno).
import { FsError, check, errnoName } from '../common/errno.js';
import { META_DEADLINE_MS } from '../common/limits.js';
import { RpcClient, errorMessageOf } from '../rpc/client.js';
import type { RpcChannel } from '../rpc/local.js';
/** A lock wait has no deadline of its own (it ends when granted or interrupted). */
const LOCK_WAIT_DEADLINE_MS = 2 ** 31 - 1;

import type {
  MoveProgress,
  ChangedInReply, DelegatedCreate, FailedCreate, LockReply, LockRequest, PublishReply,
  Attr, AttrReply, CreateRequest, Delegation, EntryReply, InlinePatch, Layout, MetaMethods, NodeInfo, ReadDirReply, RegisterReply, RegisterRequest,
  SetattrRequest, StatfsReply, StripePolicy, StripeReply, Target, Timespec,
} from '../rpc/messages.js';

/** cacheMs: how long the caller's kernel may cache the attributes (and the
 *  entry, when one was looked up or made); see AttrReply in proto/kdfs.proto. */
export interface Entry { attr: Attr; layout: Layout | null; inlined: boolean; inlineData: Buffer; created: boolean; cacheMs: number; delegation?: Delegation | null }
export interface Fresh { attr: Attr; cacheMs: number }

/** What a CommitWrite carries beyond the size and mtime. */
export interface CommitMore {
  /** An inlined file's content, and the ranges this node wrote. */
  inline?: { content: Buffer; patches: InlinePatch[] } | null;
  /** Space the file's objects take (st_blocks), if known. */
  allocatedBytes?: number | null;
  /** Copies that missed writes: stale in the same transaction. */
  staleSlots?: number[];
  /** The inlined content this node wrote to the objects (see commitWrite). */
  spilledContent?: Buffer | null;
  /** When the file system call it serves began (see CallOptions). */
  startedMs?: number;
}

function entry(reply: EntryReply): Entry {
  check(reply.errno);
  return {
    attr: reply.attr!, layout: reply.layout, inlined: reply.inlined ?? false, inlineData: reply.inlineData ?? Buffer.alloc(0),
    created: reply.created ?? false, cacheMs: reply.cacheMs ?? 0, delegation: reply.delegation,
  };
}

const EMPTY = Buffer.alloc(0);

function fresh(reply: AttrReply): Fresh {
  check(reply.errno);
  return { attr: reply.attr!, cacheMs: reply.cacheMs ?? 0 };
}

/** Creates a node made under delegations and has not sent yet (src/vfs/delegations.ts). */
export interface PendingCreates {
  /** Before a call: waits until the service knows what the call may name;
   *  returns the creates a CommitWrite takes along. */
  before(method: keyof MetaMethods, request: unknown): Promise<DelegatedCreate[] | null> | null;
  /** The call that carries creates: what becomes of them follows its reply. */
  carry<T extends { errno: number; failed?: FailedCreate[] }>(creates: DelegatedCreate[], call: Promise<T>): Promise<T>;
}

export class MetaClient {
  readonly rpc: RpcChannel<MetaMethods>;
  /** Told of what each call changed (ErrnoReply.changed). */
  onChanged: ((changed: ChangedInReply) => void) | null = null;
  pendingCreates: PendingCreates | null = null;

  constructor(private readonly channel: RpcChannel<MetaMethods>) {
    this.rpc = {
      call: async (method, request, deadlineMs, options) => {
        const waiting = this.pendingCreates?.before(method, request);
        const creates = waiting ? await waiting : null;
        const reply = creates
          ? await this.pendingCreates!.carry(creates, channel.call(method, { ...request, creates }, deadlineMs, options) as unknown as Promise<MetaMethods['CommitWrite'][1]>) as unknown as MetaMethods[typeof method][1]
          : await channel.call(method, request, deadlineMs, options);
        // a refusal with the service's reasons: thrown with them (the errno stays the same)
        const message = errorMessageOf(reply);
        if (message && (reply as { errno?: number }).errno) throw new FsError((reply as { errno: number }).errno, `${message} (${errnoName((reply as { errno: number }).errno)})`);
        const changed = reply as ChangedInReply;
        if (changed.changed && changed.changed.length > 0) this.onChanged?.(changed);
        return reply;
      },
      setFsid: (fsid) => channel.setFsid(fsid),
      close: () => channel.close(),
    };
  }

  /** The metadata service of the root node (or leader) at address, over gRPC;
   *  onUnreachable: it cannot be reached, or is not the leader any more. */
  static remote(address: string, fsid: string, onUnreachable?: () => void): MetaClient {
    return new MetaClient(new RpcClient<MetaMethods>(address, 'Meta', fsid, META_DEADLINE_MS, onUnreachable));
  }

  /** The service moved (a new metadata leader): calls go there. */
  moveTo(address: string): void {
    this.channel.moveTo?.(address);
  }

  setFsid(fsid: string): void {
    this.rpc.setFsid(fsid);
  }

  /** How long this node may still use what the service granted it. */
  leaseRemainingMs(): number {
    return this.channel.leaseRemainingMs?.() ?? Infinity;
  }

  /** Registration answers with errno and a reason rather than throwing: the caller reports it. */
  register(request: RegisterRequest, deadlineMs?: number): Promise<RegisterReply> {
    return this.rpc.call('Register', request, deadlineMs);
  }

  async listNodes(): Promise<NodeInfo[]> {
    return (await this.rpc.call('ListNodes', {})).nodes;
  }

  /** kdfs node add | remove | maintenance (NODE_* ops). */
  async nodeAdmin(op: number, ids: number[]): Promise<void> {
    check((await this.rpc.call('NodeAdmin', { op, ids })).errno);
  }

  /** The members' key of the data channel. */
  async dataKey(): Promise<{ key: Buffer; epoch: number }> {
    const reply = await this.rpc.call('DataKey', {});
    check(reply.errno);
    return { key: Buffer.from(reply.key ?? []), epoch: reply.epoch ?? 0 };
  }

  /** The scheduler's state (SCHEDULER_* ops); throws FsError with the errno of a refused change. */
  async scheduler(op: number, json = '', nodeId = 0): Promise<MetaMethods['Scheduler'][1]> {
    const reply = await this.rpc.call('Scheduler', { op, json, nodeId });
    check(reply.errno);
    return { errno: 0, config: reply.config ?? '', values: reply.values ?? '', weights: reply.weights ?? '' };
  }

  /** kdfs rebalance start | stop | status (REBALANCE_* ops); the progress of moves. */
  async rebalance(op: number): Promise<MetaMethods['Rebalance'][1]> {
    const reply = await this.rpc.call('Rebalance', { op });
    check(reply.errno);
    const progress = (p: MoveProgress | null): MoveProgress => ({
      state: (p?.state || 'idle') as MoveProgress['state'], objectsMoved: p?.objectsMoved ?? 0, bytesMoved: p?.bytesMoved ?? 0,
      objectsLeft: p?.objectsLeft ?? 0, bytesLeft: p?.bytesLeft ?? 0, bytesPerS: p?.bytesPerS ?? 0, filesWaiting: p?.filesWaiting ?? 0,
      message: p?.message ?? '', startedSec: p?.startedSec ?? 0, draining: p?.draining ?? [], passes: p?.passes ?? 0,
    });
    return {
      errno: 0, message: '', rebalance: progress(reply.rebalance), drain: progress(reply.drain),
      shares: (reply.shares ?? []).map((s) => ({ id: s.id, storedBytes: s.storedBytes ?? 0, share: s.share ?? 0, targetShare: s.targetShare ?? 0 })),
    };
  }

  /** Degraded objects over the whole file system, and up to inosMax of the files that have them. */
  async health(inosMax: number, deadlineMs?: number, countCopies = false): Promise<MetaMethods['Health'][1]> {
    const reply = await this.rpc.call('Health', { inosMax, countCopies }, deadlineMs);
    check(reply.errno);
    // decoded defaults live on the prototype: named one by one
    return {
      errno: 0, degradedObjects: reply.degradedObjects ?? 0, repairingObjects: reply.repairingObjects ?? 0,
      degradedInos: reply.degradedInos ?? [], repairedCopies: reply.repairedCopies ?? 0,
      nodeCopies: (reply.nodeCopies ?? []).map((n) => ({ id: n.id, copies: n.copies ?? 0, lastCopies: n.lastCopies ?? 0, belowR: n.belowR ?? 0 })),
    };
  }

  async statfs(): Promise<StatfsReply> {
    const reply = await this.rpc.call('Statfs', {});
    check(reply.errno);
    return reply;
  }

  async getattr(target: Target): Promise<Fresh> {
    return fresh(await this.rpc.call('Getattr', target));
  }

  async setattr(request: SetattrRequest): Promise<Fresh> {
    return fresh(await this.rpc.call('Setattr', request));
  }

  async create(request: CreateRequest): Promise<Entry> {
    return entry(await this.rpc.call('Create', request));
  }

  /** Inode numbers for this node's delegated creates: the first of count. */
  async reserveInos(count: number): Promise<{ inoFirst: number; inoCount: number }> {
    const reply = await this.rpc.call('ReserveInos', { count });
    check(reply.errno);
    return reply;
  }

  /** Creates made under delegations, sent on their own. */
  publish(creates: DelegatedCreate[]): Promise<PublishReply> {
    return this.rpc.call('Publish', { creates });
  }

  async remove(entry: Target, directory: boolean): Promise<void> {
    check((await this.rpc.call('Remove', { entry, directory })).errno);
  }

  async rename(from: Target, to: Target, flags = 0): Promise<void> {
    check((await this.rpc.call('Rename', { from, to, flags })).errno);
  }

  async link(inode: Target, entry: Target): Promise<Fresh> {
    return fresh(await this.rpc.call('Link', { inode, entry }));
  }

  /** One page of a directory after `after`. */
  async readDir(target: Target, after: string): Promise<ReadDirReply> {
    const reply = await this.rpc.call('ReadDir', { target, after, limit: 0 });
    check(reply.errno);
    return reply;
  }

  /** One page of a directory after `after`, with its entries' attributes and
   *  how long they and the directory's entries are granted (see Coherence). */
  async readDirPlus(dir: number, after: string): Promise<ReadDirReply> {
    const reply = await this.rpc.call('ReadDir', { target: { ino: dir }, after, limit: 0, plus: true });
    check(reply.errno);
    return reply;
  }

  async readLink(target: Target): Promise<string> {
    const reply = await this.rpc.call('ReadLink', target);
    check(reply.errno);
    return reply.target;
  }

  async open(target: Target, nodeId: number): Promise<Entry> {
    return entry(await this.rpc.call('Open', { target, nodeId }));
  }

  /** The node closed its last handle of each of these inodes, and opened the
   *  others without a call (opens first). */
  async close(inos: number[], nodeId: number, opens: number[] = []): Promise<void> {
    check((await this.rpc.call('Close', { ino: 0, nodeId, inos, opens })).errno);
  }

  /** inline: the whole content of a file still inlined, as this node has it,
   *  and the ranges it wrote (EAGAIN if it is inlined no longer; inlineMerged:
   *  other nodes' writes made the content other than inline.content);
   *  allocatedBytes: what the file's objects take on disk, if measured;
   *  staleSlots: copies of the file's objects that missed the writes (see Layout.stale);
   *  spilledContent: the inlined content this node wrote to the objects (EAGAIN if
   *  it is other now, or another node spilled the file). */
  async commitWrite(ino: number, size: number, mtime: Timespec | null, sync: boolean, more: CommitMore = {}): Promise<Fresh & { inlineMerged: boolean }> {
    const { inline = null, allocatedBytes = null, staleSlots = [], spilledContent = null } = more;
    const reply = await this.rpc.call('CommitWrite', {
      ino, size, mtime, sync, inlined: inline !== null, inlineData: inline?.content,
      ...(spilledContent ? { spilled: true, spilledContent } : {}),
      // never none: a node that sends patches is merged, not taken as the whole content
      inlinePatches: inline ? (inline.patches.length > 0 ? inline.patches : [{ offset: 0, data: EMPTY }]) : undefined,
      allocatedKnown: allocatedBytes !== null, allocatedBytes: allocatedBytes ?? 0, staleSlots,
    }, undefined, { startedMs: more.startedMs });
    return { ...fresh(reply), inlineMerged: reply.inlineMerged === true };
  }

  /** Repairs the file's copies now, as far as the live nodes allow. */
  async repair(ino: number, deadlineMs?: number): Promise<void> {
    check((await this.rpc.call('Repair', { ino }, deadlineMs)).errno);
  }

  /** Copies of the file's objects not to read until repaired. */
  async markStale(ino: number, slots: number[]): Promise<void> {
    check((await this.rpc.call('MarkStale', { ino, slots })).errno);
  }

  /** startedMs: when the file system call it serves began (see CallOptions). */
  async sync(startedMs?: number): Promise<void> {
    check((await this.rpc.call('Sync', {}, undefined, { startedMs })).errno);
  }

  async getXattr(target: Target, name: string): Promise<Buffer> {
    const reply = await this.rpc.call('GetXattr', { target, name });
    check(reply.errno);
    return reply.value;
  }

  async setXattr(target: Target, name: string, value: Uint8Array, flags: number): Promise<void> {
    check((await this.rpc.call('SetXattr', { target, name, value, flags })).errno);
  }

  async listXattr(target: Target): Promise<string[]> {
    const reply = await this.rpc.call('ListXattr', { target });
    check(reply.errno);
    return reply.names;
  }

  async removeXattr(target: Target, name: string): Promise<void> {
    check((await this.rpc.call('RemoveXattr', { target, name })).errno);
  }

  async setStripe(target: Target, policy: StripePolicy): Promise<void> {
    check((await this.rpc.call('SetStripe', { target, policy })).errno);
  }

  async getStripe(target: Target): Promise<StripeReply> {
    const reply = await this.rpc.call('GetStripe', target);
    check(reply.errno);
    return reply;
  }

  /** An O_APPEND write, made at the end of the file by the service. */
  async append(ino: number, data: Uint8Array): Promise<Fresh> {
    return fresh(await this.rpc.call('Append', { ino, data }));
  }

  lock(request: LockRequest): Promise<LockReply> {
    // a wait lasts as long as the holder keeps the lock
    return this.rpc.call('Lock', request, request.wait ? LOCK_WAIT_DEADLINE_MS : undefined);
  }

  async cancelLock(waitId: number): Promise<void> {
    check((await this.rpc.call('CancelLock', { waitId })).errno);
  }

  reclaimLocks(locks: LockRequest[]): Promise<{ errno: number }> {
    return this.rpc.call('ReclaimLocks', { locks });
  }

  disconnect(): void {
    this.rpc.close();
  }
}
