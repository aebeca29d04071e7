// Truncations of a file's copies (ReplicaIo.truncate) against agents played by
// the test: stale copies are cut too, and one that a repair fenced, which
// refuses the cut, is told to the caller, which marks it stale again once the
// size is committed (see docs/replication.md, Fencing).
import { expect, it } from 'vitest';
import { E, FsError } from '../../src/common/errno.js';
import type { ObjectIo } from '../../src/agent/objectStore.js';
import { ReplicaIo } from '../../src/replication/objects.js';
import type { Layout, ObjectKey } from '../../src/rpc/messages.js';

/** An agent that records the truncations it gets, or refuses them with `refuse`. */
function agent(cut: { node: number; key: ObjectKey; length: number }[], node: number, refuse: number | null): ObjectIo {
  return {
    async truncate(key: ObjectKey, length: number) {
      if (refuse !== null) throw new FsError(refuse);
      cut.push({ node, key, length });
    },
  } as unknown as ObjectIo;
}

it('cuts good and stale copies under the layout\'s generation; a stale copy fenced by a repair is told, one that fails otherwise is not', async () => {
  const cut: { node: number; key: ObjectKey; length: number }[] = [];
  // object 0 on nodes 1 (good) and 2 (stale, fenced); object 1 on nodes 3 (good) and 4 (stale, away)
  const refusals: Record<number, number | null> = { 1: null, 2: E.ESTALE, 3: null, 4: E.EIO };
  const replicas = new ReplicaIo({ get: async (node) => agent(cut, node, refusals[node]) }, 1);
  const layout: Layout = { unitBytes: 65536, nodes: [1, 3], replicas: 2, mirrors: [2, 4], stale: [1, 3], gen: 7 };
  const fencedStale: number[] = [];
  const failed = [
    ...(await replicas.truncate(2 ** 32, layout, 0, 100, new Set(), fencedStale)),
    ...(await replicas.truncate(2 ** 32, layout, 1, 0, new Set(), fencedStale)),
  ];
  expect(failed).toEqual([]);
  expect(fencedStale).toEqual([1]);
  expect(cut).toEqual([
    { node: 1, key: { ino: 2 ** 32, index: 0, replica: 0, gen: 7 }, length: 100 },
    { node: 3, key: { ino: 2 ** 32, index: 1, replica: 0, gen: 7 }, length: 0 },
  ]);
});
