// Repair, run by the metadata service on the root node: brings every file back
// to R good copies of each object.
//
// - A stale copy (it missed writes while its node was away, or failed its
//   checksum) is brought up to date from a good one once its node is live:
//   only the blocks whose checksums differ are copied (see ObjectStore.sums).
// - A copy with no node (fewer nodes than R when the file was made), or on a
//   node down for longer than the grace period, is made anew on a live node
//   that holds no other copy of the object.
// Inodes to repair are listed in the metadata store ("R" keys), so that the work
// survives a restart of the service. A file open anywhere is left until it is
// closed: a writer that opened it before the repair would not write to the copy
// being made. The new layout is committed only if the file's size, mtime and
// layout did not change while the copies were made; else the repair starts over.
import { log } from '../common/log.js';
import { Rounds } from '../common/rounds.js';
import { isReg } from '../common/mode.js';
import { cloneLayout, placeCopy, replicaCount, replicasOf, slotOf, type Replica } from '../layout/replicas.js';
import { objectLength } from '../layout/stripe.js';
import type { Cluster } from '../meta/cluster.js';
import type { Namespace } from '../meta/namespace.js';
import type { MetaStore } from '../meta/store.js';
import type { Inode, Layout, NodeCopies } from '../rpc/messages.js';
import type { Stray } from '../meta/records.js';
import { copyObject } from './copy.js';

/** How often repair looks for work. */
const REPAIR_INTERVAL_MS = 1000;
/** Inodes repaired per round, at most. */
const REPAIR_BATCH_INODES = 64;
/** A file whose copies could not all be made (a full or failing node) is tried
 *  again after this, doubled at each failure up to REPAIR_RETRY_MAX_MS, not at
 *  every round; a node coming back or joining has them all tried at once. */
const REPAIR_RETRY_FIRST_MS = 2 * REPAIR_INTERVAL_MS;
const REPAIR_RETRY_MAX_MS = 16_000;
/** How long a node may stay down before its copies are made again elsewhere. */
export const REPAIR_GRACE_DEFAULT_MS = 10 * 60 * 1000;

export interface RepairCounts {
  /** Objects with fewer than R good copies on live nodes. */
  degradedObjects: number;
  /** Objects whose copies are being made now. */
  repairingObjects: number;
  /** Inodes of the files with degraded objects, at most `limit` of them. */
  degradedInos: number[];
  /** Per node, when asked. */
  nodeCopies: NodeCopies[];
}

export class Repairer {
  private readonly rounds = new Rounds('repair', REPAIR_INTERVAL_MS, () => this.roundNow());
  /** When each node was first seen not live, while it stays so. */
  private readonly downSinceMs = new Map<number, number>();
  /** Nodes down past the grace period: their copies are made again elsewhere. */
  private readonly abandoned = new Set<number>();
  private readonly knownMembers = new Set<number>();
  /** Removed nodes whose process was found gone (and abandoned). */
  private readonly removedGone = new Set<number>();
  /** A scan of every inode is due: a node joined or was abandoned. */
  private scanDue = true;
  /** Objects being copied now. */
  repairingObjects = 0;
  /** Copies made or brought up to date since the service started. */
  repairedCopies = 0;
  /** The repair of each file in progress. */
  private readonly inProgress = new Map<number, Promise<void>>();
  /** Where the last round stopped in the list of files to repair: the next goes on from there. */
  private cursorIno = 0;
  /** Files whose last repair failed to make a copy: when to try again (at most one per listed file). */
  private readonly retries = new Map<number, { atMs: number; delayMs: number }>();
  /** The cluster's count of probes that found room freed, as last seen. */
  private roomFreedSeen = 0;

  constructor(
    private readonly store: MetaStore,
    private readonly namespace: Namespace,
    private readonly cluster: Cluster,
    /** Calls back the nodes that cache the inode: its attributes (they may then
     *  open it only by asking the service, see OpenFiles.openHere), and with
     *  data, its content and layout. */
    private readonly invalidate: (ino: number, data: boolean) => Promise<void>,
    private readonly graceMs: number = REPAIR_GRACE_DEFAULT_MS,
  ) {}

  start(): void {
    this.rounds.start();
  }

  /** Stops; resolves once a round in progress is over. */
  close(): Promise<void> {
    return this.rounds.close();
  }

  /** One round now; resolves when it is over (a round running already is joined). */
  round(): Promise<void> {
    return this.rounds.run();
  }

  private async roundNow(): Promise<void> {
    this.watchNodes();
    if (this.scanDue) {
      this.scanDue = false;
      await this.scan();
    }
    // files that cannot be repaired yet must not hold back the others: a round
    // goes on where the last one stopped
    const listed = [...this.store.needsRepair].sort((a, b) => a - b);
    for (const ino of this.retries.keys()) if (!this.store.needsRepair.has(ino)) this.retries.delete(ino);
    const due = listed.filter((ino) => (this.retries.get(ino)?.atMs ?? 0) <= Date.now());
    const from = due.findIndex((ino) => ino > this.cursorIno);
    const batch = [...due.slice(Math.max(0, from)), ...(from > 0 ? due.slice(0, from) : [])].slice(0, REPAIR_BATCH_INODES);
    for (const ino of batch) {
      if (this.rounds.closed) return;
      this.cursorIno = ino;
      if (this.inProgress.has(ino)) continue;
      try {
        await this.repairOnce(ino);
      } catch (err) {
        log.warn(`repair of inode ${ino}: ${(err as Error).message}`);
        this.failedNow(ino);
      }
    }
  }

  /** A copy of the file could not be made: tried again later, later each time. */
  private failedNow(ino: number): void {
    const delayMs = Math.min(REPAIR_RETRY_MAX_MS, 2 * (this.retries.get(ino)?.delayMs ?? REPAIR_RETRY_FIRST_MS / 2));
    this.retries.set(ino, { atMs: Date.now() + delayMs, delayMs });
  }

  /** Follows which nodes are live: one down past the grace period is abandoned
   *  (its copies are made elsewhere), one that joined may take unplaced copies. */
  private watchNodes(): void {
    const nowMs = Date.now();
    // a node with room again (files removed from it, its disk grown) may take what it could not
    if (this.cluster.roomFreed !== this.roomFreedSeen) {
      this.roomFreedSeen = this.cluster.roomFreed;
      if (this.retries.size > 0) log.info(`repair: room was freed on a node: the ${this.retries.size} files whose copies could not be made are tried again now`);
      this.retries.clear();
    }
    for (const id of this.cluster.nodeIds()) {
      if (!this.knownMembers.has(id)) {
        this.knownMembers.add(id);
        this.retries.clear();
        this.scanDue = true;
      }
      const admin = this.cluster.adminOf(id);
      if (admin === 'removed') {
        // removed (drained, or by force): whatever copies it still has are made elsewhere
        if (!this.abandoned.has(id)) {
          this.abandoned.add(id);
          this.scanDue = true;
        }
        // it may still be mounted (a client): once its process is gone, what it held open is not
        if (this.cluster.isLive(id)) this.removedGone.delete(id);
        else if (!this.removedGone.has(id)) {
          this.removedGone.add(id);
          this.abandon(id);
        }
        continue;
      }
      if (this.cluster.isLive(id)) {
        // back: copies that could not be made may be made now
        if (this.downSinceMs.delete(id)) this.retries.clear();
        if (this.abandoned.delete(id)) log.info(`repair: node ${id} is back; its copies were made elsewhere meanwhile`);
        continue;
      }
      const since = this.downSinceMs.get(id) ?? nowMs;
      this.downSinceMs.set(id, since);
      // a node in maintenance is down on purpose: its copies wait for it (as Ceph's noout)
      if (admin === 'maintenance') continue;
      if (nowMs - since >= this.graceMs && !this.abandoned.has(id)) {
        log.warn(`repair: node ${id} has been down for ${Math.round((nowMs - since) / 1000)} s: its copies are made again on other nodes`);
        this.abandoned.add(id);
        this.scanDue = true;
        this.abandon(id);
      }
    }
  }

  /** A node process taken for dead for good: its files are reconciled. */
  private abandon(id: number): void {
    // if its process comes back after all, it re-announces what it holds open
    this.cluster.forgetIncarnation(id);
    // what it held open is open no more: its files may be repaired (after reconciling)
    void this.namespace.replaceOpens(id, []).then((dropped) => this.reconcile(dropped, id));
  }

  /** Whether the node's copies are being made elsewhere (down past the grace period, or removed). */
  isAbandoned(nodeId: number): boolean {
    return this.abandoned.has(nodeId);
  }

  /** A member's directory was replaced: every copy it had is stale, even an
   *  object's last one (the object is lost: read, it fails), rebuilt onto it by repair. */
  async replaced(nodeId: number): Promise<void> {
    let files = 0;
    for await (const inode of this.store.allInodes()) {
      if (!this.hasObjects(inode)) continue;
      const layout = inode.layout!;
      const slots: number[] = [];
      for (let object = 0; object < layout.nodes.length; object++) {
        for (const r of replicasOf(layout, object)) if (r.node === nodeId && !r.stale) slots.push(slotOf(layout, object, r.replica));
      }
      if (slots.length === 0) continue;
      await this.exclusive(inode.attr.ino, () => this.namespace.markLost(inode.attr.ino, slots));
      await this.invalidate(inode.attr.ino, true);
      files++;
    }
    log.info(`repair: node ${nodeId} has a new directory: the copies of ${files} files are rebuilt onto it`);
  }

  /** Lists for repair every file with a copy to make: unplaced, or on an abandoned node. */
  private async scan(): Promise<void> {
    for await (const inode of this.store.allInodes()) {
      if (this.store.needsRepair.has(inode.attr.ino) || !this.hasObjects(inode)) continue;
      const layout = inode.layout!;
      const incomplete = layout.nodes.some((_, object) => replicasOf(layout, object).some((r) => r.node === 0 || r.stale || this.abandoned.has(r.node)));
      if (incomplete) await this.store.run((tx) => tx.setNeedsRepair(inode.attr.ino, true), false);
    }
  }

  private hasObjects(inode: Inode): boolean {
    return isReg(inode.attr.mode) && !inode.inlined && inode.layout !== null && inode.layout.nodes.length > 0;
  }

  /** A node process died holding the files open (it restarted, or was abandoned):
   *  their copies are reconciled before anyone reads them again. */
  async reconcile(inos: number[], deadNode: number): Promise<void> {
    // The copies on the dead process's own node may hold blocks half written
    // (data without its checksum, or the reverse): kept only when no other is.
    const keepable = (node: number) => node !== deadNode && this.cluster.isLive(node) && !this.abandoned.has(node);
    // one line per dead node, not per file: it may have held thousands open
    let staleCopies = 0;
    for (const ino of inos) {
      try {
        const marked = await this.namespace.reconcile(ino, keepable);
        staleCopies += marked.length;
        if (marked.length > 0) log.debug(`reconciling inode ${ino}: copies ${marked.join(', ')} stale until repaired`);
        // nodes that hold it open learn which copies to leave alone (and tell
        // the opens they made without a call)
        await this.invalidate(ino, true);
        await this.cutPastEnd(ino);
      } catch (err) {
        log.warn(`reconciling the copies of inode ${ino}: ${(err as Error).message}`);
      }
    }
    if (inos.length > 0) log.info(`reconciled the ${inos.length} files node ${deadNode} held open when it died: ${staleCopies} copies stale until repaired`);
  }

  /** What a dead writer left past the file's committed size must never come
   *  back when the file grows: if no node holds the file open (none can write
   *  there but the dead one), every copy is cut to the committed size, while
   *  opens of the file wait. A copy that cannot be cut is marked stale. */
  private async cutPastEnd(ino: number): Promise<void> {
    await this.namespace.fenced(ino, async () => {
      const inode = await this.store.run((tx) => tx.inode(ino), false);
      if (!inode || !this.hasObjects(inode)) return;
      const layout = inode.layout!;
      const failed: number[] = [];
      for (let object = 0; object < layout.nodes.length; object++) {
        const length = objectLength(layout.unitBytes, layout.nodes.length, inode.attr.size, object);
        try {
          failed.push(...(await this.cluster.replicas.truncate(ino, layout, object, length, new Set())));
        } catch (err) {
          log.warn(`cutting object ${object} of inode ${ino} to the committed size: ${(err as Error).message}`);
          failed.push(...replicasOf(layout, object).filter((r) => r.node !== 0).map((r) => slotOf(layout, object, r.replica)));
        }
      }
      if (failed.length > 0) await this.namespace.markStale(ino, failed);
    });
  }

  /** Repairs the file now (for kdfs scrub --repair), as far as the live nodes allow. */
  async repairNow(ino: number): Promise<void> {
    if (!this.store.needsRepair.has(ino)) await this.store.run((tx) => tx.setNeedsRepair(ino, true), false);
    await this.repairOnce(ino);
  }

  /** One repair of the file at a time: a second waits for the first, then looks again. */
  private async repairOnce(ino: number): Promise<void> {
    await this.exclusive(ino, () => this.repair(ino));
  }

  /** Runs `work` when no other repair, move or removal of a stray copy of the inode runs. */
  async exclusive<T>(ino: number, work: () => Promise<T>): Promise<T> {
    for (let running = this.inProgress.get(ino); running; running = this.inProgress.get(ino)) await running;
    const result = work();
    const done = result.then(() => {}, () => {}).finally(() => this.inProgress.delete(ino));
    this.inProgress.set(ino, done);
    return result;
  }

  /** The copies of the file that can be made now: each with a live target and a live good source. */
  private plan(ino: number, layout: Layout): PlannedCopy[] {
    const planned: PlannedCopy[] = [];
    const next = cloneLayout(layout);
    for (let object = 0; object < layout.nodes.length; object++) {
      for (const copy of replicasOf(layout, object)) {
        const moved = copy.node === 0 || this.abandoned.has(copy.node);
        if (!moved && !copy.stale) continue;
        const target = moved ? this.pickNode(next, object, ino) : copy.node;
        if (target === 0 || !this.cluster.isLive(target)) continue;
        const source = replicasOf(layout, object).find((c) => c !== copy && c.node !== 0 && !c.stale && !this.abandoned.has(c.node) && this.cluster.isLive(c.node));
        if (!source) continue; // no good copy within reach: the object stays degraded
        placeCopy(next, object, copy.replica, target);
        planned.push({ object, replica: copy.replica, target, source, moved });
      }
    }
    return planned;
  }

  /** Makes what copies of the file's objects it can; the inode stays listed until all are made. */
  private async repair(ino: number): Promise<void> {
    const inode = await this.store.run((tx) => tx.inode(ino), false);
    if (!inode || !this.hasObjects(inode)) {
      await this.namespace.repairDone(ino);
      return;
    }
    if (this.namespace.isOpen(ino)) return; // at its last close
    const layout = inode.layout!;
    const planned = this.plan(ino, layout);
    if (planned.length === 0) return;
    await this.invalidate(ino, false);
    const next = cloneLayout(layout);
    // the copies made good are fenced with the next generation: a request given
    // up on before (its node stopped, its link cut) that reaches one late is refused
    next.gen = (layout.gen ?? 0) + 1;
    let changed = false;
    let failedCopies = 0;
    /** Copies left on nodes that may come back (abandoned, not removed): removed from them then. */
    const strays: Stray[] = [];
    const madeStrays: Stray[] = [];
    for (const { object, replica, target, source, moved } of planned) {
      if (this.rounds.closed) return;
      const length = objectLength(layout.unitBytes, layout.nodes.length, inode.attr.size, object);
      this.repairingObjects++;
      // a copy made anew is a stray until the layout names it: if the repair stops, it goes
      const made: Stray = { ino, node: target, object, replica };
      if (moved) await this.store.run((tx) => tx.setStray(made, true), true);
      madeStrays.push(made);
      try {
        await copyObject(this.cluster.replicas.agents, ino, object, source, { replica, node: target, stale: true }, length, !moved, { gen: next.gen, fence: true });
      } catch (err) {
        log.warn(`repair of inode ${ino} object ${object}, copy ${replica} on node ${target}: ${(err as Error).message}`);
        failedCopies++;
        continue;
      } finally {
        this.repairingObjects--;
      }
      const left = replicasOf(layout, object)[replica].node;
      if (moved && left !== 0 && left !== target) strays.push({ ino, node: left, object, replica });
      placeCopy(next, object, replica, target);
      next.stale = next.stale!.filter((slot) => slot !== slotOf(layout, object, replica));
      changed = true;
      this.repairedCopies++;
    }
    if (failedCopies > 0) this.failedNow(ino);
    else this.retries.delete(ino);
    if (!changed) return;
    const committed = await this.namespace.replaceLayout(ino, layout, next, { size: inode.attr.size, ctime: inode.attr.ctime }, { add: strays, drop: madeStrays });
    if (!committed) log.info(`repair of inode ${ino}: the file changed meanwhile; repaired again later`);
    // a node granted the file since the first callback holds the layout of before (its writes would go under the old generation)
    else await this.invalidate(ino, false);
  }

  /** A live node for a new copy of the object: one holding no copy of it, in a
   *  failure domain none of the others has if there is one, the least used by
   *  this file, picked by inode number among equals so that files spread. */
  private pickNode(layout: Layout, object: number, ino: number): number {
    const others = replicasOf(layout, object).filter((r) => r.node !== 0 && !this.abandoned.has(r.node));
    const holding = new Set(replicasOf(layout, object).map((r) => r.node));
    const domainKey = (id: number) => this.cluster.domainOf(id) || `node ${id}`;
    const usedDomains = new Set(others.map((r) => domainKey(r.node)));
    const live = this.cluster.placeableIds().filter((id) => !holding.has(id) && !this.abandoned.has(id) && this.cluster.isLive(id)).sort((a, b) => a - b);
    const apart = live.filter((id) => !usedDomains.has(domainKey(id)));
    const candidates = apart.length > 0 ? apart : live;
    if (candidates.length === 0) return 0;
    const load = new Map<number, number>();
    for (let i = 0; i < layout.nodes.length; i++) for (const r of replicasOf(layout, i)) load.set(r.node, (load.get(r.node) ?? 0) + 1);
    const least = Math.min(...candidates.map((id) => load.get(id) ?? 0));
    const best = candidates.filter((id) => (load.get(id) ?? 0) === least);
    return best[(ino + object) % best.length];
  }

  /** Degraded objects now, over the whole file system (a scan of every inode);
   *  with perNode, what stopping each node would do to the objects it holds. */
  async counts(limit: number, perNode = false): Promise<RepairCounts> {
    let degradedObjects = 0;
    const degradedInos: number[] = [];
    const nodeCopies = new Map<number, NodeCopies>();
    const of = (id: number) => {
      let counts = nodeCopies.get(id);
      if (!counts) nodeCopies.set(id, (counts = { id, copies: 0, lastCopies: 0, belowR: 0 }));
      return counts;
    };
    if (perNode) for (const id of this.cluster.nodeIds()) of(id);
    for await (const inode of this.store.allInodes()) {
      if (!this.hasObjects(inode)) continue;
      const layout = inode.layout!;
      const wanted = replicaCount(layout);
      let degraded = 0;
      for (let object = 0; object < layout.nodes.length; object++) {
        const good = replicasOf(layout, object).filter((r) => this.goodNow(r));
        if (good.length < wanted) degraded++;
        if (!perNode) continue;
        for (const r of replicasOf(layout, object)) {
          if (r.node === 0 || r.stale) continue;
          const counts = of(r.node);
          counts.copies++;
          const othersGood = good.filter((g) => g.node !== r.node).length;
          if (othersGood === 0) counts.lastCopies++;
          if (othersGood < wanted) counts.belowR++;
        }
      }
      degradedObjects += degraded;
      if (degraded > 0 && degradedInos.length < limit) degradedInos.push(inode.attr.ino);
    }
    return { degradedObjects, repairingObjects: this.repairingObjects, degradedInos, nodeCopies: [...nodeCopies.values()].sort((a, b) => a.id - b.id) };
  }

  private goodNow(replica: Replica): boolean {
    return replica.node !== 0 && !replica.stale && !this.abandoned.has(replica.node) && this.cluster.isLive(replica.node);
  }
}

interface PlannedCopy { object: number; replica: number; target: number; source: Replica; moved: boolean }

