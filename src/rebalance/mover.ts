// Moves of copies between nodes, run by the metadata service on the root node:
// drains (kdfs node remove: every copy off the draining nodes, then they are
// removed) and rebalances (kdfs rebalance start: each node's share of the
// stored bytes in proportion to its capacity). See docs/nodes.md.
//
// A copy is moved while the file stays readable and writable, file by file,
// while no repair or other move of the file runs:
// 1. the new copy is recorded as a stray (if anything stops the move, it is
//    removed from its node), whatever an earlier attempt left there removed,
//    and the new copy fenced with the layout's next generation (see Layout.gen);
// 2. the layout names the new node as the move's target (Layout.moves), and
//    every node holding the file open, or caching it, is called back: from the
//    callback's answer on, each writes, truncates and syncs the copy on both
//    nodes, and its writes sent before are done (src/vfs/files.ts layoutMoved);
// 3. the object is copied from a good copy on a live node (not necessarily the
//    one moved: a draining node that died is drained from the other copies),
//    only the blocks whose checksums differ, then checked block by block
//    against it; blocks written meanwhile are copied again until they agree;
// 4. one metadata transaction puts the new node in the slot, if the layout did
//    not change meanwhile (a writer that failed to write the new copy marks the
//    slot stale: the move then starts over), and records the old copy as a
//    stray; the nodes are called back again, and the old copy is removed (a read
//    still in flight to it fails over to another copy: see ObjectStore.read).
// The state that must survive a restart is in the metadata store: the nodes'
// administrative states, the rebalance flag, the strays, the layouts' moves. A
// restarted service cancels a move it finds in a layout and makes it again.
import { log } from '../common/log.js';
import { Rounds } from '../common/rounds.js';
import { isReg } from '../common/mode.js';
import { cloneLayout, placeCopy, replicasOf, slotOf, type Replica } from '../layout/replicas.js';
import { objectLength } from '../layout/stripe.js';
import type { Cluster } from '../meta/cluster.js';
import type { Namespace } from '../meta/namespace.js';
import type { Stray } from '../meta/records.js';
import type { MetaStore } from '../meta/store.js';
import type { Inode, Layout, MoveProgress, NodeShare } from '../rpc/messages.js';
import { copyObject, verifyCopy } from '../replication/copy.js';
import type { Repairer } from '../replication/repair.js';
import { Projection, chooseTarget } from './plan.js';
import { StrayCollector } from './strays.js';

/** How often the mover looks for work (longer after passes that got nowhere). */
const MOVE_INTERVAL_MS = 1000;
const BACKOFF_MAX_MS = 8000;
/** Passes in a row that moved nothing and met errors before a rebalance is given up. */
const FAILED_PASSES_MAX = 5;
/** Inodes read from the store at a time (an iterator held for a whole pass would pin a snapshot). */
const INODE_BATCH = 256;
/** Copies are moved at this rate at most, unless mount.kdfs -o move_rate=MIB_PER_S says otherwise. */
export const MOVE_RATE_DEFAULT_BYTES_PER_S = 128 * 2 ** 20;
/** A survey of the shares is reused for this long by status calls. */
const SHARES_FRESH_MS = 5000;
/** Copy-and-check rounds of one object before the move is left for the next pass
 *  (a block written all the time may differ at every check). */
const CATCH_UP_ROUNDS_MAX = 5;

interface PlannedMove { object: number; replica: number; from: number; to: number; bytes: number; stale: boolean }

interface FileOutcome {
  /** Moves planned for the file (made, or attempted and failed). */
  planned: number;
  /** Moves made. */
  made: number;
  /** The file is open and inlined: it is moved once closed. */
  waiting: boolean;
  /** Copies on draining nodes that cannot move now (no node for them, no good source). */
  blocked: number;
  failed: boolean;
}

const NOTHING: FileOutcome = { planned: 0, made: 0, waiting: false, blocked: 0, failed: false };

function idle(): MoveProgress {
  return { state: 'idle', objectsMoved: 0, bytesMoved: 0, objectsLeft: 0, bytesLeft: 0, bytesPerS: 0, filesWaiting: 0, message: '', startedSec: 0, draining: [], passes: 0 };
}

const nowSec = () => Math.floor(Date.now() / 1000);

export class Mover {
  readonly strays: StrayCollector;
  readonly rebalance: MoveProgress = idle();
  readonly drain: MoveProgress = idle();
  private readonly rounds = new Rounds('moves', MOVE_INTERVAL_MS, () => this.roundNow());
  private stopRequested = false;
  private shares: { shares: NodeShare[]; atMs: number } | null = null;
  /** When delegations were last recalled (at a change of the nodes' states; a
   *  service just started has given none): a drain ends only after a pass that
   *  began after it, so that no create made under one lands on a drained node. */
  recalledAtMs = Date.now();
  /** Bytes copied and when the pacing began: moves are paced at bytesPerS. */
  private paced = { bytes: 0, sinceMs: 0 };
  /** Passes in a row that made no move; the next pass waits longer after each. */
  private idlePasses = 0;
  private failedPasses = 0;
  private nextPassMs = 0;
  /** Nodes of the copies found by the last survey (one entry per copy), and their bytes. */
  private lastSurvey: { copies: number[]; bytes: number } = { copies: [], bytes: 0 };

  constructor(
    private readonly store: MetaStore,
    private readonly namespace: Namespace,
    private readonly cluster: Cluster,
    private readonly repairer: Repairer,
    /** Calls back the nodes that cache the inode's attributes (see Repairer). */
    private readonly invalidate: (ino: number, data: boolean) => Promise<void>,
    /** Calls back the nodes that hold the file open or cache it: they go by its
     *  new layout, and their writes sent by the old one are done, when this resolves. */
    private readonly layoutMoved: (ino: number) => Promise<void>,
    private readonly bytesPerS: number = MOVE_RATE_DEFAULT_BYTES_PER_S,
  ) {
    this.strays = new StrayCollector(store, cluster, (ino, work) => repairer.exclusive(ino, work));
    if (store.fs.rebalancing) Object.assign(this.rebalance, { state: 'running', startedSec: nowSec() });
  }

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

  /** kdfs rebalance start: begins (or goes on with) a rebalance. */
  async startRebalance(): Promise<void> {
    if (this.store.fs.rebalancing) return;
    await this.store.run((tx) => tx.setRebalancing(true), true);
    Object.assign(this.rebalance, idle(), { state: 'running', startedSec: nowSec() });
    this.stopRequested = false;
    this.failedPasses = 0;
    this.wakeUp();
    log.info('rebalance: started');
  }

  /** kdfs rebalance stop: the move in progress ends, no other begins. */
  async stopRebalance(): Promise<void> {
    if (!this.store.fs.rebalancing) return;
    this.stopRequested = true;
    await this.store.run((tx) => tx.setRebalancing(false), true);
    this.rebalance.state = 'stopped';
    this.rebalance.message = 'stopped by kdfs rebalance stop';
    log.info('rebalance: stopped');
  }

  /** The nodes' states changed: a pass begins at once. */
  wakeUp(): void {
    this.idlePasses = 0;
    this.nextPassMs = 0;
    void this.round();
  }

  /** Whether a pass may move copies now (a node drains, or a rebalance runs). */
  mayMove(): boolean {
    return this.store.fs.rebalancing === true || this.draining().length > 0;
  }

  private draining(): number[] {
    return this.cluster.nodeIds().filter((id) => this.cluster.adminOf(id) === 'draining').sort((a, b) => a - b);
  }

  private async roundNow(): Promise<void> {
    await this.strays.collect();
    const draining = this.draining();
    const rebalancing = this.store.fs.rebalancing === true;
    this.drain.draining = draining;
    if (draining.length === 0 && this.drain.state === 'running') {
      // every node drained was removed (endDrain says done), or added back: its drain stopped
      this.drain.state = 'stopped';
      this.drain.message = 'the draining nodes were added back';
    }
    if (draining.length === 0 && !rebalancing) return;
    if (draining.length > 0 && this.drain.state !== 'running') {
      Object.assign(this.drain, idle(), { state: 'running', startedSec: nowSec(), draining });
      log.info(`drain of node${draining.length > 1 ? 's' : ''} ${draining.join(', ')}: started`);
    }
    if (Date.now() < this.nextPassMs) return;
    this.stopRequested = false;
    await this.pass(new Set(draining), rebalancing);
  }

  /** Every file looked at once: the copies on draining nodes moved off, and
   *  with a rebalance (and no drain), copies moved from the nodes above their target. */
  private async pass(draining: Set<number>, rebalancing: boolean): Promise<void> {
    const startedMs = Date.now();
    const projection = await this.survey();
    const balancing = rebalancing && draining.size === 0;
    if (balancing && projection.balanced()) {
      await this.endRebalance(projection, 0);
      return;
    }
    const job = draining.size > 0 ? this.drain : this.rebalance;
    this.estimateLeft(job, projection, draining, balancing);
    const total = { ...NOTHING };
    let waiting = 0;
    for (let fromIno = 0; ;) {
      const batch = await this.store.inodesFrom(fromIno, INODE_BATCH);
      if (batch.length === 0) break;
      for (const inode of batch) {
        if (this.rounds.closed || (this.stopRequested && balancing)) return;
        if (!hasLayout(inode)) continue;
        const outcome = await this.repairer.exclusive(inode.attr.ino, () => this.moveFile(inode.attr.ino, projection, draining, balancing, job));
        if (outcome.waiting) waiting++;
        total.planned += outcome.planned;
        total.made += outcome.made;
        total.blocked += outcome.blocked;
        if (outcome.failed) total.failed = true;
      }
      fromIno = batch[batch.length - 1].attr.ino + 1;
    }
    job.filesWaiting = waiting;
    job.passes++;
    // nothing moved: look again later, less and less often
    this.idlePasses = total.made > 0 ? 0 : this.idlePasses + 1;
    this.nextPassMs = Date.now() + Math.min(BACKOFF_MAX_MS, MOVE_INTERVAL_MS * 2 ** Math.min(this.idlePasses, 5)) - MOVE_INTERVAL_MS;
    if (draining.size > 0) {
      if (startedMs > this.recalledAtMs) await this.endDrain([...draining], total, waiting);
      return;
    }
    if (!balancing) return;
    this.failedPasses = total.failed && total.made === 0 ? this.failedPasses + 1 : 0;
    if (this.failedPasses >= FAILED_PASSES_MAX) {
      await this.store.run((tx) => tx.setRebalancing(false), true);
      this.rebalance.state = 'failed';
      log.warn(`rebalance: failed, ${FAILED_PASSES_MAX} passes in a row moved nothing: ${this.rebalance.message}`);
      return;
    }
    // files kept open do not hold a rebalance forever: they stay where they are
    if (total.planned === 0) await this.endRebalance(projection, waiting);
  }

  /** The drained nodes are removed once a pass found nothing left on them, and
   *  their strays are gone (a node that was down when its copies were moved
   *  away has them removed once it is back). */
  private async endDrain(passNodes: number[], total: FileOutcome, waiting: number): Promise<void> {
    // a node added back meanwhile is not drained any more
    const still = new Set(this.draining());
    const nodes = passNodes.filter((id) => still.has(id));
    const strays = nodes.reduce((sum, node) => sum + this.strays.countOn(node), 0);
    if (total.blocked > 0) this.drain.message = `${total.blocked} copies have no node to go to, or no good copy within reach to be made from`;
    else if (waiting > 0) this.drain.message = `${waiting} files being written inline are open: moved once closed`;
    else if (strays > 0) this.drain.message = `${strays} old copies are still to be removed from the draining nodes (are they down?)`;
    else this.drain.message = '';
    if (nodes.length === 0 || total.planned > 0 || waiting > 0 || total.blocked > 0 || strays > 0) return;
    await this.cluster.setAdmin(nodes, 'removed');
    log.info(`drain of node${nodes.length > 1 ? 's' : ''} ${nodes.join(', ')}: done (${this.drain.objectsMoved} copies, ${this.drain.bytesMoved} bytes moved); removed`);
    if (this.draining().length === 0) {
      this.drain.state = 'done';
      this.drain.objectsLeft = 0;
      this.drain.bytesLeft = 0;
    }
  }

  private async endRebalance(projection: Projection, waiting: number): Promise<void> {
    await this.store.run((tx) => tx.setRebalancing(false), true);
    this.rebalance.state = 'done';
    this.rebalance.objectsLeft = 0;
    this.rebalance.bytesLeft = 0;
    this.rebalance.message = waiting > 0 ? `${waiting} files open meanwhile were left where they are`
      : projection.balanced() ? '' : 'no more copies can move: the failure domains or the objects\' sizes keep the shares apart';
    log.info(`rebalance: done (${this.rebalance.objectsMoved} copies, ${this.rebalance.bytesMoved} bytes moved)`);
  }

  /** What is left to move, as the survey sees it. */
  private estimateLeft(job: MoveProgress, projection: Projection, draining: Set<number>, balancing: boolean): void {
    if (balancing) {
      job.bytesLeft = projection.excessBytes();
      const copies = this.lastSurvey.copies.length;
      const averageBytes = copies > 0 ? this.lastSurvey.bytes / copies : 0;
      job.objectsLeft = averageBytes > 0 ? Math.ceil(job.bytesLeft / averageBytes) : 0;
      return;
    }
    job.bytesLeft = [...draining].reduce((sum, node) => sum + projection.storedOn(node), 0);
    job.objectsLeft = this.lastSurvey.copies.filter((node) => draining.has(node)).length;
  }

  /** The bytes of the copies on each node now, and the target of each node that takes data. */
  private async survey(): Promise<Projection> {
    const stored = new Map<number, number>();
    const copies: number[] = [];
    let bytes = 0;
    for (let fromIno = 0; ;) {
      const batch = await this.store.inodesFrom(fromIno, INODE_BATCH);
      if (batch.length === 0) break;
      for (const inode of batch) {
        if (!hasObjects(inode)) continue;
        const layout = inode.layout!;
        for (let object = 0; object < layout.nodes.length; object++) {
          const objectBytes = objectLength(layout.unitBytes, layout.nodes.length, inode.attr.size, object);
          for (const copy of replicasOf(layout, object)) {
            if (copy.node === 0) continue;
            stored.set(copy.node, (stored.get(copy.node) ?? 0) + objectBytes);
            copies.push(copy.node);
            bytes += objectBytes;
          }
        }
      }
      fromIno = batch[batch.length - 1].attr.ino + 1;
    }
    this.lastSurvey = { copies, bytes };
    const weights = new Map<number, number>();
    for (const node of await this.cluster.nodes()) {
      if ((node.weight ?? 0) > 0 && node.up) weights.set(node.id, node.weight!);
    }
    const projection = new Projection(stored, weights);
    this.shares = { shares: sharesOf(projection), atMs: Date.now() };
    return projection;
  }

  /** Each node's share of the stored bytes (a survey at most SHARES_FRESH_MS old). */
  async currentShares(): Promise<NodeShare[]> {
    if (!this.shares || Date.now() - this.shares.atMs > SHARES_FRESH_MS) await this.survey();
    return this.shares!.shares;
  }

  /** The moves the file needs now, at most one copy of each object; the
   *  projection counts them as made. */
  private plan(inode: Inode, projection: Projection, draining: Set<number>, balancing: boolean): { moves: PlannedMove[]; blocked: number } {
    const layout = inode.layout!;
    const moves: PlannedMove[] = [];
    let blocked = 0;
    const candidates = this.cluster.placeableIds().filter((id) => this.cluster.isLive(id) && !draining.has(id) && !this.repairer.isAbandoned(id));
    for (let object = 0; object < layout.nodes.length; object++) {
      const bytes = inode.inlined ? 0 : objectLength(layout.unitBytes, layout.nodes.length, inode.attr.size, object);
      const copies = replicasOf(layout, object);
      const anyStale = copies.some((c) => c.stale);
      for (const copy of copies) {
        if (copy.node === 0) continue;
        const mustGo = draining.has(copy.node);
        // a rebalance leaves alone the objects repair has to see to, and the nodes with no target (down, in maintenance)
        const shouldGo = !mustGo && balancing && !anyStale && projection.target.has(copy.node) && projection.over(copy.node, bytes);
        if (!mustGo && !shouldGo) continue;
        const holding = copies.map((c) => c.node);
        const reduces = (to: number) => projection.roomFor(to, bytes) && projection.fill(to, bytes) < projection.fill(copy.node);
        const to = chooseTarget(candidates, holding, copy.node, (id) => this.cluster.domainOf(id), projection, bytes, mustGo ? undefined : reduces);
        const source = copy.stale || inode.inlined ? copy : this.sourceFor(layout, object, copy);
        if (to === 0 || !source) {
          if (mustGo) blocked++;
          continue;
        }
        moves.push({ object, replica: copy.replica, from: copy.node, to, bytes, stale: copy.stale });
        projection.move(copy.node, to, bytes);
        break; // one copy of an object at a time: the others stay readable
      }
    }
    return { moves, blocked };
  }

  /** Plans and makes the moves of one file; run while no repair or other move of it runs. */
  private async moveFile(ino: number, projection: Projection, draining: Set<number>, balancing: boolean, job: MoveProgress): Promise<FileOutcome> {
    const inode = await this.store.run((tx) => tx.inode(ino), false);
    if (!inode || !hasLayout(inode)) return NOTHING;
    if ((inode.layout!.moves ?? []).length > 0) {
      // a move cut short (the service restarted): cancelled, made again next pass
      await this.cancelMoves(ino);
      return { ...NOTHING, planned: 1 };
    }
    const { moves, blocked } = this.plan(inode, projection, draining, balancing);
    if (moves.length === 0) return { ...NOTHING, blocked };
    const undo = () => moves.forEach((m) => projection.move(m.to, m.from, m.bytes));
    try {
      const made = inode.inlined ? await this.switchInline(inode, moves) : await this.moveCopies(inode, moves);
      if (made === null || !made) {
        undo();
        return { ...NOTHING, planned: moves.length, waiting: made === null, blocked };
      }
      const copiedBytes = moves.filter((m) => !m.stale).reduce((sum, m) => sum + m.bytes, 0);
      job.objectsMoved += moves.length;
      job.bytesMoved += copiedBytes;
      job.objectsLeft = Math.max(0, job.objectsLeft - moves.length);
      job.bytesLeft = Math.max(0, job.bytesLeft - moves.reduce((sum, m) => sum + m.bytes, 0));
      job.bytesPerS = job.bytesMoved / Math.max(1, nowSec() - job.startedSec);
      return { ...NOTHING, planned: moves.length, made: moves.length, blocked };
    } catch (err) {
      undo();
      job.message = `inode ${ino}: ${(err as Error).message}`;
      log.warn(`move of inode ${ino}: ${(err as Error).message}; moved again later`);
      await this.cancelMoves(ino).catch((cancelErr) => log.warn(`cancelling the moves of inode ${ino}: ${(cancelErr as Error).message}`));
      return { ...NOTHING, planned: moves.length, blocked, failed: true };
    }
  }

  /** A file still inlined has no objects yet, only the layout they will have:
   *  the layout changes, once no node holds it open (a node spilling it would
   *  write by the layout it opened it with). Null if open, else whether it changed. */
  private async switchInline(inode: Inode, moves: PlannedMove[]): Promise<boolean | null> {
    const ino = inode.attr.ino;
    if (this.namespace.isOpen(ino)) return null;
    await this.invalidate(ino, false);
    const next = cloneLayout(inode.layout!);
    for (const move of moves) placeCopy(next, move.object, move.replica, move.to);
    return this.namespace.replaceLayout(ino, inode.layout!, next, { size: inode.attr.size, ctime: inode.attr.ctime });
  }

  /** Steps 1 to 4 of a move (see the top of this file); false if the layout
   *  changed meanwhile (the move is cancelled, made again later). */
  private async moveCopies(inode: Inode, moves: PlannedMove[]): Promise<boolean> {
    const ino = inode.attr.ino;
    const layout = inode.layout!;
    const copied = moves.filter((m) => !m.stale);
    const targets: Stray[] = copied.map((m) => ({ ino, node: m.to, object: m.object, replica: m.replica }));
    // 1. recorded before a byte is written there: if anything stops the move, the new copies go
    if (targets.length > 0) await this.store.run((tx) => targets.forEach((t) => tx.setStray(t, true)), true);
    // under a new generation of the layout, each new copy fenced with it: a write
    // to it given up on in an earlier move that was cancelled, delivered late, is refused
    const gen = (layout.gen ?? 0) + 1;
    for (const target of targets) {
      const key = { ino, index: target.object, replica: target.replica };
      await this.cluster.agent(target.node).remove([key]);
      await this.cluster.agent(target.node).fence([{ ...key, gen }]);
    }
    // 2. writers write the new copies too (a stale copy is only placed elsewhere: repair makes it)
    const moving = cloneLayout(layout);
    if (copied.length > 0) moving.gen = gen;
    moving.moves = copied.map((m) => ({ slot: slotOf(layout, m.object, m.replica), node: m.to }));
    if (copied.length > 0) {
      if (!(await this.namespace.replaceLayout(ino, layout, moving, null))) return false;
      await this.layoutMoved(ino);
    }
    // 3. the copies made, and checked
    for (const move of copied) {
      if (this.rounds.closed) throw new Error('the service is stopping');
      await this.copyAndCheck(ino, layout, move, gen);
      await this.pace(move.bytes);
    }
    // 4. the switch
    const next = cloneLayout(moving);
    next.moves = [];
    for (const move of moves) placeCopy(next, move.object, move.replica, move.to);
    const left: Stray[] = moves.map((m) => ({ ino, node: m.from, object: m.object, replica: m.replica }));
    const unchanged = copied.length > 0 ? null : { size: inode.attr.size, ctime: inode.attr.ctime };
    if (!(await this.namespace.replaceLayout(ino, moving, next, unchanged, { add: left, drop: targets }))) {
      if (copied.length > 0) await this.cancelMoves(ino);
      log.info(`move of inode ${ino}: the file's copies changed meanwhile; moved again later`);
      return false;
    }
    await this.layoutMoved(ino);
    await this.strays.collectOf(ino);
    return true;
  }

  /** Copies the object to the move's target until a check finds it equal to its source. */
  private async copyAndCheck(ino: number, layout: Layout, move: PlannedMove, gen: number): Promise<void> {
    const current = replicasOf(layout, move.object)[move.replica];
    const source = this.sourceFor(layout, move.object, current);
    if (!source) throw new Error(`object ${move.object} has no good copy within reach`);
    const target: Replica = { replica: move.replica, node: move.to, stale: true };
    let failure: unknown = null;
    for (let round = 0; round < CATCH_UP_ROUNDS_MAX; round++) {
      // under the moving layout's generation, as its writers (fenced in step 1)
      await copyObject(this.cluster.replicas.agents, ino, move.object, source, target, null, true, { gen, fence: false });
      try {
        await verifyCopy(this.cluster.replicas.agents, ino, move.object, source, target, null);
        return;
      } catch (err) {
        // a block written between the copy and the check, on one copy before the other: copied again
        failure = err;
      }
    }
    throw failure;
  }

  /** Takes every move out of the file's layout (the nodes are called back); the
   *  copies made for them are strays, removed once no layout names them. */
  private async cancelMoves(ino: number): Promise<void> {
    if (await this.namespace.clearMoves(ino)) await this.layoutMoved(ino);
  }

  /** A good copy of the object on a live node to copy from, other than `moved` if there is one. */
  private sourceFor(layout: Layout, object: number, moved: Replica): Replica | null {
    const good = replicasOf(layout, object).filter((c) => c.node !== 0 && !c.stale && this.cluster.isLive(c.node) && !this.repairer.isAbandoned(c.node));
    return good.find((c) => c.replica !== moved.replica) ?? good.find((c) => c.replica === moved.replica) ?? null;
  }

  /** Sleeps whenever the moves are ahead of the rate. */
  private async pace(bytes: number): Promise<void> {
    const nowMs = Date.now();
    // a pause of more than a few seconds (no work) starts the pacing anew
    if (nowMs - this.paced.sinceMs > 5000 + (this.paced.bytes / this.bytesPerS) * 1000) this.paced = { bytes: 0, sinceMs: nowMs };
    this.paced.bytes += bytes;
    const aheadMs = (this.paced.bytes / this.bytesPerS) * 1000 - (Date.now() - this.paced.sinceMs);
    if (aheadMs > 0) await new Promise((resolve) => setTimeout(resolve, aheadMs));
  }
}

/** A regular file with a layout: its objects, or (inlined) the layout they will have. */
function hasLayout(inode: Inode): boolean {
  return isReg(inode.attr.mode) && inode.layout !== null && inode.layout.nodes.length > 0;
}

function hasObjects(inode: Inode): boolean {
  return hasLayout(inode) && !inode.inlined;
}

function sharesOf(projection: Projection): NodeShare[] {
  const total = [...projection.stored.values()].reduce((sum, b) => sum + b, 0);
  const targetTotal = [...projection.target.values()].reduce((sum, b) => sum + b, 0);
  const ids = new Set([...projection.stored.keys(), ...projection.target.keys()]);
  return [...ids].sort((a, b) => a - b).map((id) => ({
    id, storedBytes: projection.storedOn(id), share: total > 0 ? projection.storedOn(id) / total : 0,
    targetShare: targetTotal > 0 ? (projection.target.get(id) ?? 0) / targetTotal : 0,
  }));
}
