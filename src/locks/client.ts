// A node's side of the cluster's file locks: its FUSE lock requests go to the
// lock service, and the locks granted are remembered, to be given back after
// the service restarts (ReclaimLocks). Taking a lock revalidates what the node
// caches of the file, and releasing one first commits what the node wrote to
// it: what one holder wrote is what the next one reads, as on NFS.
import { check } from '../common/errno.js';
import { log } from '../common/log.js';
import type { MetaClient } from '../meta/client.js';
import { F_UNLCK, LOCK_FLOCK, LOCK_POSIX, type LockReply, type LockRequest } from '../rpc/messages.js';

/** Ranges remembered per lock owner and file for reclaiming (what the owner
 *  holds, not what it asked: unlocks and relocks take no room); past it the
 *  oldest are forgotten, and said so. */
const REMEMBERED_PER_OWNER_MAX = 4096;

export interface LockHooks {
  /** A lock was granted: drop what the node caches of the file. */
  granted(ino: number): Promise<void>;
  /** A lock is about to be released: what the node wrote must be committed. */
  releasing(ino: number): Promise<void>;
}

export class NodeLocks {
  private readonly held = new Map<string, LockRequest[]>();
  /** The open file descriptions (FUSE file handles) each POSIX lock owner took
   *  locks through: an owner seen through one only may be an OFD lock's, which
   *  goes with the description's last close. */
  private readonly handlesOf = new Map<string, Set<number>>();
  /** ...and the other way round: the owners seen through each handle. */
  private readonly ownersOf = new Map<number, Set<string>>();
  private nextWaitId = 1;

  constructor(private readonly meta: MetaClient, private readonly hooks: LockHooks) {}

  /** F_GETLK: the conflicting lock, or type F_UNLCK. */
  async test(request: Omit<LockRequest, 'test' | 'wait'>): Promise<LockReply> {
    const reply = await this.meta.lock({ ...request, test: true });
    check(reply.errno);
    return reply;
  }

  /** F_SETLK(W), flock: waits if `wait`, until granted or cancelled (EINTR) with
   *  the wait id handed to onWait. */
  async set(request: Omit<LockRequest, 'test' | 'waitId'>, onWait?: (waitId: number) => void, fh?: number): Promise<void> {
    if (fh !== undefined && request.kind === LOCK_POSIX && request.type !== F_UNLCK) {
      const k = key(request.ino, LOCK_POSIX, request.owner);
      let handles = this.handlesOf.get(k);
      if (!handles) this.handlesOf.set(k, (handles = new Set()));
      handles.add(fh);
      let owners = this.ownersOf.get(fh);
      if (!owners) this.ownersOf.set(fh, (owners = new Set()));
      owners.add(k);
    }
    if (request.type === F_UNLCK) await this.hooks.releasing(request.ino);
    const waitId = this.nextWaitId++;
    onWait?.(waitId);
    const reply = await this.meta.lock({ ...request, waitId });
    check(reply.errno);
    this.remember(request);
    if (request.type !== F_UNLCK) await this.hooks.granted(request.ino);
  }

  /** The process waiting was interrupted: its wait answers EINTR. */
  cancel(waitId: number): void {
    this.meta.cancelLock(waitId).catch((err) => log.warn(`cancelling a lock wait: ${(err as Error).message}`));
  }

  /** A close(2) by a lock owner (a process's file table): its POSIX locks on the
   *  file go, as on Linux, whichever of its descriptors of the file it closed. */
  async releasePosix(ino: number, owner: string): Promise<void> {
    if (!this.held.has(key(ino, LOCK_POSIX, owner))) return;
    await this.set({ ino, owner, kind: LOCK_POSIX, type: F_UNLCK, start: 0, end: -1, pid: 0 });
  }

  /** The last close of an open file description: the locks of an owner that
   *  used only it go (an OFD lock's owner is the description; a process's locks
   *  went already with the close(2) that preceded, see releasePosix). */
  async releaseHandle(ino: number, fh: number): Promise<void> {
    const owners = this.ownersOf.get(fh);
    if (!owners) return;
    this.ownersOf.delete(fh);
    for (const k of owners) {
      const handles = this.handlesOf.get(k);
      if (!handles?.delete(fh) || handles.size > 0) continue;
      this.handlesOf.delete(k);
      await this.releasePosix(ino, k.slice(k.lastIndexOf(':') + 1));
    }
  }

  /** The last close of an open file description: its flock goes. */
  async releaseFlock(ino: number, owner: string): Promise<void> {
    if (!this.held.has(key(ino, LOCK_FLOCK, owner))) return;
    await this.set({ ino, owner, kind: LOCK_FLOCK, type: F_UNLCK, start: 0, end: -1, pid: 0 });
  }

  /** Gives back to the lock service every lock this node holds (after it restarted). */
  async reclaim(): Promise<void> {
    const locks = [...this.held.values()].flat().map((request) => ({ ...request, reclaim: true, wait: false }));
    check((await this.meta.reclaimLocks(locks)).errno);
  }

  private remember(request: Omit<LockRequest, 'test' | 'waitId'>): void {
    const k = key(request.ino, request.kind, request.owner);
    const whole = request.kind === LOCK_FLOCK || (request.start === 0 && request.end === -1);
    if (request.type === F_UNLCK && whole) {
      this.held.delete(k);
      if (request.kind === LOCK_POSIX) this.handlesOf.delete(k);
      return;
    }
    // what the owner held in the range is replaced (POSIX: a lock or an unlock
    // of a range changes the owner's locks there, and nowhere else)
    const list = whole ? [] : withoutRange(this.held.get(k) ?? [], request.start, request.end);
    if (request.type !== F_UNLCK) list.push({ ...request, wait: false });
    if (list.length === 0) {
      this.held.delete(k);
      return;
    }
    if (list.length > REMEMBERED_PER_OWNER_MAX) {
      list.splice(0, list.length - REMEMBERED_PER_OWNER_MAX);
      log.warn(`inode ${request.ino}: more than ${REMEMBERED_PER_OWNER_MAX} lock ranges of one owner; the oldest will not be reclaimed after a restart of the root`);
    }
    this.held.set(k, list);
  }
}

const key = (ino: number, kind: number, owner: string) => `${ino}:${kind}:${owner}`;

/** The ranges held, cut where they meet [start, end] (inclusive; end -1: to the end of the file). */
export function withoutRange<T extends { start: number; end: number }>(held: T[], start: number, end: number): T[] {
  const last = end < 0 ? Infinity : end;
  const kept: T[] = [];
  for (const range of held) {
    const rangeLast = range.end < 0 ? Infinity : range.end;
    if (rangeLast < start || range.start > last) {
      kept.push(range);
      continue;
    }
    if (range.start < start) kept.push({ ...range, end: start - 1 });
    if (rangeLast > last) kept.push({ ...range, start: last + 1 });
  }
  return kept;
}

