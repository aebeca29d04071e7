// The bounded wait of callbacks (src/meta/coherence.ts), on its own.
import { describe, expect, it } from 'vitest';
import { Changes, Coherence } from '../../src/meta/coherence.js';

describe('callbacks', () => {
  it('wait for a node whose lease never ends (the root itself) as long as a lease, not 1 ms', async () => {
    const openOn = (ino: number) => (ino === 5 ? [1] : []);
    const coherence = new Coherence(openOn);
    let answered = 0;
    coherence.attach({
      nodeId: 1,
      waitingForCallbacks: 0,
      leaseUntilMs: () => Infinity,
      callback: () => new Promise<void>((resolve) => setTimeout(() => { answered++; resolve(); }, 30)),
    });
    try {
      const changes = new Changes();
      changes.inode(5, true, 0, 100);
      await coherence.invalidate(changes, 2);
      // the change was acknowledged only once node 1 had dropped its pages...
      expect(answered).toBe(1);
      // ...and node 1, having answered, is still trusted with grants
      expect(coherence.grant(1, 5, null)).toBeGreaterThan(0);
    } finally {
      coherence.close();
    }
  }, 10_000);
});
