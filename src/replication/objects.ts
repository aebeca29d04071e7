// Reads and writes of a file's stripe objects over their replicas: the one way
// clients (and the root's appends and repairs) reach object data.
//
// Reads go to one good copy (this node's own if it has one, else the first that
// answers) and fall over to the next when a copy's node is absent or its data
// fails its checksum. Writes go to every good copy at once and succeed when one
// took them: the copies that did not are reported, so that the writer marks them
// stale before fsync or close returns (see OpenFiles.commit), and skips them.
import { E, FsError, errnoOf } from '../common/errno.js';
import { log } from '../common/log.js';
import { goodReplicas, moveTargetOf, replicasOf, slotOf, type Replica } from '../layout/replicas.js';
import type { ObjectIo } from '../agent/objectStore.js';
import type { Layout, ObjectKey } from '../rpc/messages.js';

export interface AgentSource {
  get(nodeId: number): Promise<ObjectIo>;
}

/** Waits for room to send `bytes` to a node; the returned function gives it back. */
export type SendBudget = (nodeId: number, bytes: number) => Promise<() => void>;

/** gen: of the layout a write or truncation is made under (see Layout.gen); 0 for other calls. */
export function replicaKey(ino: number, object: number, replica: number, gen = 0): ObjectKey {
  return gen ? { ino, index: object, replica, gen } : { ino, index: object, replica };
}

export class ReplicaIo {
  /** Checksum mismatches met by this process's reads. */
  checksumErrors = 0;

  /** onCorrupt: a copy's data failed its checksum (the slot is given): it must be
   *  marked stale and repaired; the read went on with another copy. */
  constructor(
    readonly agents: AgentSource,
    private readonly localNodeId: number,
    private readonly onCorrupt: (ino: number, slot: number) => void = () => {},
  ) {}

  /** Up to length bytes of the object at offset (fewer at its end), from one good copy. */
  async read(ino: number, layout: Layout, object: number, offset: number, length: number, into?: Buffer): Promise<Buffer> {
    const order = await this.readOrder(layout, object);
    let failure: unknown = null;
    for (const { replica, agent } of order) {
      try {
        return await agent.read(replicaKey(ino, object, replica.replica), offset, length, into);
      } catch (err) {
        failure ??= err;
        const errno = errnoOf(err);
        if (errno === E.EBADMSG) {
          this.checksumErrors++;
          log.warn(`inode ${ino} object ${object} replica ${replica.replica} on node ${replica.node}: ${(err as Error).message}; reading another copy`);
          this.onCorrupt(ino, slotOf(layout, object, replica.replica));
        } else if (errno !== E.EIO) {
          throw err;
        }
      }
    }
    throw new FsError(E.EIO, `no copy of object ${object} of inode ${ino} could be read${failure ? `: ${(failure as Error).message}` : ''}`);
  }

  /** The good copies to read, best first: those whose node answers, this node's
   *  own first; one held for failed is tried last. */
  private async readOrder(layout: Layout, object: number): Promise<{ replica: Replica; agent: ObjectIo }[]> {
    const found: { replica: Replica; agent: ObjectIo; rank: number }[] = [];
    for (const replica of goodReplicas(layout, object)) {
      let agent: ObjectIo;
      try {
        agent = await this.agents.get(replica.node);
      } catch {
        continue; // not a member any more
      }
      const rank = agent.answering === false ? 2 : replica.node === this.localNodeId ? 0 : 1;
      found.push({ replica, agent, rank });
    }
    return found.sort((a, b) => a.rank - b.rank);
  }

  /** Writes to every good copy not in `failed` (slots that failed before); returns
   *  the slots that failed now. Throws when no copy took the data. seen: told
   *  what each copy that took it takes on disk now (null: not told). */
  async write(ino: number, layout: Layout, object: number, offset: number, data: Uint8Array, failed: ReadonlySet<number>, budget?: SendBudget,
    seen?: (allocatedBytes: number | null) => void): Promise<number[]> {
    return this.onEveryCopy(layout, object, failed, async (replica, agent) => {
      const release = budget ? await budget(replica.node, data.length) : null;
      try {
        // (not inside seen?.(): an absent seen would skip the write with it)
        const allocatedBytes = await agent().then((a) => a.write(replicaKey(ino, object, replica.replica, layout.gen), offset, data, seen !== undefined));
        seen?.(allocatedBytes);
      } finally {
        release?.();
      }
    }, `write to object ${object} of inode ${ino}`);
  }

  /** Cuts every copy of the object to length, stale ones too: a copy that a repair
   *  makes good meanwhile must not keep bytes past the cut (see write for
   *  `failed` and the result; a stale copy that fails is not reported, but one
   *  that a repair fenced, which refused the cut, is added to fencedStale: the
   *  repair may make it good uncut, so it must be marked stale again once the
   *  new size is committed). */
  async truncate(ino: number, layout: Layout, object: number, length: number, failed: ReadonlySet<number>, fencedStale: number[] = []): Promise<number[]> {
    const stale = replicasOf(layout, object).filter((r) => r.node !== 0 && r.stale && !failed.has(slotOf(layout, object, r.replica)));
    const [failedNow] = await Promise.all([
      this.onEveryCopy(layout, object, failed, async (replica, agent) => {
        await (await agent()).truncate(replicaKey(ino, object, replica.replica, layout.gen), length);
      }, `truncation of object ${object} of inode ${ino}`),
      ...stale.map(async (r) => {
        try {
          await (await this.agents.get(r.node)).truncate(replicaKey(ino, object, r.replica, layout.gen), length);
        } catch (err) {
          if (errnoOf(err) === E.ESTALE) fencedStale.push(slotOf(layout, object, r.replica));
          // else stale already: repair cuts it to the file's size
        }
      }),
    ]);
    return failedNow as number[];
  }

  /** fallocate(2) of the object's bytes on every good copy not in `failed` (see
   *  write for `failed`); the slots that failed now, and a copy's ENOSPC if one
   *  had no room (room on some copies only is no room). */
  async fallocate(ino: number, layout: Layout, object: number, mode: number, offset: number, length: number, extend: boolean,
    failed: ReadonlySet<number>): Promise<{ failed: number[]; noSpace: unknown }> {
    let noSpace: unknown = null;
    const failedNow = await this.onEveryCopy(layout, object, failed, async (replica, agent) => {
      try {
        await (await agent()).fallocate(replicaKey(ino, object, replica.replica, layout.gen), mode, offset, length, extend);
      } catch (err) {
        if (errnoOf(err) === E.ENOSPC) noSpace ??= err;
        throw err;
      }
    }, `fallocate of object ${object} of inode ${ino}`);
    return { failed: failedNow, noSpace };
  }

  /** Makes the objects durable on every good copy (see write for `failed` and the result). */
  async sync(ino: number, layout: Layout, objects: number[], failed: ReadonlySet<number>): Promise<number[]> {
    const byNode = new Map<number, { keys: ObjectKey[]; slots: number[] }>();
    const copies = new Map<number, number>();
    for (const object of objects) {
      for (const replica of goodReplicas(layout, object)) {
        const slot = slotOf(layout, object, replica.replica);
        if (failed.has(slot)) continue;
        // the copy being made of it on another node too (see Layout.moves)
        for (const node of [replica.node, moveTargetOf(layout, slot)]) {
          if (node === 0) continue;
          let group = byNode.get(node);
          if (!group) byNode.set(node, (group = { keys: [], slots: [] }));
          group.keys.push(replicaKey(ino, object, replica.replica));
          group.slots.push(slot);
        }
        copies.set(object, (copies.get(object) ?? 0) + 1);
      }
    }
    const failedSlots = new Set<number>();
    let failure: unknown = null;
    await Promise.all([...byNode].map(async ([node, group]) => {
      try {
        await (await this.agents.get(node)).sync(group.keys);
      } catch (err) {
        failure ??= err;
        for (const slot of group.slots) failedSlots.add(slot);
      }
    }));
    const failedNow = [...failedSlots];
    const count = Math.max(1, layout.replicas || 1);
    for (const object of objects) {
      const synced = (copies.get(object) ?? 0) - failedNow.filter((slot) => Math.floor(slot / count) === object).length;
      if (synced <= 0) throw failure ?? new FsError(E.EIO, `no copy of object ${object} of inode ${ino} is left to sync`);
    }
    return failedNow;
  }

  /** Bytes of disk one copy of the file takes (for st_blocks), from the first copy that answers. */
  async allocated(ino: number, layout: Layout): Promise<number> {
    const sizes = await Promise.all(layout.nodes.map(async (_, object) => {
      for (const replica of goodReplicas(layout, object)) {
        try {
          return await (await this.agents.get(replica.node)).allocated(replicaKey(ino, object, replica.replica));
        } catch {
          // the next copy may tell
        }
      }
      throw new FsError(E.EIO, `no copy of object ${object} of inode ${ino} answers`);
    }));
    return sizes.reduce((a, b) => a + b, 0);
  }

  /** Removes every copy of every object of the file, stale ones too. */
  async remove(ino: number, layout: Layout): Promise<void> {
    const byNode = new Map<number, ObjectKey[]>();
    layout.nodes.forEach((_, object) => {
      for (const replica of replicasOf(layout, object)) {
        for (const node of [replica.node, moveTargetOf(layout, slotOf(layout, object, replica.replica))]) {
          if (node === 0) continue;
          if (!byNode.has(node)) byNode.set(node, []);
          byNode.get(node)!.push(replicaKey(ino, object, replica.replica));
        }
      }
    });
    await Promise.all([...byNode].map(async ([node, keys]) => (await this.agents.get(node)).remove(keys)));
  }

  /** Runs `each` on every good copy of the object not in `failed`, and on the
   *  node each is being moved to (see Layout.moves), at once; the slots of those
   *  that failed (on either node). Throws (the first error) when all failed. */
  private async onEveryCopy(layout: Layout, object: number, failed: ReadonlySet<number>,
    each: (replica: Replica, agent: () => Promise<ObjectIo>) => Promise<void>, what: string): Promise<number[]> {
    const targets = goodReplicas(layout, object).filter((r) => !failed.has(slotOf(layout, object, r.replica)));
    if (targets.length === 0) throw new FsError(E.EIO, `${what}: no good copy is left`);
    const failedNow = new Set<number>();
    const errors: unknown[] = [];
    const copies = targets.flatMap((replica) => {
      const movedTo = moveTargetOf(layout, slotOf(layout, object, replica.replica));
      return movedTo === 0 ? [replica] : [replica, { ...replica, node: movedTo }];
    });
    await Promise.all(copies.map(async (replica) => {
      try {
        await each(replica, () => this.agents.get(replica.node));
      } catch (err) {
        errors.push(err);
        failedNow.add(slotOf(layout, object, replica.replica));
        // a full disk is the writer's to hear of (ENOSPC), not worth a line per write
        if (errnoOf(err) !== E.ENOSPC) log.warn(`${what}, copy on node ${replica.node}: ${(err as Error).message}`);
      }
    }));
    if (failedNow.size === targets.length) throw errors[0];
    return [...failedNow];
  }
}
