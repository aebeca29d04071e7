// What a writer that crashed leaves behind: the bytes it wrote past the file's
// committed size stay in the stripe objects, and would show where zeros belong
// once the file is extended (by a truncation, or a write further on). When a
// node comes back after a crash (it registers with a new incarnation), the
// files its old process held open that no node holds now have their objects cut
// back to the committed size, before anyone opens, truncates or commits them
// again (Namespace.trimming holds those back). Nodes that cached the file are
// called back first: one that opened it without a call says so, and the file is
// then left alone.
import { log } from '../common/log.js';
import { isReg } from '../common/mode.js';
import { objectLength } from '../layout/stripe.js';
import type { Cluster } from './cluster.js';
import { Changes, type Coherence } from './coherence.js';
import type { Namespace } from './namespace.js';
import type { MetaStore } from './store.js';

export class CrashedWrites {
  constructor(
    private readonly store: MetaStore,
    private readonly namespace: Namespace,
    private readonly coherence: Coherence,
    private readonly cluster: Cluster,
  ) {}

  /** Cuts back the objects of files a crashed node process held open. */
  released(inos: number[]): void {
    for (const ino of inos) void this.namespace.trimming(ino, () => this.trim(ino));
  }

  private async trim(ino: number): Promise<void> {
    const inode = await this.store.run((tx) => tx.inode(ino));
    if (!inode || !isReg(inode.attr.mode) || inode.inlined || !inode.layout) return;
    const size = inode.attr.size;
    const changes = new Changes();
    changes.inode(ino, true, 0, size);
    await this.coherence.invalidate(changes, 0);
    // opened meanwhile, or without a call before: its writer's bytes are live ones
    if ([...this.namespace.openOn(ino)].length > 0) return;
    const { unitBytes, nodes } = inode.layout;
    await Promise.all(nodes.map((nodeId, index) =>
      this.cluster.agent(nodeId).truncate({ ino, index, replica: 0 }, objectLength(unitBytes, nodes.length, size, index))));
    log.info(`inode ${ino}: objects cut back to its size (${size} bytes) after its writer's node crashed`);
  }
}
