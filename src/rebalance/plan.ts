// Where moved copies go: the arithmetic of drains and rebalances, apart from
// any I/O (unit-tested in test/unit/rebalance-plan.test.ts).
//
// Each node that takes data has a target: its share of the stored bytes in
// proportion to its weight (its capacity). A rebalance moves copies from nodes
// above their target to nodes below it until every node is within
// BALANCE_TOLERANCE of its target; a drain moves every copy off the draining
// nodes, to the nodes furthest below their targets. Either way a copy never
// goes to a node holding another copy of its object, and goes to a failure
// domain none of the object's other copies is in when there is one.

/** A rebalance ends when every node holds its target share, give or take this fraction of the target. */
export const BALANCE_TOLERANCE = 0.05;

export class Projection {
  /** Bytes of copies on each node, as they will be once the planned moves are made. */
  readonly stored = new Map<number, number>();
  /** Bytes each node that takes data should hold. */
  readonly target = new Map<number, number>();

  constructor(stored: Map<number, number>, weights: Map<number, number>) {
    // the bytes on nodes that take no data (down, in maintenance, draining) are not shared out
    let total = 0;
    for (const [node, bytes] of stored) {
      this.stored.set(node, bytes);
      if ((weights.get(node) ?? 0) > 0) total += bytes;
    }
    const weightSum = [...weights.values()].reduce((sum, w) => sum + w, 0);
    for (const [node, weight] of weights) {
      if (!(weight > 0) || !(weightSum > 0)) continue;
      this.target.set(node, (total * weight) / weightSum);
    }
  }

  storedOn(node: number): number {
    return this.stored.get(node) ?? 0;
  }

  /** How full the node is against its target (Infinity: it takes no data). */
  fill(node: number, extraBytes = 0): number {
    const target = this.target.get(node);
    if (target === undefined) return Infinity;
    return (this.storedOn(node) + extraBytes) / Math.max(target, 1);
  }

  /** Whether `bytes` should move off the node: it is above its target by more
   *  than the tolerance, or above it at all while another node is below its
   *  own by more than the tolerance; and it does not end up below by more. */
  over(node: number, bytes: number): boolean {
    const target = this.target.get(node) ?? 0;
    const stored = this.storedOn(node);
    if (stored - bytes < target * (1 - BALANCE_TOLERANCE)) return false;
    return stored > target * (1 + BALANCE_TOLERANCE) || (stored > target && this.anyUnder());
  }

  private anyUnder(): boolean {
    for (const [node, target] of this.target) if (this.storedOn(node) < target * (1 - BALANCE_TOLERANCE)) return true;
    return false;
  }

  /** Whether the node may take `bytes` and stay within the tolerance above its target. */
  roomFor(node: number, bytes: number): boolean {
    const target = this.target.get(node);
    return target !== undefined && this.storedOn(node) + bytes <= target * (1 + BALANCE_TOLERANCE);
  }

  move(from: number, to: number, bytes: number): void {
    this.stored.set(from, this.storedOn(from) - bytes);
    this.stored.set(to, this.storedOn(to) + bytes);
  }

  /** Whether every node that takes data is within the tolerance of its target. */
  balanced(): boolean {
    for (const [node, target] of this.target) {
      if (Math.abs(this.storedOn(node) - target) > target * BALANCE_TOLERANCE) return false;
    }
    return true;
  }

  /** Bytes that must leave the nodes above their targets. */
  excessBytes(): number {
    let excess = 0;
    for (const [node, bytes] of this.stored) excess += Math.max(0, bytes - (this.target.get(node) ?? 0));
    return excess;
  }
}

/** The node for a copy moved off `from`: one of `candidates` holding no copy of
 *  the object (`holding`: the nodes of its copies, `from` included), in a
 *  failure domain none of the other copies is in if there is one, the least
 *  full against its target; 0 if none can take it. `acceptable` narrows the
 *  choice (a rebalance takes only nodes with room). */
export function chooseTarget(candidates: number[], holding: number[], from: number, domainOf: (node: number) => string,
  projection: Projection, bytes: number, acceptable: (node: number) => boolean = () => true): number {
  const domainKey = (node: number) => domainOf(node) || `node ${node}`;
  const otherDomains = new Set(holding.filter((node) => node !== from && node !== 0).map(domainKey));
  const free = candidates.filter((node) => !holding.includes(node) && projection.target.has(node) && acceptable(node));
  const apart = free.filter((node) => !otherDomains.has(domainKey(node)));
  const pool = apart.length > 0 ? apart : free;
  let best = 0;
  let bestFill = Infinity;
  for (const node of [...pool].sort((a, b) => a - b)) {
    const fill = projection.fill(node, bytes);
    if (fill < bestFill) {
      best = node;
      bestFill = fill;
    }
  }
  return best;
}

/** Seed-style node lists: "3", "2 5 7", "-n16:18" or "16:18", "2,4:6". */
export function parseNodeIds(words: string[]): number[] {
  const ids: number[] = [];
  for (const word of words) {
    for (const part of word.replace(/^-n/, '').split(',')) {
      if (part === '') continue;
      const range = /^(\d+)(?::(\d+))?$/.exec(part);
      if (!range) throw new Error(`not a node id or a range of them (N, N:M, -nN:M): ${JSON.stringify(word)}`);
      const first = Number(range[1]);
      const last = range[2] === undefined ? first : Number(range[2]);
      if (first < 1 || last < first || last - first >= 4096 || last > 2 ** 32 - 1) throw new Error(`bad node range: ${JSON.stringify(part)}`);
      for (let id = first; id <= last; id++) if (!ids.includes(id)) ids.push(id);
    }
  }
  if (ids.length === 0) throw new Error('no node id given');
  return ids;
}
