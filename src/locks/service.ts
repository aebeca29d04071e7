// The lock service of the metadata service: the cluster's lock table, with the
// life of the nodes that hold locks. A node whose session is gone for
// LOCK_LEASE_MS loses its locks (it is dead, or cut off: its processes cannot be
// told); a node that restarted (a new incarnation) loses them at once. After the
// service itself restarts (or another node takes over the metadata), nodes give
// back the locks they hold (ReclaimLocks), and nobody is granted a new one until
// every member did: never two holders of one lock. A member with no session
// RECLAIM_ABSENT_MS after the start is taken as gone, its locks lapsed as after
// a session ended (a dead old leader's node never reclaims: waiting for it made
// every lock after a failover wait LOCK_RECLAIM_MS); a member with a session is
// waited for, at most until LOCK_RECLAIM_MS.
import { E, FsError } from '../common/errno.js';
import { log } from '../common/log.js';
import { CACHE_LEASE_MS } from '../meta/coherence.js';
import type { LockReply, LockRequest } from '../rpc/messages.js';
import { LockTable, checkLock } from './table.js';

/** How long a node's locks outlive its session. */
export const LOCK_LEASE_MS = CACHE_LEASE_MS;
/** How long after a start the service waits for the nodes to reclaim their locks, at most. */
export const LOCK_RECLAIM_MS = 15_000;
/** A member without a session this long after the start reclaims nothing: the
 *  lease of a node's locks, and a margin for its reconnection. */
const RECLAIM_ABSENT_MS = LOCK_LEASE_MS + 250;

export class LockService {
  readonly table = new LockTable();
  private readonly incarnations = new Map<number, string>();
  private readonly lapsing = new Map<number, NodeJS.Timeout>();
  private readonly reclaimed = new Set<number>();
  private graceOver = false;
  private readonly graceTimer: NodeJS.Timeout;
  private readonly absentTimer: NodeJS.Timeout;
  /** RECLAIM_ABSENT_MS passed: members without a session are not waited for. */
  private absentGone = false;
  private readonly afterGrace: (() => void)[] = [];

  /** members: the node ids that may hold locks (the file system's members). */
  constructor(private readonly members: () => number[]) {
    this.graceTimer = setTimeout(() => this.endGrace('reclaim period over'), LOCK_RECLAIM_MS);
    this.graceTimer.unref();
    this.absentTimer = setTimeout(() => {
      this.absentGone = true;
      this.endGraceIfReclaimed();
    }, RECLAIM_ABSENT_MS);
    this.absentTimer.unref();
  }

  close(): void {
    clearTimeout(this.graceTimer);
    clearTimeout(this.absentTimer);
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
    this.endGraceIfReclaimed();
  }

  /** Ends the reclaim period once every member reclaimed, or every member
   *  with a session did and the others are taken as gone. */
  private endGraceIfReclaimed(): void {
    if (this.graceOver) return;
    const waitedFor = this.members().filter((id) => !this.reclaimed.has(id));
    if (waitedFor.length === 0) this.endGrace('every node reclaimed its locks');
    else if (this.absentGone && waitedFor.every((id) => !this.incarnations.has(id))) {
      this.endGrace(`every node present reclaimed its locks; node(s) ${waitedFor.join(', ')} absent since the start: theirs lapsed`);
    }
  }

  private endGrace(why: string): void {
    if (this.graceOver) return;
    this.graceOver = true;
    clearTimeout(this.graceTimer);
    clearTimeout(this.absentTimer);
    log.info(`file locks: ${why}`);
    for (const resume of this.afterGrace.splice(0)) resume();
  }
}

/** Lock calls come from nodes only. */
export function lockCaller(caller: { nodeId: number } | undefined): number {
  if (!caller?.nodeId) throw new FsError(E.EINVAL, 'locks are taken by nodes, on their sessions');
  return caller.nodeId;
}
