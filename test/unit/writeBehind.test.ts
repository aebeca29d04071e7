// Write-behind against agents that answer in random order: whatever the order
// of the replies, the objects end as the writes left them, and a failure is
// reported, once, by the next drain.
import { describe, expect, it } from 'vitest';
import { E, FsError } from '../../src/common/errno.js';
import { mapRange } from '../../src/layout/stripe.js';
import type { ObjectIo } from '../../src/agent/objectStore.js';
import type { AgentPool } from '../../src/vfs/agents.js';
import { ReplicaIo } from '../../src/replication/objects.js';
import { WRITE_BEHIND_BYTES, WriteBehind, fillingUnitsMax } from '../../src/vfs/writeBehind.js';

function generator(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Objects in memory; each write lands after a random delay, and is answered
 *  with the object's length then (as an agent answers with its allocated bytes). */
class SlowObjects implements Partial<ObjectIo> {
  readonly objects = new Map<number, Buffer>();
  failWith: number | null = null;

  constructor(private readonly random: () => number) {}

  async write(key: { index: number }, offset: number, data: Uint8Array): Promise<number> {
    const copy = Buffer.from(data);
    await new Promise((resolve) => setTimeout(resolve, Math.floor(this.random() * 4)));
    if (this.failWith) throw new FsError(this.failWith);
    let object = this.objects.get(key.index) ?? Buffer.alloc(0);
    if (object.length < offset + copy.length) object = Buffer.concat([object, Buffer.alloc(offset + copy.length - object.length)]);
    copy.copy(object, offset);
    this.objects.set(key.index, object);
    // answered a moment later: replies come in another order than the writes landed
    await new Promise((resolve) => setTimeout(resolve, Math.floor(this.random() * 4)));
    return object.length;
  }
}

function setup(seed: number) {
  const random = generator(seed);
  const agent = new SlowObjects(random);
  const pool = { get: async () => agent as unknown as ObjectIo } as unknown as AgentPool;
  const layout = { unitBytes: 64 * 1024, nodes: [1, 2, 3], replicas: 1 };
  const file = { ino: 2 ** 32, layout, unsynced: new Set<number>(), failedSlots: new Set<number>(), touched: new Set<number>(), allocation: { byObject: new Map<number, number>() } };
  return { random, agent, layout, file, writer: new WriteBehind(new ReplicaIo(pool, 1)).writer(file) };
}

describe('write-behind', () => {
  it('leaves the objects as the writes did, whatever order the agents answer in', async () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const { random, agent, layout, file, writer } = setup(seed);
      const model = Buffer.alloc(1024 * 1024);
      let end = 0;
      const writes: Promise<void>[] = [];
      for (let i = 0; i < 300; i++) {
        // sequential runs, overwrites of the same bytes, and random jumps
        const offset = random() < 0.5 ? end % (model.length - 70_000) : Math.floor(random() * (model.length - 70_000));
        const length = 1 + Math.floor(random() * 70_000);
        const data = Buffer.alloc(length, i & 0xff);
        data.copy(model, offset);
        end = offset + length;
        writes.push(writer.write(offset, data));
        if (random() < 0.3) await writes[writes.length - 1];
      }
      await Promise.all(writes);
      await writer.drain();
      expect(writer.idle).toBe(true);
      for (const run of mapRange(layout.unitBytes, 3, 0, model.length)) {
        const object = agent.objects.get(run.object) ?? Buffer.alloc(0);
        for (const piece of run.pieces) {
          const got = Buffer.alloc(piece.length);
          object.copy(got, 0, piece.objectOffset, piece.objectOffset + piece.length);
          expect(got.equals(model.subarray(piece.fileOffset, piece.fileOffset + piece.length)), `seed ${seed} at ${piece.fileOffset}`).toBe(true);
        }
      }
      // what the objects take, from the replies alone: the most each object was told
      expect(file.allocation.byObject).toEqual(new Map([...agent.objects].map(([index, object]) => [index, object.length])));
    }
  });

  it('small writes all over a file go to the agents in groups, within a quarter of the buffers', async () => {
    const { agent, layout, writer } = setup(11);
    const sent: number[] = [];
    const write = agent.write.bind(agent);
    agent.write = (key, offset, data) => {
      sent.push(offset);
      return write(key, offset, data);
    };
    const units = fillingUnitsMax(layout.unitBytes);
    expect(units).toBe(16);
    // a 4 KiB write in each of units + 1 units: the last sends the older half, together
    for (let unit = 0; unit <= units; unit++) await writer.write(unit * layout.unitBytes + 100, Buffer.alloc(4096, unit));
    expect(sent.length).toBe(units / 2);
    await writer.drain();
    expect(sent.length).toBe(units + 1);
    // large units: a file never holds more than a quarter of the mount's buffers, nor fewer than 4
    expect(fillingUnitsMax(4 * 1024 * 1024) * 4 * 1024 * 1024).toBeLessThanOrEqual(WRITE_BEHIND_BYTES / 4);
    expect(fillingUnitsMax(64 * 1024 * 1024)).toBe(4);
  });

  it('reports a failed send once, at the next drain or write', async () => {
    const { agent, writer } = setup(9);
    agent.failWith = E.ENOSPC;
    await writer.write(0, Buffer.alloc(64 * 1024, 1)); // a whole unit: sent at once
    await expect(writer.drain()).rejects.toMatchObject({ errno: E.ENOSPC });
    await writer.drain();
    await writer.write(10, Buffer.alloc(5, 2));
    await writer.settle();
    await expect(writer.write(20, Buffer.alloc(5, 3))).rejects.toMatchObject({ errno: E.ENOSPC });
  });
});
