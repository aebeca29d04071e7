// Where copies go: never two on a node, apart in failure domains when there are
// enough of them, spread evenly.
import { describe, expect, it } from 'vitest';
import { makeLayout } from '../../src/layout/placement.js';
import { replicasOf } from '../../src/layout/replicas.js';

const policy = { unitBytes: 0, count: 0, replicas: 2 };

describe('placement of copies', () => {
  it('puts the copies of each object on distinct nodes, each node holding as many', () => {
    const held = new Map<number, number>();
    for (let ino = 2 ** 32; ino < 2 ** 32 + 30; ino++) {
      const layout = makeLayout(ino, policy, null, { nodeIds: [1, 2, 3, 4] });
      for (let object = 0; object < layout.nodes.length; object++) {
        const nodes = replicasOf(layout, object).map((r) => r.node);
        expect(new Set(nodes).size).toBe(2);
        for (const node of nodes) held.set(node, (held.get(node) ?? 0) + 1);
      }
    }
    expect(new Set(held.values()).size).toBe(1);
  });

  it('keeps the copies of an object in different failure domains when there are enough', () => {
    const domains: Record<number, string> = { 1: 'rack-a', 2: 'rack-a', 3: 'rack-a', 4: 'rack-b', 5: 'rack-b' };
    for (let ino = 2 ** 32; ino < 2 ** 32 + 30; ino++) {
      const layout = makeLayout(ino, policy, null, { nodeIds: [1, 2, 3, 4, 5], domainOf: (id) => domains[id] });
      for (let object = 0; object < layout.nodes.length; object++) {
        const copies = replicasOf(layout, object).map((r) => domains[r.node]);
        expect(new Set(copies).size).toBe(2);
      }
    }
    // three copies, two domains: both used, never a node twice
    const three = makeLayout(2 ** 32, { ...policy, replicas: 3 }, null, { nodeIds: [1, 2, 3, 4, 5], domainOf: (id) => domains[id] });
    for (let object = 0; object < three.nodes.length; object++) {
      const nodes = replicasOf(three, object).map((r) => r.node);
      expect(new Set(nodes).size).toBe(3);
      expect(new Set(nodes.map((n) => domains[n])).size).toBe(2);
    }
  });

  it('leaves copies unplaced when there are fewer nodes than copies', () => {
    const layout = makeLayout(2 ** 32, policy, null, { nodeIds: [7] });
    expect(replicasOf(layout, 0).map((r) => r.node)).toEqual([7, 0]);
  });
});
