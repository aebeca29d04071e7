// The lock service of the metadata service: the cluster's lock table, with the
// life of the nodes that hold locks. A node whose session is gone for
// LOCK_LEASE_MS loses its locks (it is dead, or cut off: its processes cannot be
// told); a node that restarted (a new incarnation) loses them at once. After the
// service itself restarts, nodes give back the locks they hold (ReclaimLocks)
// and nobody is granted a new one until every member did, or LOCK_RECLAIM_MS
// passed: never two holders of one lock.
import { E, FsError } from '../common/errno.js';
import { log } from '../common/log.js';
import { CACHE_LEASE_MS } from '../meta/coherence.js';
import type { LockReply, LockRequest } from '../rpc/messages.js';
import { LockTable, checkLock } from './table.js';

/** How long a node's locks outlive its session. */
export const LOCK_LEASE_MS = CACHE_LEASE_MS;
/** How long after a start the service waits for the nodes to reclaim their locks. */
export const LOCK_RECLAIM_MS = 15_000;

export class LockService {
  readonly table = new LockTable();
  private readonly incarnations = new Map<number, string>();
  private readonly lapsing = new Map<number, NodeJS.Timeout>();
  private readonly reclaimed = new Set<number>();
  private graceOver = false;
  private readonly graceTimer: NodeJS.Timeout;
  private readonly afterGrace: (() => void)[] = [];

  /** members: the node ids that may hold locks (the file system's members). */
  constructor(private readonly members: () => number[]) {
    this.graceTimer = setTimeout(() => this.endGrace('reclaim period over'), LOCK_RECLAIM_MS);
    this.graceTimer.unref();
  }

  close(): void {
    clearTimeout(this.graceTimer);
    for (const timer of this.lapsing.values()) clearTimeout(timer);
    this.lapsing.clear();
  }

  sessionOpened(nodeId: number, incarnation: string): void {
    const timer = this.lapsing.get(nodeId);
    if (timer) clearTimeout(timer);
    this.lapsing.delete(nodeId);
    const known = this.incarnations.get(nodeId);
    // a restarted node process: whatever its predecessor held is gone with its processes
    if (known !== undefined && known !== incarnation) this.table.releaseNode(nodeId);
    this.incarnations.set(nodeId, incarnation);
  }

  sessionClosed(nodeId: number): void {
    this.table.dropWaiters(nodeId);
    if (this.lapsing.has(nodeId)) return;
    const timer = setTimeout(() => {
      this.lapsing.delete(nodeId);
      if (this.table.heldBy(nodeId).length > 0) log.warn(`node ${nodeId} is gone: its file locks are released`);
      this.table.releaseNode(nodeId);
    }, LOCK_LEASE_MS);
    timer.unref();
    this.lapsing.set(nodeId, timer);
  }

  async lock(nodeId: number, request: LockRequest): Promise<LockReply> {
    checkLock(request);
    if (!this.graceOver && !request.reclaim) await new Promise<void>((resolve) => this.afterGrace.push(resolve));
    return new Promise((resolve) => {
      const now = this.table.request(nodeId, request, resolve);
      if (now) resolve(now);
    });
  }

  cancel(nodeId: number, waitId: number): void {
    this.table.cancel(nodeId, waitId);
  }

  /** A node gives back what it held before the service restarted. */
  reclaim(nodeId: number, locks: LockRequest[]): void {
    for (const request of locks) {
      try {
        checkLock(request);
      } catch {
        continue;
      }
      // field by field: a decoded message keeps its defaults (0) on its prototype, which a spread loses
      const held = {
        ino: request.ino, owner: request.owner, kind: request.kind, type: request.type, start: request.start, end: request.end,
        pid: request.pid, wait: false, test: false,
      };
      const reply = this.table.request(nodeId, held, () => {});
      if (reply?.errno) log.warn(`node ${nodeId} could not reclaim a lock of inode ${request.ino}: ${reply.errno === E.EAGAIN ? 'held by another' : reply.errno}`);
    }
    this.reclaimed.add(nodeId);
    if (locks.length > 0) log.info(`node ${nodeId} reclaimed ${locks.length} file lock(s)`);
    if (this.members().every((id) => this.reclaimed.has(id))) this.endGrace('every node reclaimed its locks');
  }

  private endGrace(why: string): void {
    if (this.graceOver) return;
    this.graceOver = true;
    clearTimeout(this.graceTimer);
    log.info(`file locks: ${why}`);
    for (const resume of this.afterGrace.splice(0)) resume();
  }
}

/** Lock calls come from nodes only. */
export function lockCaller(caller: { nodeId: number } | undefined): number {
  if (!caller?.nodeId) throw new FsError(E.EINVAL, 'locks are taken by nodes, on their sessions');
  return caller.nodeId;
}
