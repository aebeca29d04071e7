// A node's batches of opens and last closes (src/vfs/closer.ts), against a
// service played by the test: what each batch says, and opens told again when a
// close may have overtaken them.
import { describe, expect, it } from 'vitest';
import { Closer } from '../../src/vfs/closer.js';
import type { MetaClient } from '../../src/meta/client.js';

interface Sent { inos: number[]; opens: number[]; answer: () => void }

function setup() {
  const sent: Sent[] = [];
  const meta = {
    close: (inos: number[], _nodeId: number, opens: number[]) => new Promise<void>((resolve) => sent.push({ inos, opens, answer: resolve })),
  } as unknown as MetaClient;
  return { closer: new Closer(meta, 2), sent };
}

/** Lets the batch's chain of promises run. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('batches of opens and closes', () => {
  it('an open made without a call and its close in one batch cost nothing', async () => {
    const { closer, sent } = setup();
    closer.opened(7, true);
    expect(closer.untold(7)).toBe(true);
    await closer.close(7);
    await closer.tellNow();
    expect(sent).toEqual([]);
  });

  it('an open without a call is told with the next batch, before the service may need it', async () => {
    const { closer, sent } = setup();
    closer.opened(7, true);
    const told = closer.tellNow();
    await settle();
    expect(sent.map(({ inos, opens }) => ({ inos, opens }))).toEqual([{ inos: [], opens: [7] }]);
    expect(closer.untold(7)).toBe(true); // sent, not answered
    sent[0].answer();
    await told;
    expect(closer.untold(7)).toBe(false);
  });

  it('a close still waiting is dropped by a new open: the service keeps counting the first', async () => {
    const { closer, sent } = setup();
    void closer.close(7);
    closer.opened(7, true);
    await closer.tellNow();
    expect(sent).toEqual([]);
  });

  it('after a close on its way, or sent while an open was asked, the open is told again', async () => {
    const { closer, sent } = setup();
    void closer.close(7);
    void closer.tellNow();
    await settle();
    expect(sent.length).toBe(1);
    // the close is on its way: a new open (made without a call) follows it
    closer.opened(7, true);
    sent[0].answer();
    await settle();
    const second = closer.tellNow();
    await settle();
    expect(sent[1].opens).toEqual([7]);
    sent[1].answer();
    await second;
    // an open asked of the service while a close of the inode went out: told again
    const epoch = closer.epoch(7);
    void closer.close(7);
    const third = closer.tellNow();
    await settle();
    sent[2].answer();
    await third;
    closer.opened(7, false, epoch);
    const fourth = closer.tellNow();
    await settle();
    expect(sent[3].opens).toEqual([7]);
    sent[3].answer();
    await fourth;
    // and not when no close went out meanwhile
    closer.opened(8, false, closer.epoch(8));
    await closer.tellNow();
    expect(sent.length).toBe(4);
    // a create (the inode unknown until answered) counts every close sent: one
    // of 9 sent before it is not told again, one of 10 sent during it is
    void closer.close(9);
    const fifth = closer.tellNow();
    await settle();
    sent[4].answer();
    await fifth;
    const before = closer.closesSoFar();
    void closer.close(10);
    const sixth = closer.tellNow();
    await settle();
    sent[5].answer();
    await sixth;
    closer.opened(9, false, before);
    closer.opened(10, false, before);
    const seventh = closer.tellNow();
    await settle();
    expect(sent[6].opens).toEqual([10]);
    sent[6].answer();
    await seventh;
  });
});
