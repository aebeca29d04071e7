// Cache coherence of the nodes. The metadata service remembers what it told each
// node it may cache (grants: the attributes of an inode, the entries of a
// directory), for GRANT_MS. Before a change that makes a grant wrong is
// acknowledged, the service calls the node back to drop it, and waits for its
// answer at most until the grant expires or the node's lease does. A node's
// lease runs CACHE_LEASE_MS from when the service last heard from it (it pings
// every second): a node uses what it was granted only while its lease holds, and
// gives its kernel no timeout past its lease. So a dead or stopped node delays a
// change by CACHE_LEASE_MS at most, and its kernel's copy has expired by then.
//
// A grant is only given for what is still current once the reply is made: a
// change committed after the transaction that read it (store sequence numbers)
// makes the reply uncacheable, so that no grant outlives a change it missed.
import assert from 'node:assert';
import { log } from '../common/log.js';
import { within } from '../common/within.js';
import {
  CHANGED_MTIME, CHANGED_SIZE, INVALIDATE_ATTR, INVALIDATE_DATA, INVALIDATE_DELEGATION, INVALIDATE_ENTRY, type Invalidation,
} from '../rpc/messages.js';

/** A node's lease: how long after the service last heard from it a node may use
 *  what it was granted, and the longest a node's kernel caches without asking. */
export const CACHE_LEASE_MS = 4000;
/** How long a grant lasts (the node renews its lease meanwhile). */
export const GRANT_MS = 60_000;
/** Slack for the time a reply takes to reach the node's kernel. */
const DELIVERY_MARGIN_MS = 250;
/** Grants remembered in all; past it, replies are not cacheable (memory bound). */
export const GRANTS_MAX = 500_000;
/** Grants one node may hold: a node walking a huge tree (a listing grants up to
 *  1,024 entries per call) leaves the rest of the table to the other nodes. */
export const GRANTS_PER_NODE_MAX = GRANTS_MAX / 2;
const SWEEP_INTERVAL_MS = 10_000;
/** How long a delegation lasts (renewed by the node's next synchronous create). */
export const DELEGATION_MS = 30_000;
/** After a recall, the directory is shared: no delegation of it for this long. */
const CONTENDED_MS = 10_000;
/** Delegations held in all, at most (memory bound). */
const DELEGATIONS_MAX = 65_536;

/** A callback on its way: done once the node's kernel dropped what it names;
 *  taken once the node itself did (it answers nothing from it any more, and
 *  turns away what its kernel still holds of it: see Vfs.invalidate); done
 *  implies taken. Both reject if the node cannot be told. */
export interface CallbackReply {
  taken: Promise<void>;
  done: Promise<void>;
}

/** The reply of a callback handled by `handle`, which calls taken when it has. */
export function callbackReply(handle: (taken: () => void) => Promise<void>): CallbackReply {
  let taken!: () => void;
  const takenPromise = new Promise<void>((resolve) => (taken = resolve));
  const done = handle(taken);
  done.then(taken, taken);
  return { taken: takenPromise, done };
}

/** What a node answers callbacks with. */
export interface CallbackTarget {
  readonly nodeId: number;
  callback(items: Invalidation[]): CallbackReply;
  /** Until when the node may use its grants: CACHE_LEASE_MS after it was last heard from. */
  leaseUntilMs(): number;
}

/** What the request whose changes are called back holds in its node's kernel
 *  while it waits: a directory lock (a request that adds names there, or one
 *  that removes or replaces names), or none that a callback waits for. */
export type Holding = 'adds' | 'removes' | 'nothing';

/** Requests of one node being served that wait for callbacks while its kernel
 *  holds a directory lock, which a callback to that node may wait for. */
interface Waiting {
  adds: number;
  removes: number;
  /** Callbacks to the node that stop waiting once such a request begins (see callBack). */
  onBegin: Set<() => void>;
}

/** What a transaction changed: inodes (with why) and directory entries. */
export class Changes {
  readonly inodes = new Map<number, { data: boolean; reasons: number; size: number }>();
  readonly entries: { parent: number; name: string }[] = [];
  /** Directories that moved, by their old entry (parent/name): where they went. */
  readonly movedDirs = new Map<string, { parent: number; name: string }>();

  inode(ino: number, data: boolean, reasons: number, size: number): void {
    const known = this.inodes.get(ino);
    if (known) {
      known.data ||= data;
      known.reasons |= reasons;
      known.size = size;
    } else {
      this.inodes.set(ino, { data, reasons, size });
    }
  }

  entry(parent: number, name: string): void {
    this.entries.push({ parent, name });
  }

  /** The directory that was name in parent is newName in newParent now. */
  dirMoved(parent: number, name: string, newParent: number, newName: string): void {
    this.movedDirs.set(`${parent}/${name}`, { parent: newParent, name: newName });
  }

  get empty(): boolean {
    return this.inodes.size === 0 && this.entries.length === 0;
  }
}

export { CHANGED_MTIME, CHANGED_SIZE };

type Holders = Map<number, number>; // node id -> grant expiry (ms)

export class Coherence {
  private readonly attrs = new Map<number, Holders>();
  private readonly dirs = new Map<number, Holders>();
  private count = 0;
  /** Grants held, per node (count is their sum). */
  private readonly countByNode = new Map<number, number>();
  private readonly targets = new Map<number, CallbackTarget>();
  /** Nodes that let a callback expire: no grants until they answer one again. */
  private readonly unresponsive = new Set<number>();
  private readonly sweeper: NodeJS.Timeout;
  /** Directories whose new regular files a node makes itself (see Delegation
   *  in proto/kdfs.proto): dir -> the node, and until when. */
  private readonly delegations = new Map<number, { nodeId: number; untilMs: number }>();
  /** Directories recalled lately: shared, so not delegated again for a while. */
  private readonly contended = new Map<number, number>();
  /** Requests being served, per directory they name and node: none of those
   *  directories is delegated to another node meanwhile. */
  private readonly busy = new Map<number, Map<number, number>>();
  /** Requests being served that may touch any directory. */
  private busyAnywhere = 0;
  /** Until when nodes' kernels may still cache what an earlier instance of the
   *  service granted (a failover, a restart): grants this one does not know. */
  private unknownGrantsUntilMs = 0;
  /** By node: see Waiting and callBack. */
  private readonly waiting = new Map<number, Waiting>();

  constructor(private readonly openOn: (ino: number) => Iterable<number>) {
    this.sweeper = setInterval(() => this.sweep(Date.now()), SWEEP_INTERVAL_MS);
    this.sweeper.unref();
  }

  attach(target: CallbackTarget): void {
    this.targets.set(target.nodeId, target);
    this.unresponsive.delete(target.nodeId);
  }

  /** How long ago the node was last heard from (null: it has no session). */
  silentMs(nodeId: number): number | null {
    const target = this.targets.get(nodeId);
    return target ? Math.max(0, Date.now() - (target.leaseUntilMs() - CACHE_LEASE_MS)) : null;
  }

  target(nodeId: number): CallbackTarget | undefined {
    return this.targets.get(nodeId);
  }

  detach(target: CallbackTarget): void {
    if (this.targets.get(target.nodeId) === target) this.targets.delete(target.nodeId);
  }

  close(): void {
    clearInterval(this.sweeper);
  }

  /** This service took over from an earlier instance (a new metadata leader, a
   *  restarted root), whose grants it never saw: until every node's lease from
   *  that instance has run out, changes are acknowledged only once it has (as
   *  NFS's grace period), and nothing is delegated. */
  tookOver(): void {
    this.unknownGrantsUntilMs = Date.now() + CACHE_LEASE_MS + DELIVERY_MARGIN_MS;
  }

  /** Grants a node the attributes of ino and, if dir is given, the entries of
   *  dir; returns how long its kernel may cache them (0: not at all). */
  grant(nodeId: number, ino: number, dir: number | null): number {
    if (!this.targets.has(nodeId) || this.unresponsive.has(nodeId)) return 0;
    // renewing what a node holds takes no room
    const added = (this.attrs.get(ino)?.has(nodeId) ? 0 : 1) + (dir !== null && !this.dirs.get(dir)?.has(nodeId) ? 1 : 0);
    if (added > 0 && (this.count + added > GRANTS_MAX || this.held(nodeId) + added > GRANTS_PER_NODE_MAX)) return 0;
    const until = Date.now() + GRANT_MS + DELIVERY_MARGIN_MS;
    this.hold(this.attrs, ino, nodeId, until);
    if (dir !== null) this.hold(this.dirs, dir, nodeId, until);
    return GRANT_MS;
  }

  /** A rename by this node succeeded: its kernel moved the entry into dir
   *  (d_move), keeping the entry's timeout, which is within the node's lease.
   *  The service must call the node back about dir's entries until then, whether
   *  it granted them or not: the kernel holds the entry regardless. */
  movedInto(nodeId: number, dir: number): void {
    if (!this.targets.has(nodeId)) return;
    const untilMs = Date.now() + CACHE_LEASE_MS + DELIVERY_MARGIN_MS;
    if ((this.dirs.get(dir)?.get(nodeId) ?? 0) < untilMs) this.hold(this.dirs, dir, nodeId, untilMs);
  }

  /** Whether a node other than origin holds the attributes of ino granted (it
   *  may have opened the file without a call, see src/vfs/contentCache.ts). */
  grantedElsewhere(ino: number, origin: number): boolean {
    const now = Date.now();
    for (const [nodeId, until] of this.attrs.get(ino) ?? []) if (nodeId !== origin && until > now) return true;
    return false;
  }

  /** Delegates the creates in dir to a node, if no other node may cache or be
   *  told anything about its entries; returns for how long (0: not delegated). */
  delegate(nodeId: number, dir: number): number {
    const now = Date.now();
    if (!this.targets.has(nodeId) || this.unresponsive.has(nodeId) || this.busyAnywhere > 0 || now < this.unknownGrantsUntilMs) return 0;
    if ((this.contended.get(dir) ?? 0) > now) return 0;
    const held = this.delegations.get(dir);
    if (held && held.nodeId !== nodeId && held.untilMs > now) return 0;
    if (!held && this.delegations.size >= DELEGATIONS_MAX) return 0;
    for (const [id, until] of this.dirs.get(dir) ?? []) if (id !== nodeId && until > now) return 0;
    for (const [id, count] of this.busy.get(dir) ?? []) if (id !== nodeId && count > 0) return 0;
    this.delegations.set(dir, { nodeId, untilMs: now + DELEGATION_MS + DELIVERY_MARGIN_MS });
    return DELEGATION_MS;
  }

  /** Before a request of node origin (0: a command) that names dirs is served:
   *  recalls what other nodes hold delegated of them (of every directory if
   *  anywhere), waiting until each sent its creates, and keeps the directories
   *  from being delegated until the returned function is called. */
  async enter(dirs: number[], origin: number, anywhere: boolean): Promise<() => void> {
    for (const dir of dirs) {
      let counts = this.busy.get(dir);
      if (!counts) this.busy.set(dir, (counts = new Map()));
      counts.set(origin, (counts.get(origin) ?? 0) + 1);
    }
    if (anywhere) this.busyAnywhere++;
    const leave = () => {
      for (const dir of dirs) {
        const counts = this.busy.get(dir)!;
        const count = counts.get(origin)! - 1;
        if (count > 0) counts.set(origin, count);
        else if (counts.delete(origin) && counts.size === 0) this.busy.delete(dir);
      }
      if (anywhere) this.busyAnywhere--;
    };
    if (this.delegations.size === 0) return leave;
    const now = Date.now();
    const recalls: Promise<void>[] = [];
    for (const dir of anywhere ? [...this.delegations.keys()] : dirs) {
      const held = this.delegations.get(dir);
      if (!held || held.nodeId === origin) continue;
      this.delegations.delete(dir);
      this.contended.set(dir, now + CONTENDED_MS);
      const untilMs = Math.min(held.untilMs, (this.targets.get(held.nodeId)?.leaseUntilMs() ?? 0) + DELIVERY_MARGIN_MS);
      if (untilMs <= now) continue;
      const item = { kind: INVALIDATE_DELEGATION, ino: 0, parent: dir, name: '', reasons: 0 };
      recalls.push(this.callBack(held.nodeId, [item], untilMs, 'recall'));
    }
    try {
      await Promise.all(recalls);
    } catch (err) {
      leave();
      throw err;
    }
    return leave;
  }

  /** Calls back every node but the one that made them whose kernel may hold what
   *  the changes make wrong; resolves once they all dropped it, or their grants
   *  expired, or (see callBack) a cycle through directory locks was cut.
   *  holding: what the request that made them holds in its node's kernel. */
  async invalidate(changes: Changes, originNodeId: number, holding: Holding = 'nothing'): Promise<void> {
    const end = holding === 'nothing' ? null : this.beginWaiting(originNodeId, holding);
    try {
      await this.invalidateFor(changes, originNodeId, holding);
    } finally {
      end?.();
    }
  }

  private async invalidateFor(changes: Changes, originNodeId: number, holding: Holding): Promise<void> {
    // what an earlier instance granted is not known here: it expires first
    const unknownMs = this.unknownGrantsUntilMs - Date.now();
    if (unknownMs > 0) await new Promise((resolve) => setTimeout(resolve, unknownMs));
    const now = Date.now();
    const byNode = new Map<number, { items: Invalidation[]; untilMs: number }>();
    const add = (nodeId: number, grantUntilMs: number, item: Invalidation) => {
      if (nodeId === originNodeId) return;
      // past its lease, the node uses nothing it was granted
      const untilMs = Math.min(grantUntilMs, (this.targets.get(nodeId)?.leaseUntilMs() ?? 0) + DELIVERY_MARGIN_MS);
      if (untilMs <= now) return;
      let batch = byNode.get(nodeId);
      if (!batch) byNode.set(nodeId, (batch = { items: [], untilMs }));
      batch.items.push(item);
      batch.untilMs = Math.max(batch.untilMs, untilMs);
    };
    for (const [ino, { data, reasons, size }] of changes.inodes) {
      const item = { kind: data ? INVALIDATE_DATA : INVALIDATE_ATTR, ino, parent: 0, name: '', reasons, size };
      const holders = this.attrs.get(ino);
      if (holders) {
        for (const [nodeId, until] of holders) {
          if (until > now) add(nodeId, until, item);
          this.countDown(nodeId);
        }
        // emptied, not deleted: a key deleted and set again and again is slow
        // in a large Map (see src/common/recentMap.ts); the sweep deletes it
        holders.clear();
      }
      // a node with the file open may hold its pages, granted or not
      if (data) for (const nodeId of this.openOn(ino)) if (this.targets.has(nodeId)) add(nodeId, Infinity, item);
    }
    for (const { parent, name } of changes.entries) {
      const holders = this.dirs.get(parent);
      if (!holders) continue;
      const to = changes.movedDirs.get(`${parent}/${name}`);
      const moved = to ? { newParent: to.parent, newName: to.name } : {};
      for (const [nodeId, until] of holders) if (until > now) add(nodeId, until, { kind: INVALIDATE_ENTRY, ino: 0, parent, name, reasons: 0, ...moved });
    }
    if (byNode.size === 0) return;
    await Promise.all([...byNode].map(([nodeId, { items, untilMs }]) => this.callBack(nodeId, items, untilMs, holding)));
  }

  /** What nodeId waits for, made if it waits for nothing yet (forgetWaiting undoes it). */
  private waitingOf(nodeId: number): Waiting {
    let waiting = this.waiting.get(nodeId);
    if (!waiting) this.waiting.set(nodeId, (waiting = { adds: 0, removes: 0, onBegin: new Set() }));
    return waiting;
  }

  private beginWaiting(nodeId: number, holding: 'adds' | 'removes'): () => void {
    const waiting = this.waitingOf(nodeId);
    waiting[holding]++;
    const begun = [...waiting.onBegin];
    waiting.onBegin.clear();
    for (const stop of begun) stop();
    const ended = waiting;
    return () => {
      ended[holding]--;
      this.forgetWaiting(nodeId, ended);
    };
  }

  private forgetWaiting(nodeId: number, waiting: Waiting): void {
    if (waiting.adds === 0 && waiting.removes === 0 && waiting.onBegin.size === 0 && this.waiting.get(nodeId) === waiting) this.waiting.delete(nodeId);
  }

  /** A callback, waited for at most until the node's grants expire, with one
   *  exception that keeps nodes from waiting for each other through the
   *  directory locks of their kernels (the kernel writes an entry's
   *  invalidation only once it holds the directory's lock, which a request of
   *  that node there holds while it waits for its own callbacks):
   *  - a request that removes or replaces names (unlink, rename) waits for a
   *    node whose requests only add names, never for one that also removes:
   *    the name it removed is gone from every other kernel once it is answered;
   *  - a request that adds names (or holds no lock) does not wait for a node
   *    whose own requests wait, and stops waiting as soon as one begins: its
   *    new name may be missed for a moment by a node busy in that directory.
   *  Where it does not wait for the node's kernel, it waits for the node itself
   *  to take the callback (which needs no lock): the node then turns away an
   *  open through a removed name its kernel still holds (Vfs.invalidate).
   *  Of the requests of a cycle, the last to begin waiting, or the one that adds
   *  names and waits for it, stops: no cycle lasts.
   *  recall: a delegation's recall, which the node answers without its kernel:
   *  always waited for (its creates must be made before the caller goes on). */
  private async callBack(nodeId: number, items: Invalidation[], untilMs: number, holding: Holding | 'recall'): Promise<void> {
    const target = this.targets.get(nodeId);
    // Never longer than a lease: past it the node has dropped everything anyway.
    // (untilMs is Infinity for the root's own kernel, and a timer of Infinity
    // fires after 1 ms.)
    const waitMs = Math.min(untilMs - Date.now(), CACHE_LEASE_MS + DELIVERY_MARGIN_MS);
    const deadlineMs = Date.now() + waitMs;
    if (!target || waitMs <= 0) {
      if (waitMs > 0) await sleep(waitMs);
      return;
    }
    const reply = target.callback(items);
    const answered = reply.done.then(() => true, () => false);
    const taken = reply.taken.then(() => true, () => false);
    const waiting = this.waiting.get(nodeId);
    const busy = holding === 'removes' ? (waiting?.removes ?? 0) > 0 : holding !== 'recall' && waiting !== undefined && waiting.adds + waiting.removes > 0;
    let stop: (() => void) | null = null;
    const stopped = busy || holding === 'removes' || holding === 'recall' ? null : new Promise<'stopped'>((resolve) => {
      stop = () => resolve('stopped');
      this.waitingOf(nodeId).onBegin.add(stop);
    });
    // (busy: its kernel drops it once that node's own request is answered)
    const done = await within(busy ? taken : stopped ? Promise.race([answered, stopped]) : answered, waitMs, () => false);
    if (stop) {
      const waitingNow = this.waiting.get(nodeId);
      if (waitingNow) {
        waitingNow.onBegin.delete(stop);
        this.forgetWaiting(nodeId, waitingNow);
      }
    }
    // (stopped: as busy, from now on)
    const settled = done === 'stopped' ? await within(taken, deadlineMs - Date.now(), () => false) : done;
    if (!settled) {
      if (!this.unresponsive.has(nodeId)) log.warn(`node ${nodeId} did not answer a callback: its caches expired instead`);
      this.unresponsive.add(nodeId);
      // ...but it may answer later, and be trusted with grants again
      void answered.then((ok) => ok && this.unresponsive.delete(nodeId));
    }
  }

  /** Grants the node holds (expired ones included until a sweep). */
  held(nodeId: number): number {
    return this.countByNode.get(nodeId) ?? 0;
  }

  private hold(map: Map<number, Holders>, key: number, nodeId: number, until: number): void {
    let holders = map.get(key);
    if (!holders) map.set(key, (holders = new Map()));
    if (!holders.has(nodeId)) {
      this.count++;
      this.countByNode.set(nodeId, this.held(nodeId) + 1);
    }
    holders.set(nodeId, until);
  }

  private countDown(nodeId: number): void {
    this.count--;
    const left = this.held(nodeId) - 1;
    assert(left >= 0 && this.count >= 0, 'grant counts below zero');
    if (left > 0) this.countByNode.set(nodeId, left);
    else this.countByNode.delete(nodeId);
  }

  /** Forgets expired grants and delegations. */
  private sweep(now: number): void {
    for (const [dir, held] of this.delegations) if (held.untilMs <= now) this.delegations.delete(dir);
    for (const [dir, untilMs] of this.contended) if (untilMs <= now) this.contended.delete(dir);
    let count = 0;
    this.countByNode.clear();
    for (const map of [this.attrs, this.dirs]) {
      for (const [key, holders] of map) {
        for (const [nodeId, until] of holders) {
          if (until <= now) holders.delete(nodeId);
          else this.countByNode.set(nodeId, this.held(nodeId) + 1);
        }
        if (holders.size === 0) map.delete(key);
        else count += holders.size;
      }
    }
    this.count = count;
  }
}

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, ms)));
