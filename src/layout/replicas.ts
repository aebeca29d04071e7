// Where the copies of a file's stripe objects are, and which of them may be read:
// the replica arithmetic of a Layout (see proto/kdfs.proto). Replica 0 of object i
// is on nodes[i]; replica j >= 1 on mirrors[i * (R - 1) + j - 1] (0: unplaced);
// slot i * R + j listed in stale means that copy missed writes.
import { E, FsError } from '../common/errno.js';
import type { Layout } from '../rpc/messages.js';

/** Most copies of an object a layout may ask for. */
export const REPLICAS_MAX = 8;

export interface Replica {
  /** Which copy (0: the first): part of the object's key on its node. */
  replica: number;
  /** Its node; 0 while unplaced. */
  node: number;
  stale: boolean;
}

/** R: the copies of each object the layout wants (old layouts say 0: one). */
export function replicaCount(layout: Layout): number {
  return Math.max(1, layout.replicas || 1);
}

export function slotOf(layout: Layout, object: number, replica: number): number {
  return object * replicaCount(layout) + replica;
}

/** Every copy of the object, first replica first. */
export function replicasOf(layout: Layout, object: number): Replica[] {
  const count = replicaCount(layout);
  if (!(object >= 0 && object < layout.nodes.length)) throw new RangeError(`object ${object} is not in the layout`);
  const stale = layout.stale ?? [];
  const replicas: Replica[] = [];
  for (let replica = 0; replica < count; replica++) {
    const node = replica === 0 ? layout.nodes[object] : layout.mirrors?.[object * (count - 1) + replica - 1] ?? 0;
    replicas.push({ replica, node, stale: stale.includes(object * count + replica) });
  }
  return replicas;
}

/** The copies that may be read and must be written: placed and not stale. */
export function goodReplicas(layout: Layout, object: number): Replica[] {
  return replicasOf(layout, object).filter((r) => r.node !== 0 && !r.stale);
}

/** Every node holding a copy of some object of the layout, each once. */
export function layoutNodes(layout: Layout): number[] {
  const nodes = new Set<number>(layout.nodes);
  for (const node of layout.mirrors ?? []) if (node !== 0) nodes.add(node);
  return [...nodes];
}

/** The layout with the slots added to its stale ones (a new object: layouts are shared). */
export function withStale(layout: Layout, slots: Iterable<number>): Layout {
  const stale = new Set(layout.stale ?? []);
  for (const slot of slots) stale.add(slot);
  return { ...layout, stale: [...stale].sort((a, b) => a - b) };
}

/** Whether every copy of every object is placed and good. */
export function layoutComplete(layout: Layout): boolean {
  return (layout.stale ?? []).length === 0 && !(layout.mirrors ?? []).includes(0);
}

/** A copy of the layout that may be changed (layouts are shared). */
export function cloneLayout(layout: Layout): Layout {
  return {
    ...layout, nodes: [...layout.nodes], mirrors: [...(layout.mirrors ?? [])], stale: [...(layout.stale ?? [])],
    moves: (layout.moves ?? []).map((m) => ({ ...m })),
  };
}

/** The node where the copy in `slot` is being moved to (see Layout.moves), or 0. */
export function moveTargetOf(layout: Layout, slot: number): number {
  return layout.moves?.find((m) => m.slot === slot)?.node ?? 0;
}

/** Sets the node of copy `replica` of the object in the layout. */
export function placeCopy(layout: Layout, object: number, replica: number, node: number): void {
  if (replica === 0) {
    layout.nodes[object] = node;
    return;
  }
  const index = object * (replicaCount(layout) - 1) + replica - 1;
  if (!(index < layout.mirrors!.length)) throw new FsError(E.EIO, `layout has no mirror ${replica} for object ${object}`);
  layout.mirrors![index] = node;
}
