// Where a new file's stripe objects go. The metadata service places files, and
// so does a node creating files under a delegation (with the policy and members
// the delegation gave it): both through this one function.
import { E, FsError } from '../common/errno.js';
import { STRIPE_UNIT_DEFAULT_BYTES } from '../common/limits.js';
import type { Layout, StripePolicy } from '../rpc/messages.js';

/** A layout for a new file: the policy's unit, count and replicas, over the member
 *  nodes, starting at a node picked by inode number so that files spread evenly.
 *  Replica j of object i goes to the j-th node after the first replica's in id
 *  order, so that the copies of an object never share a node; copies that no
 *  node is left for stay unplaced (0) until repair finds one. */
export function makeLayout(ino: number, policy: StripePolicy | null, defaultPolicy: StripePolicy | null, nodeIds: number[],
  domainOf: (nodeId: number) => string = () => ''): Layout {
  if (nodeIds.length === 0) throw new FsError(E.ENOSPC, 'no storage nodes');
  const sorted = [...nodeIds].sort((a, b) => a - b);
  const unitBytes = policy?.unitBytes || defaultPolicy?.unitBytes || STRIPE_UNIT_DEFAULT_BYTES;
  const count = Math.min(policy?.count || defaultPolicy?.count || sorted.length, sorted.length);
  const replicas = policy?.replicas || defaultPolicy?.replicas || 1;
  const start = ino % sorted.length;
  const nodes = Array.from({ length: count }, (_, i) => sorted[(start + i) % sorted.length]);
  const mirrors: number[] = [];
  for (let i = 0; i < count; i++) {
    const holding = [nodes[i]];
    for (let j = 1; j < replicas; j++) {
      const node = nextCopyNode(sorted, (start + i) % sorted.length, holding, domainOf);
      mirrors.push(node);
      if (node !== 0) holding.push(node);
    }
  }
  return { unitBytes, nodes, replicas, mirrors, stale: [] };
}

/** The node for one more copy of an object whose copies are on `holding`: the
 *  first after position `from` in the ring of sorted nodes whose failure domain
 *  none of them has (an empty domain is the node's own), else the first that
 *  holds no copy; 0 when every node holds one. */
export function nextCopyNode(sorted: number[], from: number, holding: number[], domainOf: (nodeId: number) => string): number {
  const domainKey = (id: number) => domainOf(id) || `node ${id}`;
  const used = new Set(holding.map(domainKey));
  let fallback = 0;
  for (let step = 1; step <= sorted.length; step++) {
    const node = sorted[(from + step) % sorted.length];
    if (holding.includes(node)) continue;
    if (!used.has(domainKey(node))) return node;
    if (fallback === 0) fallback = node;
  }
  return fallback;
}
