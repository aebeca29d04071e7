// Removal of stray copies: copies left on a node outside every layout. A move
// records its new copy as a stray before copying a byte (if the move does not
// commit, the copy is removed), and the commit that switches the layout records
// the old copy as one. Repair does the same for the copies it makes anew away
// from an abandoned node. The records are in the metadata store, so a process
// killed at any moment leaves nothing behind for good: once the node answers,
// the copy is removed, unless the layout has it there after all.
import { log } from '../common/log.js';
import { moveTargetOf, replicasOf, slotOf } from '../layout/replicas.js';
import type { Cluster } from '../meta/cluster.js';
import type { Stray } from '../meta/records.js';
import type { MetaStore } from '../meta/store.js';
import { replicaKey } from '../replication/objects.js';

/** Strays looked at per round, at most. */
const STRAYS_PER_ROUND_MAX = 1024;

export class StrayCollector {
  /** Copies removed since the service started. */
  removed = 0;

  constructor(
    private readonly store: MetaStore,
    private readonly cluster: Cluster,
    /** Runs work on an inode while no repair or move of it runs. */
    private readonly exclusive: <T>(ino: number, work: () => Promise<T>) => Promise<T>,
  ) {}

  /** Strays recorded on the node. */
  countOn(node: number): number {
    let count = 0;
    for (const stray of this.store.strays.values()) if (stray.node === node) count++;
    return count;
  }

  /** Removes the strays it can reach now (of one inode, if given). */
  async collect(ino?: number): Promise<void> {
    // those that can be acted on (their node answers, or is removed and gone) first: the others must not starve them
    const actionable = (s: Stray) => this.cluster.isLive(s.node) || this.cluster.adminOf(s.node) === 'removed';
    const strays = [...this.store.strays.values()].filter((s) => (ino === undefined || s.ino === ino) && actionable(s)).slice(0, STRAYS_PER_ROUND_MAX);
    const byIno = new Map<number, Stray[]>();
    for (const stray of strays) {
      if (!byIno.has(stray.ino)) byIno.set(stray.ino, []);
      byIno.get(stray.ino)!.push(stray);
    }
    for (const [strayIno, list] of byIno) {
      if (ino === undefined) await this.exclusive(strayIno, () => this.collectOf(strayIno, list));
      else await this.collectOf(strayIno, list);
    }
  }

  /** The strays of one inode; to be run while no repair or move of it runs. */
  async collectOf(ino: number, strays: Stray[] = [...this.store.strays.values()].filter((s) => s.ino === ino)): Promise<void> {
    if (strays.length === 0) return;
    const inode = await this.store.run((tx) => tx.inode(ino), false);
    const done: Stray[] = [];
    for (const stray of strays) {
      const layout = inode?.layout;
      const slot = layout ? slotOf(layout, stray.object, stray.replica) : -1;
      // in the layout, or the target of a move of its slot
      const inLayout = layout && stray.object < layout.nodes.length
        && (replicasOf(layout, stray.object)[stray.replica]?.node === stray.node || moveTargetOf(layout, slot) === stray.node);
      if (inLayout) {
        done.push(stray); // the layout has it there (a move back): it is no stray
        continue;
      }
      const admin = this.cluster.adminOf(stray.node);
      if (admin === 'removed' && !this.cluster.isLive(stray.node)) {
        done.push(stray); // a node removed and gone takes its copies with it
        continue;
      }
      if (!this.cluster.isLive(stray.node)) continue; // removed once it answers
      try {
        await this.cluster.agent(stray.node).remove([replicaKey(ino, stray.object, stray.replica)]);
        done.push(stray);
        this.removed++;
      } catch (err) {
        log.debug(`removing a stray copy of inode ${ino} object ${stray.object} from node ${stray.node}: ${(err as Error).message}`);
      }
    }
    if (done.length > 0) await this.store.run((tx) => done.forEach((stray) => tx.setStray(stray, false)), true);
  }
}
