// Where moved copies go: the arithmetic of drains and rebalances (src/rebalance/plan.ts),
// without any I/O.
import { describe, expect, it } from 'vitest';
import { BALANCE_TOLERANCE, Projection, chooseTarget, parseNodeIds } from '../../src/rebalance/plan.js';

const map = (entries: Record<number, number>) => new Map(Object.entries(entries).map(([k, v]) => [Number(k), v]));
const noDomains = () => '';

describe('Projection', () => {
  it('gives each weighted node a target in proportion to its weight, and none to the others', () => {
    // 1000 bytes stored, 100 of them on a node that takes no data (down, draining): those are not shared out
    const p = new Projection(map({ 1: 600, 2: 300, 3: 100 }), map({ 1: 1, 2: 3, 4: 1, 5: 0 }));
    expect(p.target.get(1)).toBeCloseTo(180);
    expect(p.target.get(2)).toBeCloseTo(540);
    expect(p.target.get(4)).toBeCloseTo(180);
    expect(p.target.has(3)).toBe(false); // absent from the weights
    expect(p.target.has(5)).toBe(false); // weight 0
    expect([...p.target.values()].reduce((a, b) => a + b, 0)).toBeCloseTo(900);
    expect(p.storedOn(4)).toBe(0);
    expect(p.storedOn(3)).toBe(100);
    expect(p.fill(3)).toBe(Infinity);
    expect(p.fill(5)).toBe(Infinity);
    expect(p.fill(1)).toBeCloseTo(600 / 180);
    expect(p.fill(4, 45)).toBeCloseTo(0.25);
  });

  it('gives no targets when no weight is positive', () => {
    const p = new Projection(map({ 1: 100, 2: 100 }), map({ 1: 0, 2: 0 }));
    expect(p.target.size).toBe(0);
    expect(p.roomFor(1, 0)).toBe(false);
    expect(p.balanced()).toBe(true); // nothing takes data: nothing to balance
    expect(p.excessBytes()).toBe(200);
  });

  it('does not change the maps it is given', () => {
    const stored = map({ 1: 100, 2: 50 });
    const p = new Projection(stored, map({ 1: 1, 2: 1 }));
    p.move(1, 2, 25);
    expect(stored.get(1)).toBe(100);
    expect(stored.get(2)).toBe(50);
  });

  it('over(): moves bytes off a node above its target by more than the tolerance', () => {
    // targets 100 each; tolerance band [95, 105]
    const p = new Projection(map({ 1: 106, 2: 94.5, 3: 99.5 }), map({ 1: 1, 2: 1, 3: 1 }));
    expect(p.target.get(1)).toBeCloseTo(100);
    expect(p.over(1, 10)).toBe(true);
    expect(p.over(1, 12)).toBe(false); // would leave it below by more than the tolerance
    expect(p.over(2, 1)).toBe(false); // below its target
    expect(p.over(3, 1)).toBe(false); // below its target
  });

  it('over(): within the tolerance, only while another node is below its own by more', () => {
    const under = new Projection(map({ 1: 104, 2: 94, 3: 102 }), map({ 1: 1, 2: 1, 3: 1 }));
    expect(under.over(1, 4)).toBe(true); // 2 is below 95
    expect(under.over(3, 2)).toBe(true);
    expect(under.over(1, 10)).toBe(false); // 94 left: below by more than the tolerance
    const none = new Projection(map({ 1: 104, 2: 96, 3: 100 }), map({ 1: 1, 2: 1, 3: 1 }));
    expect(none.over(1, 4)).toBe(false); // nobody below 95
    expect(none.over(3, 1)).toBe(false); // at its target, not above
  });

  it('over(): every byte on a node that takes no data should leave it', () => {
    const p = new Projection(map({ 1: 100, 2: 100, 3: 50 }), map({ 1: 1, 2: 1 }));
    expect(p.target.has(3)).toBe(false);
    expect(p.over(3, 10)).toBe(true);
    expect(p.over(3, 50)).toBe(true);
    expect(p.over(3, 60)).toBe(false); // more than it holds
  });

  it('roomFor(): a node takes bytes while it stays within the tolerance above its target', () => {
    const p = new Projection(map({ 1: 110, 2: 90, 3: 100, 9: 0 }), map({ 1: 1, 2: 1, 3: 1 }));
    expect(p.roomFor(2, 10)).toBe(true); // to 100
    expect(p.roomFor(2, 14)).toBe(true); // to 104
    expect(p.roomFor(2, 16)).toBe(false); // to 106
    expect(p.roomFor(1, 0)).toBe(false); // already above 105
    expect(p.roomFor(3, 4)).toBe(true);
    expect(p.roomFor(3, 6)).toBe(false);
    expect(p.roomFor(9, 0)).toBe(false); // takes no data
    expect(p.roomFor(42, 0)).toBe(false); // unknown
  });

  it('move() updates the stored bytes of both nodes, and balanced()/excessBytes() follow', () => {
    const p = new Projection(map({ 1: 130, 2: 70, 3: 100 }), map({ 1: 1, 2: 1, 3: 1 }));
    expect(p.balanced()).toBe(false);
    expect(p.excessBytes()).toBeCloseTo(30);
    p.move(1, 2, 20);
    expect(p.storedOn(1)).toBe(110);
    expect(p.storedOn(2)).toBe(90);
    expect(p.storedOn(3)).toBe(100);
    expect(p.balanced()).toBe(false); // 110 and 90 are 10% off
    expect(p.excessBytes()).toBeCloseTo(10);
    p.move(1, 2, 7);
    expect(p.storedOn(1)).toBe(103);
    expect(p.storedOn(2)).toBe(97);
    expect(p.balanced()).toBe(true);
    expect(p.excessBytes()).toBeCloseTo(3);
    // a node not yet known gets its entry
    p.move(3, 7, 5);
    expect(p.storedOn(7)).toBe(5);
    expect(p.storedOn(3)).toBe(95);
    // stored on a node without a target counts whole as excess; the balance ignores it
    expect(p.excessBytes()).toBeCloseTo(8);
    expect(p.balanced()).toBe(true);
    expect(p.target.get(1)).toBeCloseTo(100); // targets stay put
  });

  it('balanced() looks at the nodes below their targets too', () => {
    const p = new Projection(map({ 1: 100, 2: 100, 3: 100, 4: 0 }), map({ 1: 1, 2: 1, 3: 1, 4: 1 }));
    expect(p.target.get(4)).toBeCloseTo(75);
    expect(p.balanced()).toBe(false);
    expect(p.excessBytes()).toBeCloseTo(75);
  });
});

describe('chooseTarget', () => {
  const equal = (ids: number[], stored: Record<number, number>) =>
    new Projection(map(stored), new Map(ids.map((id) => [id, 1])));

  it('never returns a node holding a copy of the object, however empty it is', () => {
    const p = equal([1, 2, 3, 4], { 1: 100, 2: 0, 3: 300, 4: 0 });
    // 2 and 4 hold the other copies: the only choice is the fullest node
    expect(chooseTarget([1, 2, 3, 4], [1, 2, 4], 1, noDomains, p, 10)).toBe(3);
    expect(chooseTarget([1, 2, 3, 4], [1, 2, 3, 4], 1, noDomains, p, 10)).toBe(0);
    // the node the copy leaves is never its target
    expect(chooseTarget([1], [1], 1, noDomains, p, 10)).toBe(0);
  });

  it('picks the least full against the target, the lowest id on a tie', () => {
    // 410 bytes on the weighted nodes: targets 1 → 68.3, 2 → 205, 3 → 68.3, 4 → 68.3
    const p = new Projection(map({ 1: 100, 2: 150, 3: 80, 4: 80, 5: 190 }), map({ 1: 1, 2: 3, 3: 1, 4: 1 }));
    expect(p.target.get(2)).toBeCloseTo(205);
    // 2 holds the most bytes but is only half full
    expect(chooseTarget([1, 2, 3, 4], [5], 5, noDomains, p, 10)).toBe(2);
    // 3 and 4 equally full: the lower id; the order of the candidates does not matter
    expect(chooseTarget([4, 3, 1], [5], 5, noDomains, p, 10)).toBe(3);
    expect(chooseTarget([1, 3, 4], [5], 5, noDomains, p, 10)).toBe(3);
  });

  it('skips candidates that take no data', () => {
    const p = new Projection(map({ 1: 100, 2: 100, 3: 0 }), map({ 1: 1, 2: 1, 3: 0 }));
    expect(chooseTarget([3, 2], [1], 1, noDomains, p, 10)).toBe(2);
    expect(chooseTarget([3, 7], [1], 1, noDomains, p, 10)).toBe(0);
  });

  it('prefers a failure domain none of the other copies is in', () => {
    const domains: Record<number, string> = { 1: 'a', 2: 'a', 3: 'b', 4: 'b', 5: 'c' };
    const domainOf = (id: number) => domains[id];
    const p = equal([1, 2, 3, 4, 5], { 1: 100, 2: 50, 3: 100, 4: 0, 5: 90 });
    // copies on 1 (moving) and 3 (rack b): 4 is emptiest but shares rack b
    expect(chooseTarget([1, 2, 3, 4, 5], [1, 3], 1, domainOf, p, 10)).toBe(2);
    // the domain of the copy that leaves does not count against a node
    expect(chooseTarget([2, 4, 5], [1, 3], 1, domainOf, p, 10)).toBe(2);
    // with rack a out of the candidates, rack c, although fuller than 4
    expect(chooseTarget([3, 4, 5], [1, 3], 1, domainOf, p, 10)).toBe(5);
    // no node in a free domain: the least full of the rest
    expect(chooseTarget([3, 4], [1, 3], 1, domainOf, p, 10)).toBe(4);
    // copies on 1 (moving, rack a), 3 (b) and 5 (c): rack a is free once the copy leaves it
    expect(chooseTarget([1, 2, 3, 4, 5], [1, 3, 5], 1, domainOf, p, 10)).toBe(2);
    // copy leaving 3 (b), others on 2 (a) and 5 (c): rack b, not the emptier 1 in rack a
    const p2 = equal([1, 2, 3, 4, 5], { 1: 0, 2: 100, 3: 100, 4: 50, 5: 90 });
    expect(chooseTarget([1, 2, 3, 4, 5], [2, 3, 5], 3, domainOf, p2, 10)).toBe(4);
    // copy leaving 5 (c), others on 2 (a) and 3 (b): no free node apart, the least full
    expect(chooseTarget([1, 2, 3, 4, 5], [2, 3, 5], 5, domainOf, p2, 10)).toBe(1);
  });

  it('counts a node without a domain as its own domain, and ignores empty slots (node 0)', () => {
    const p = equal([1, 2, 3], { 1: 100, 2: 0, 3: 50 });
    expect(chooseTarget([1, 2, 3], [1, 0], 1, noDomains, p, 10)).toBe(2);
    // 3 and 4 have no domain: each is a domain of its own, apart from rack x
    const domainOf = (id: number) => (id === 1 || id === 2 ? 'x' : '');
    const p2 = equal([1, 2, 3, 4], { 1: 100, 2: 100, 3: 90, 4: 0 });
    expect(chooseTarget([3, 4], [1, 2], 1, domainOf, p2, 10)).toBe(4);
    expect(chooseTarget([3, 4], [1, 2], 2, (id) => (id === 1 ? 'x' : id === 4 ? 'x' : ''), p2, 10)).toBe(3);
  });

  it('takes only acceptable nodes, and returns 0 when no candidate fits', () => {
    const p = equal([1, 2, 3, 4], { 1: 160, 2: 100, 3: 96, 4: 44 });
    // targets 100: 4 has room, 3 has 9 bytes of room, 2 has 5
    const roomFor = (bytes: number) => (id: number) => p.roomFor(id, bytes);
    expect(chooseTarget([2, 3, 4], [1], 1, noDomains, p, 8, roomFor(8))).toBe(4);
    expect(chooseTarget([2, 3], [1], 1, noDomains, p, 8, roomFor(8))).toBe(3);
    expect(chooseTarget([2, 3], [1], 1, noDomains, p, 20, roomFor(20))).toBe(0);
    expect(chooseTarget([2, 3], [1], 1, noDomains, p, 20)).toBe(3); // without the narrowing
    expect(chooseTarget([], [1], 1, noDomains, p, 8)).toBe(0);
    // an unacceptable node in a free domain does not stop the choice of an acceptable one
    const domainOf = (id: number) => (id === 4 ? 'far' : 'near');
    expect(chooseTarget([3, 4], [1, 2], 1, domainOf, p, 8, (id) => id !== 4)).toBe(3);
  });
});

describe('a simulated rebalance', () => {
  /** Copies of objects of `size` bytes, each a list of the nodes holding them. */
  function layout(objects: number, copies: number, nodes: number[]): number[][] {
    const out: number[][] = [];
    for (let o = 0; o < objects; o++) out.push(Array.from({ length: copies }, (_, c) => nodes[(o + c) % nodes.length]));
    return out;
  }

  function storedOf(objects: number[][], size: number): Map<number, number> {
    const stored = new Map<number, number>();
    for (const nodes of objects) for (const node of nodes) stored.set(node, (stored.get(node) ?? 0) + size);
    return stored;
  }

  /** Moves copies as the mover does, pass after pass over the objects, until a pass moves none. */
  function rebalance(objects: number[][], size: number, p: Projection, candidates: number[],
    domainOf: (id: number) => string = noDomains): number {
    let moves = 0;
    for (let pass = 0; pass < 100; pass++) {
      let moved = 0;
      for (const nodes of objects) {
        for (let c = 0; c < nodes.length; c++) {
          const from = nodes[c];
          if (!p.over(from, size)) continue;
          const to = chooseTarget(candidates, [...nodes], from, domainOf, p, size, (id) => p.roomFor(id, size));
          if (to === 0) continue;
          expect(nodes).not.toContain(to);
          expect(p.roomFor(to, size)).toBe(true);
          nodes[c] = to;
          p.move(from, to, size);
          moved++;
        }
      }
      moves += moved;
      if (moved === 0) return moves;
    }
    throw new Error('the rebalance does not settle');
  }

  function checkEnd(objects: number[][], size: number, p: Projection, tolerance: number): void {
    for (const nodes of objects) expect(new Set(nodes).size).toBe(nodes.length);
    // the projection agrees with where the copies are
    const actual = storedOf(objects, size);
    for (const node of new Set([...actual.keys(), ...p.stored.keys()])) expect(p.storedOn(node)).toBe(actual.get(node) ?? 0);
    for (const [node, target] of p.target) {
      expect(Math.abs(p.storedOn(node) - target), `node ${node}: ${p.storedOn(node)} against ${target}`)
        .toBeLessThanOrEqual(target * tolerance);
    }
  }

  it('spreads 3 full nodes onto a 4th empty one of the same weight', () => {
    // 45 objects of 10 bytes, 2 copies each: 30 copies, 300 bytes, on each of nodes 1-3
    const size = 10;
    const objects = layout(45, 2, [1, 2, 3]);
    const stored = storedOf(objects, size);
    expect([...stored.entries()].sort()).toEqual([[1, 300], [2, 300], [3, 300]]);
    const p = new Projection(stored, map({ 1: 1, 2: 1, 3: 1, 4: 1 }));
    expect(p.target.get(4)).toBeCloseTo(225);
    expect(p.balanced()).toBe(false);

    const moves = rebalance(objects, size, p, [1, 2, 3, 4]);
    expect(moves).toBeGreaterThanOrEqual(20);
    expect(p.storedOn(4)).toBeGreaterThan(200);
    checkEnd(objects, size, p, 0.1);
    checkEnd(objects, size, p, BALANCE_TOLERANCE);
    expect(p.balanced()).toBe(true);
    // only what had to move moved: node 4 gained what the others lost
    expect(p.storedOn(1) + p.storedOn(2) + p.storedOn(3) + p.storedOn(4)).toBe(900);
    expect(p.storedOn(4)).toBe(moves * size);
  });

  it('fills a heavier new node to its larger share', () => {
    const size = 10;
    const objects = layout(45, 2, [1, 2, 3]);
    const p = new Projection(storedOf(objects, size), map({ 1: 1, 2: 1, 3: 1, 4: 2 }));
    expect(p.target.get(4)).toBeCloseTo(360);
    rebalance(objects, size, p, [1, 2, 3, 4]);
    checkEnd(objects, size, p, 0.1);
    expect(p.balanced()).toBe(true);
  });

  it('keeps copies apart in failure domains while rebalancing', () => {
    // racks: 1, 2 in a; 3 in b; the new nodes 4 (a), 5 and 6 (b): each rack can hold one copy of everything
    const domains: Record<number, string> = { 1: 'a', 2: 'a', 3: 'b', 4: 'a', 5: 'b', 6: 'b' };
    const domainOf = (id: number) => domains[id];
    const size = 10;
    // every object has a copy in each rack: one on 3, one on 1 or 2
    const objects: number[][] = [];
    for (let o = 0; o < 60; o++) objects.push([o % 2 === 0 ? 1 : 2, 3]);
    const p = new Projection(storedOf(objects, size), map({ 1: 1, 2: 1, 3: 1, 4: 1, 5: 1, 6: 1 }));
    expect(p.target.get(3)).toBeCloseTo(200);
    rebalance(objects, size, p, [1, 2, 3, 4, 5, 6], domainOf);
    checkEnd(objects, size, p, 0.1);
    for (const nodes of objects) expect(new Set(nodes.map(domainOf)).size).toBe(2);
  });
});

describe('parseNodeIds', () => {
  it('reads node ids, ranges and lists of them', () => {
    expect(parseNodeIds(['3'])).toEqual([3]);
    expect(parseNodeIds(['2', '5'])).toEqual([2, 5]);
    expect(parseNodeIds(['2', '5', '7'])).toEqual([2, 5, 7]);
    expect(parseNodeIds(['-n16:18'])).toEqual([16, 17, 18]);
    expect(parseNodeIds(['16:18'])).toEqual([16, 17, 18]);
    expect(parseNodeIds(['2,4:6'])).toEqual([2, 4, 5, 6]);
    expect(parseNodeIds(['7:7'])).toEqual([7]);
    expect(parseNodeIds(['-n3'])).toEqual([3]);
  });

  it('gives each id once, in the order first given', () => {
    expect(parseNodeIds(['5', '3:6', '-n4,1'])).toEqual([5, 3, 4, 6, 1]);
    expect(parseNodeIds(['2,', ',3'])).toEqual([2, 3]);
  });

  it('refuses what is not a node id', () => {
    expect(() => parseNodeIds(['abc'])).toThrow(/not a node id/);
    expect(() => parseNodeIds(['3', 'abc'])).toThrow(/abc/);
    expect(() => parseNodeIds(['5:3'])).toThrow(/bad node range/);
    expect(() => parseNodeIds(['0'])).toThrow(/bad node range/);
    expect(() => parseNodeIds(['0:2'])).toThrow(/bad node range/);
    expect(() => parseNodeIds(['-3'])).toThrow();
    expect(() => parseNodeIds(['1.5'])).toThrow();
    expect(() => parseNodeIds(['1:'])).toThrow();
    expect(() => parseNodeIds(['1:2:3'])).toThrow();
    expect(() => parseNodeIds(['1:5000'])).toThrow(/bad node range/); // too long a range
    expect(parseNodeIds(['1:4096'])).toHaveLength(4096);
  });

  it('refuses an empty list', () => {
    expect(() => parseNodeIds([])).toThrow(/no node id/);
    expect(() => parseNodeIds([''])).toThrow(/no node id/);
    expect(() => parseNodeIds(['-n'])).toThrow(/no node id/);
    expect(() => parseNodeIds([','])).toThrow(/no node id/);
  });
});
