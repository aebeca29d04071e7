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
export function makeLayout(ino: number, policy: StripePolicy | null, defaultPolicy: StripePolicy | null, nodeIds: number[]): Layout {
  if (nodeIds.length === 0) throw new FsError(E.ENOSPC, 'no storage nodes');
  const sorted = [...nodeIds].sort((a, b) => a - b);
  const unitBytes = policy?.unitBytes || defaultPolicy?.unitBytes || STRIPE_UNIT_DEFAULT_BYTES;
  const count = Math.min(policy?.count || defaultPolicy?.count || sorted.length, sorted.length);
  const replicas = policy?.replicas || defaultPolicy?.replicas || 1;
  const start = ino % sorted.length;
  const nodes = Array.from({ length: count }, (_, i) => sorted[(start + i) % sorted.length]);
  const mirrors: number[] = [];
  for (let i = 0; i < count; i++) {
    for (let j = 1; j < replicas; j++) mirrors.push(j < sorted.length ? sorted[(start + i + j) % sorted.length] : 0);
  }
  return { unitBytes, nodes, replicas, mirrors, stale: [] };
}
