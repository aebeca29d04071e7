// Where a new file's stripe objects go. The metadata service places files, and
// so does a node creating files under a delegation (with the policy and members
// the delegation gave it): both through this one function.
//
// Placement policies (StripePolicy.placement):
// - round-robin: the objects on consecutive nodes from one picked by inode
//   number, so that files spread evenly;
// - local-first: the first copy of every object on the node that creates the
//   file (checkpoints: written at local-disk speed), the other copies on
//   others (partners), object i's from the i-th node after it;
// - any other name (free-space, least-loaded, or a policy module of the
//   scheduler): nodes drawn in proportion to the weights the policy gives them
//   from the probes (src/scheduler). A policy without weights (unloaded,
//   failed, no values yet) falls back to round-robin, never to an error.
import { E, FsError } from '../common/errno.js';
import { STRIPE_UNIT_DEFAULT_BYTES } from '../common/limits.js';
import type { Layout, StripePolicy } from '../rpc/messages.js';

export const ROUND_ROBIN = 'round-robin';
export const LOCAL_FIRST = 'local-first';
export const FREE_SPACE = 'free-space';
export const LEAST_LOADED = 'least-loaded';
export const BUILTIN_PLACEMENTS = [ROUND_ROBIN, LOCAL_FIRST, FREE_SPACE, LEAST_LOADED];
/** A placement policy's name, as a directory name in the scheduler tree. */
export const PLACEMENT_NAME = /^[a-z0-9][a-z0-9_.-]{0,62}$/;

export interface PlacementInput {
  /** The nodes that may take new data (up, admitted, not full). */
  nodeIds: number[];
  domainOf?: (nodeId: number) => string;
  /** The node creating the file (0: unknown). */
  writerNodeId?: number;
  /** A weighing policy's weight of each node; null when it has none. */
  weightsOf?: (placement: string) => Map<number, number> | null;
}

/** The placement policy a directory's (or the file system's) policy names. */
export function placementOf(policy: StripePolicy | null, defaultPolicy: StripePolicy | null): string {
  return policy?.placement || defaultPolicy?.placement || ROUND_ROBIN;
}

/** A layout for a new file: the policy's unit, count and replicas over the
 *  nodes its placement picks. Replica j of object i goes to the j-th node after
 *  the first replica's in id order, so that the copies of an object never share
 *  a node; copies that no node is left for stay unplaced (0) until repair finds one. */
export function makeLayout(ino: number, policy: StripePolicy | null, defaultPolicy: StripePolicy | null, input: PlacementInput): Layout {
  const { nodeIds } = input;
  const domainOf = input.domainOf ?? (() => '');
  if (nodeIds.length === 0) throw new FsError(E.ENOSPC, 'no storage nodes');
  const sorted = [...nodeIds].sort((a, b) => a - b);
  const unitBytes = policy?.unitBytes || defaultPolicy?.unitBytes || STRIPE_UNIT_DEFAULT_BYTES;
  const count = Math.min(policy?.count || defaultPolicy?.count || sorted.length, sorted.length);
  const replicas = policy?.replicas || defaultPolicy?.replicas || 1;
  const placement = placementOf(policy, defaultPolicy);
  const positions = firstPositions(ino, count, sorted, placement, input);
  const nodes = positions.map((p) => sorted[p.first]);
  const mirrors: number[] = [];
  for (const position of positions) {
    const holding = [sorted[position.first]];
    for (let j = 1; j < replicas; j++) {
      const node = nextCopyNode(sorted, position.partnersAfter, holding, domainOf);
      mirrors.push(node);
      if (node !== 0) holding.push(node);
    }
  }
  return { unitBytes, nodes, replicas, mirrors, stale: [] };
}

/** For each object: the position in `sorted` of its first copy, and the
 *  position after which its other copies are looked for. */
function firstPositions(ino: number, count: number, sorted: number[], placement: string, input: PlacementInput): { first: number; partnersAfter: number }[] {
  const start = ino % sorted.length;
  const roundRobin = () => Array.from({ length: count }, (_, i) => ({ first: (start + i) % sorted.length, partnersAfter: (start + i) % sorted.length }));
  if (placement === ROUND_ROBIN) return roundRobin();
  if (placement === LOCAL_FIRST) {
    const local = sorted.indexOf(input.writerNodeId ?? 0);
    if (local < 0) return roundRobin();
    // object i's partners start i nodes further, so that a node's loss costs
    // every object at most one copy and the partners share the second copies
    return Array.from({ length: count }, (_, i) => ({ first: local, partnersAfter: (local + (i % (sorted.length - 1 || 1))) % sorted.length }));
  }
  const weights = input.weightsOf?.(placement) ?? null;
  const drawn = weights ? drawWeighted(ino, count, sorted, weights) : null;
  if (!drawn) return roundRobin();
  return drawn.map((first) => ({ first, partnersAfter: first }));
}

/** `count` distinct positions of `sorted`, drawn with probability in
 *  proportion to their weights by a generator seeded with the inode number
 *  (the same file always gets the same nodes); null if no node weighs anything. */
export function drawWeighted(ino: number, count: number, sorted: number[], weights: Map<number, number>): number[] | null {
  const left = sorted.map((id, position) => ({ position, weight: Math.max(0, Number.isFinite(weights.get(id)) ? weights.get(id)! : 0) }));
  if (!left.some((c) => c.weight > 0)) return null;
  const random = mulberry32(ino);
  const chosen: number[] = [];
  while (chosen.length < count && left.length > 0) {
    const total = left.reduce((sum, c) => sum + c.weight, 0);
    let pick = 0;
    if (total > 0) {
      let point = random() * total;
      while (pick < left.length - 1 && point >= left[pick].weight) point -= left[pick++].weight;
    }
    chosen.push(left[pick].position);
    left.splice(pick, 1);
  }
  return chosen;
}

function mulberry32(seed: number): () => number {
  let a = (seed ^ Math.floor(seed / 2 ** 32)) >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
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
