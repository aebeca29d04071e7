// The members list of the root (src/meta/cluster.ts): a node that joins while
// the others' space is being probed is in the list that probe answers, never
// left out of it for the next second (its peers would refuse to write to it:
// "not a member"). The store and the root's own agent are played by the test.
import { describe, expect, it } from 'vitest';
import { Cluster } from '../../src/meta/cluster.js';
import type { MetaStore } from '../../src/meta/store.js';
import type { Namespace } from '../../src/meta/namespace.js';
import type { ObjectStore } from '../../src/agent/objectStore.js';
import type { NodeRecord } from '../../src/rpc/messages.js';

describe('the members list', () => {
  it('holds a node that joined while it was being probed', async () => {
    const nodes = new Map<number, NodeRecord>([[1, { id: 1, uuid: 'u1', address: '127.0.0.1:1', dataAddress: '', joinedSec: 0 }]]);
    const store = {
      nodes,
      fs: { fsid: 'fs' },
      run: async (fn: (tx: { putNode(node: NodeRecord): void }) => void) => fn({ putNode: (node) => nodes.set(node.id, node) }),
    } as unknown as MetaStore;
    const namespace = { replaceOpens: async () => [], opensAnnounced: async () => {} } as unknown as Namespace;
    // the first probe of node 1's space waits for the test; later ones answer at once
    const space = { capacityBytes: 1, usedBytes: 0, freeBytes: 1 };
    let answerSpace!: () => void;
    let probes = 0;
    const objects = {
      space: () => (probes++ === 0 ? new Promise((resolve) => (answerSpace = () => resolve(space))) : Promise.resolve(space)),
    } as unknown as ObjectStore;
    const cluster = new Cluster(store, namespace, { nodeId: 1, objects }, () => 0);
    try {
      const probing = cluster.nodes();
      // node 2 joins while node 1's space is asked for (its agent at a port nobody listens on)
      const joined = await cluster.register({ nodeId: 2, nodeUuid: 'u2', address: '127.0.0.1:9', dataAddress: '', fsid: 'fs', openInos: [], incarnation: 'i2' });
      expect(joined.errno).toBe(0);
      answerSpace();
      // the probe begun before the join is made again, with node 2 in it
      const listed = await probing;
      expect(listed.map((n) => n.id)).toEqual([1, 2]);
      expect((await cluster.nodes()).map((n) => n.id)).toEqual([1, 2]);
    } finally {
      cluster.close();
    }
  }, 10_000);
});
