// An agent's fence against a deposed metadata leader (src/agent/service.ts),
// when the node does not know the leadership's epoch yet (it just started).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ObjectStore } from '../../src/agent/objectStore.js';
import { agentHandlers } from '../../src/agent/service.js';
import { E } from '../../src/common/errno.js';
import { within } from '../../src/common/within.js';
import { FIRST_INO } from '../../src/meta/records.js';

let scratch: string | null = null;

afterEach(() => {
  if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
  scratch = null;
});

function store(): ObjectStore {
  scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'kdfs-epoch-'));
  ObjectStore.create(path.join(scratch, 'objects'));
  return new ObjectStore(path.join(scratch, 'objects'));
}

/** An epoch source not known yet, told later. */
function unknownEpoch(): { source: () => Promise<number>; tell: (epoch: number) => void } {
  let tell!: (epoch: number) => void;
  const known = new Promise<number>((resolve) => (tell = resolve));
  return { source: () => known, tell };
}

const settledSoon = async (promise: Promise<unknown>): Promise<boolean> => {
  let settled = false;
  void promise.then(() => (settled = true), () => (settled = true));
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setImmediate(resolve));
  return settled;
};

describe('an agent that does not know the leadership\'s epoch yet', () => {
  it('holds a call with an epoch until it knows, then refuses a deposed leader\'s', async () => {
    const objects = store();
    const key = { ino: FIRST_INO + 1, index: 0, replica: 0 };
    await objects.write(key, 0, Buffer.from('kept'));
    const epoch = unknownEpoch();
    const agent = agentHandlers(objects, 1, epoch.source);
    const removal = agent.Remove({ keys: [key], leaderEpoch: 3 });
    expect(await settledSoon(removal)).toBe(false);
    epoch.tell(4);
    await expect(removal).rejects.toMatchObject({ errno: E.ESTALE });
    expect((await objects.read(key, 0, 4)).toString()).toBe('kept');
  });

  it('serves the current leader\'s call once it knows, and a node\'s own (no epoch) at once', async () => {
    const objects = store();
    const key = { ino: FIRST_INO + 2, index: 0, replica: 0 };
    const epoch = unknownEpoch();
    const agent = agentHandlers(objects, 1, epoch.source);
    // a node's own write carries no epoch: nothing to wait for
    expect(await within(agent.Write({ key, offset: 0, data: Buffer.from('mine') }), 5_000, () => 'held')).toEqual({ errno: 0 });
    const truncation = agent.Truncate({ key, length: 2, leaderEpoch: 5 });
    expect(await settledSoon(truncation)).toBe(false);
    epoch.tell(5);
    await truncation;
    expect((await objects.read(key, 0, 4)).toString()).toBe('mi');
  });
});
