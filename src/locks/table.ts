// The file locks of the whole cluster, as one Linux machine keeps them: POSIX
// record locks (fcntl F_SETLK, OFD locks) and BSD locks (flock), which do not
// conflict with each other. A lock belongs to an owner on a node (FUSE's lock
// owner: a process's file table, or an open file description). Pure logic: the
// service (./service.ts) feeds it requests and node events.
import { E, FsError } from '../common/errno.js';
import { F_UNLCK, F_WRLCK, LOCK_FLOCK, type LockReply, type LockRequest } from '../rpc/messages.js';

/** Locks held in the whole cluster, and requests waiting, at most. */
export const LOCKS_MAX = 1_000_000;
export const LOCK_WAITERS_MAX = 65_536;

const TO_END = Number.MAX_SAFE_INTEGER;

export interface HeldLock {
  nodeId: number;
  owner: string;
  kind: number;
  type: number; // F_RDLCK or F_WRLCK
  start: number;
  end: number; // inclusive; TO_END for "to the end of the file"
  pid: number;
}

interface Waiter {
  nodeId: number;
  request: LockRequest;
  resolve: (reply: LockReply) => void;
}

const endOf = (request: LockRequest) => (request.end < 0 ? TO_END : request.end);

function conflicts(held: HeldLock, nodeId: number, request: LockRequest): boolean {
  if (held.kind !== request.kind) return false;
  if (held.nodeId === nodeId && held.owner === request.owner) return false;
  if (held.type !== F_WRLCK && request.type !== F_WRLCK) return false;
  if (request.kind === LOCK_FLOCK) return true;
  return held.start <= endOf(request) && request.start <= held.end;
}

export class LockTable {
  private readonly locks = new Map<number, HeldLock[]>();
  private readonly waiters = new Map<number, Waiter[]>();
  private lockCount = 0;
  private waiterCount = 0;

  /** The first lock that keeps the request from being granted, if any. */
  conflict(nodeId: number, request: LockRequest): HeldLock | null {
    for (const held of this.locks.get(request.ino) ?? []) if (conflicts(held, nodeId, request)) return held;
    return null;
  }

  /** Grants, tests or releases at once; with wait, a conflicting request waits
   *  (resolve is called when it is granted or cancelled). Returns the reply when
   *  there is one now, null when it waits. */
  request(nodeId: number, request: LockRequest, resolve: (reply: LockReply) => void): LockReply | null {
    if (request.test) {
      const held = request.type === F_UNLCK ? null : this.conflict(nodeId, request);
      if (!held) return { errno: 0, type: F_UNLCK, start: 0, end: 0, pid: 0, nodeId: 0 };
      return { errno: 0, type: held.type, start: held.start, end: held.end === TO_END ? -1 : held.end, pid: held.pid, nodeId: held.nodeId };
    }
    if (request.type !== F_UNLCK && this.conflict(nodeId, request)) {
      if (!request.wait) return { errno: E.EAGAIN };
      if (this.waiterCount >= LOCK_WAITERS_MAX) return { errno: E.ENOLCK };
      let queue = this.waiters.get(request.ino);
      if (!queue) this.waiters.set(request.ino, (queue = []));
      queue.push({ nodeId, request, resolve });
      this.waiterCount++;
      return null;
    }
    const errno = this.apply(nodeId, request);
    this.wake(request.ino);
    return { errno };
  }

  /** Ends the wait named waitId of a node: it answers EINTR. */
  cancel(nodeId: number, waitId: number): void {
    for (const [ino, queue] of this.waiters) {
      const index = queue.findIndex((w) => w.nodeId === nodeId && w.request.waitId === waitId);
      if (index < 0) continue;
      const [waiter] = queue.splice(index, 1);
      this.waiterCount--;
      if (queue.length === 0) this.waiters.delete(ino);
      waiter.resolve({ errno: E.EINTR });
      return;
    }
  }

  /** The node is gone (or restarted): its locks are released, its waits dropped. */
  releaseNode(nodeId: number): void {
    const touched = new Set<number>();
    for (const [ino, held] of this.locks) {
      const kept = held.filter((l) => l.nodeId !== nodeId);
      if (kept.length === held.length) continue;
      this.lockCount -= held.length - kept.length;
      if (kept.length > 0) this.locks.set(ino, kept);
      else this.locks.delete(ino);
      touched.add(ino);
    }
    this.dropWaiters(nodeId);
    for (const ino of touched) this.wake(ino);
  }

  /** The node's session ended: its waits cannot be answered any more (it sends them again). */
  dropWaiters(nodeId: number): void {
    for (const [ino, queue] of this.waiters) {
      const kept = queue.filter((w) => w.nodeId !== nodeId);
      this.waiterCount -= queue.length - kept.length;
      if (kept.length > 0) this.waiters.set(ino, kept);
      else this.waiters.delete(ino);
    }
  }

  /** Locks held by a node (for tests and status). */
  heldBy(nodeId: number): HeldLock[] {
    return [...this.locks.values()].flat().filter((l) => l.nodeId === nodeId);
  }

  /** Sets the owner's lock over the request's range (POSIX: replacing, splitting
   *  what it held there) or on the file (flock); F_UNLCK removes. */
  private apply(nodeId: number, request: LockRequest): number {
    const held = this.locks.get(request.ino) ?? [];
    const start = request.start;
    const end = endOf(request);
    const mine = (l: HeldLock) => l.nodeId === nodeId && l.owner === request.owner && l.kind === request.kind;
    const next: HeldLock[] = [];
    for (const lock of held) {
      if (!mine(lock)) {
        next.push(lock);
        continue;
      }
      if (request.kind === LOCK_FLOCK) continue; // one flock per owner: replaced
      if (lock.end < start || lock.start > end) {
        next.push(lock);
        continue;
      }
      // the parts of the old lock outside the new range stay
      if (lock.start < start) next.push({ ...lock, end: start - 1 });
      if (lock.end > end) next.push({ ...lock, start: end + 1 });
    }
    if (request.type !== F_UNLCK) {
      next.push({ nodeId, owner: request.owner, kind: request.kind, type: request.type, start, end, pid: request.pid });
    }
    const added = next.length - held.length;
    if (added > 0 && this.lockCount + added > LOCKS_MAX) return E.ENOLCK;
    this.lockCount += added;
    if (next.length > 0) this.locks.set(request.ino, next);
    else this.locks.delete(request.ino);
    return 0;
  }

  /** Grants what waits on ino and no longer conflicts, in arrival order. */
  private wake(ino: number): void {
    const queue = this.waiters.get(ino);
    if (!queue) return;
    for (let i = 0; i < queue.length; ) {
      const waiter = queue[i];
      if (this.conflict(waiter.nodeId, waiter.request)) {
        i++;
        continue;
      }
      queue.splice(i, 1);
      this.waiterCount--;
      waiter.resolve({ errno: this.apply(waiter.nodeId, waiter.request) });
    }
    if (queue.length === 0) this.waiters.delete(ino);
  }
}

/** A request's fields, checked. */
export function checkLock(request: LockRequest): void {
  const validRange = Number.isSafeInteger(request.start) && request.start >= 0 && Number.isSafeInteger(request.end) &&
    (request.end === -1 || request.end >= request.start);
  if (!Number.isSafeInteger(request.ino) || request.ino <= 0 || !validRange || request.type > F_UNLCK || request.kind > LOCK_FLOCK) {
    throw new FsError(E.EINVAL, 'bad lock request');
  }
}
