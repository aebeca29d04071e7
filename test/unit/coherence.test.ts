// The bounded wait of callbacks (src/meta/coherence.ts), on its own.
import { describe, expect, it } from 'vitest';
import { Changes, Coherence, GRANTS_PER_NODE_MAX } from '../../src/meta/coherence.js';

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

describe('the grant table', () => {
  it('holds half its grants for one node at most: past it, that node\'s new grants are refused, its renewals and other nodes\' grants are not', async () => {
    const coherence = new Coherence(() => []);
    const target = (nodeId: number) => ({ nodeId, waitingForCallbacks: 0, leaseUntilMs: () => Date.now() + 4000, callback: async () => {} });
    coherence.attach(target(2));
    coherence.attach(target(3));
    try {
      let refused = 0;
      for (let ino = 1; ino <= GRANTS_PER_NODE_MAX; ino++) if (coherence.grant(2, ino, null) === 0) refused++;
      expect(refused).toBe(0);
      expect(coherence.held(2)).toBe(GRANTS_PER_NODE_MAX);
      expect(coherence.grant(2, GRANTS_PER_NODE_MAX + 1, null)).toBe(0);
      // a directory's entries would be one grant more, too
      expect(coherence.grant(2, 7, 7)).toBe(0);
      expect(coherence.grant(2, 7, null)).toBeGreaterThan(0);
      expect(coherence.grant(3, GRANTS_PER_NODE_MAX + 1, 1)).toBeGreaterThan(0);
      expect(coherence.held(3)).toBe(2);
      // a change calls node 2 back about inode 7, which frees its room
      const changes = new Changes();
      changes.inode(7, false, 0, 0);
      await coherence.invalidate(changes, 3);
      expect(coherence.held(2)).toBe(GRANTS_PER_NODE_MAX - 1);
      expect(coherence.grant(2, GRANTS_PER_NODE_MAX + 2, null)).toBeGreaterThan(0);
    } finally {
      coherence.close();
    }
  }, 30_000);
});
