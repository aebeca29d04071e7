// The bounded wait of callbacks (src/meta/coherence.ts), on its own.
import { describe, expect, it } from 'vitest';
import { Changes, Coherence, GRANTS_PER_NODE_MAX, callbackReply } from '../../src/meta/coherence.js';

describe('callbacks', () => {
  it('wait for a node whose lease never ends (the root itself) as long as a lease, not 1 ms', async () => {
    const openOn = (ino: number) => (ino === 5 ? [1] : []);
    const coherence = new Coherence(openOn);
    let answered = 0;
    coherence.attach({
      nodeId: 1,
      leaseUntilMs: () => Infinity,
      callback: () => callbackReply(() => new Promise<void>((resolve) => setTimeout(() => { answered++; resolve(); }, 30))),
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
    const target = (nodeId: number) => ({ nodeId, leaseUntilMs: () => Date.now() + 4000, callback: () => callbackReply(async () => {}) });
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

describe('callbacks through the directory locks of two kernels', () => {
  /** A node's kernel as callbacks meet it: a request of the node in the
   *  directory holds its lock while it waits for the service, and an entry's
   *  invalidation is taken only once the lock is free. The node itself takes
   *  the callback a moment after it is sent. */
  function kernel(nodeId: number, events: string[]) {
    let held = 0;
    let waiting: (() => void)[] = [];
    return {
      target: {
        nodeId,
        leaseUntilMs: () => Date.now() + 4000,
        callback: () => callbackReply((taken) => {
          setTimeout(() => {
            events.push(`node ${nodeId} took the callback`);
            taken();
          }, TAKE_MS);
          return (held === 0 ? Promise.resolve() : new Promise<void>((resolve) => waiting.push(resolve))).then(() => { events.push(`node ${nodeId} dropped the entry`); });
        }),
      },
      hold(): () => void {
        held++;
        return () => {
          if (--held > 0) return;
          const taken = waiting;
          waiting = [];
          for (const take of taken) take();
        };
      },
    };
  }

  const DIR = 10;
  const REPLY_MS = 5;
  const TAKE_MS = 2;
  function entryChanged(name: string): Changes {
    const changes = new Changes();
    changes.entry(DIR, name);
    return changes;
  }

  /** Node 2's request (holding) waits for callbacks to node 3, whose kernel a
   *  request of its own holds; then that request of node 3 waits for callbacks
   *  to node 2. Both kernels cache the directory. */
  async function cycle(two: 'adds' | 'removes', three: 'adds' | 'removes'): Promise<{ events: string[]; trusted: boolean }> {
    const events: string[] = [];
    const coherence = new Coherence(() => []);
    const k2 = kernel(2, events);
    const k3 = kernel(3, events);
    coherence.attach(k2.target);
    coherence.attach(k3.target);
    try {
      expect(coherence.grant(2, 20, DIR)).toBeGreaterThan(0);
      expect(coherence.grant(3, 21, DIR)).toBeGreaterThan(0);
      const release2 = k2.hold();
      const release3 = k3.hold();
      // (a reply reaches its kernel a few milliseconds after it is made: the network)
      const first = coherence.invalidate(entryChanged('a'), 2, two).then(() => { events.push('node 2 answered'); setTimeout(release2, REPLY_MS); });
      // node 2's callback to node 3 is on its way, waiting for node 3's lock
      await new Promise((resolve) => setImmediate(resolve));
      const second = coherence.invalidate(entryChanged('b'), 3, three).then(() => { events.push('node 3 answered'); setTimeout(release3, REPLY_MS); });
      await Promise.all([first, second]);
      // the last reply reached its kernel, which took what was waiting
      await new Promise((resolve) => setTimeout(resolve, REPLY_MS * 2));
      // neither waited for the other until its lease ran out: both still trusted with grants
      return { events, trusted: coherence.grant(2, 22, DIR) > 0 && coherence.grant(3, 23, DIR) > 0 };
    } finally {
      coherence.close();
    }
  }

  it('a rename waits until a node busy creating in the directory dropped the old name: the create stops waiting for it', async () => {
    const { events, trusted } = await cycle('adds', 'removes');
    expect(trusted).toBe(true);
    // node 3's rename is answered only once node 2's kernel no longer has the old name
    expect(events.indexOf('node 2 dropped the entry')).toBeGreaterThanOrEqual(0);
    expect(events.indexOf('node 2 dropped the entry')).toBeLessThan(events.indexOf('node 3 answered'));
    expect(events.indexOf('node 2 answered')).toBeLessThan(events.indexOf('node 2 dropped the entry'));
  }, 3000);

  it('two removals in one directory from two nodes: the second does not wait for the first node, and neither stalls', async () => {
    const { events, trusted } = await cycle('removes', 'removes');
    expect(trusted).toBe(true);
    // node 3's removal is answered before node 2's kernel dropped the name, not before node 2 took it
    expect(events.indexOf('node 2 took the callback')).toBeLessThan(events.indexOf('node 3 answered'));
    expect(events.indexOf('node 3 answered')).toBeLessThan(events.indexOf('node 2 dropped the entry'));
    expect(events.indexOf('node 3 dropped the entry')).toBeLessThan(events.indexOf('node 2 answered'));
  }, 3000);

  it('two creates in one directory from two nodes: neither stalls', async () => {
    const { events, trusted } = await cycle('adds', 'adds');
    expect(trusted).toBe(true);
    expect(events).toContain('node 2 answered');
    expect(events).toContain('node 3 answered');
  }, 3000);
});
