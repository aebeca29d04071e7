// The bounded map of node caches (src/common/recentMap.ts): what it keeps, in
// which order it forgets, and that deleting and setting a key again and again
// neither loses nor resurrects anything.
import { describe, expect, it } from 'vitest';
import { RecentMap } from '../../src/common/recentMap.js';

describe('recent map', () => {
  it('gets what was set, and nothing once deleted', () => {
    const map = new RecentMap<number, string>();
    map.set(1, 'a');
    map.set(2, 'b');
    map.set(1, 'c');
    expect(map.get(1)).toBe('c');
    expect(map.size).toBe(2);
    expect(map.delete(1)).toBe(true);
    expect(map.delete(1)).toBe(false);
    expect(map.get(1)).toBeUndefined();
    expect(map.has(1)).toBe(false);
    expect(map.size).toBe(1);
    expect([...map]).toEqual([[2, 'b']]);
    map.set(1, 'd');
    expect([...map.values()].sort()).toEqual(['b', 'd']);
  });

  it('forgets the least recently set first, past its bound', () => {
    const map = new RecentMap<number, number>(4);
    for (let key = 0; key < 4; key++) map.set(key, key);
    map.set(4, 4);
    map.set(5, 5);
    map.set(2, 20);
    map.set(6, 6);
    expect(map.size).toBe(4);
    // 2 was set again after 0 and 1 went: it outlives 3
    expect([...map].map(([key]) => key)).toEqual([4, 5, 2, 6]);
    expect(map.get(2)).toBe(20);
    expect(map.has(3)).toBe(false);
  });

  it('removes the oldest entry on demand, skipping deleted ones', () => {
    const map = new RecentMap<string, number>();
    map.set('a', 1);
    map.set('b', 2);
    map.set('c', 3);
    map.delete('a');
    expect(map.removeOldest()).toEqual(['b', 2]);
    expect(map.size).toBe(1);
    map.set('d', 4);
    expect(map.removeOldest()).toEqual(['c', 3]);
    expect(map.removeOldest()).toEqual(['d', 4]);
    expect(map.removeOldest()).toBeUndefined();
    map.set('a', 5);
    expect([...map]).toEqual([['a', 5]]);
  });

  it('keeps a key deleted and set again many times once, with its last value', () => {
    const map = new RecentMap<number, number>(10_000);
    for (let key = 0; key < 5_000; key++) map.set(key, key);
    for (let round = 0; round < 20_000; round++) {
      map.delete(7);
      expect(map.get(7)).toBeUndefined();
      map.set(7, round);
      map.set(10_000 + round, round);
      if (round % 3 === 0) map.delete(10_000 + round);
    }
    expect(map.get(7)).toBe(19_999);
    const keys = [...map].map(([key]) => key);
    expect(new Set(keys).size).toBe(keys.length);
    expect(map.size).toBe(keys.length);
    expect(map.size).toBeLessThanOrEqual(10_000);
    // the newest survive the bound; deleted keys never come back
    expect(map.get(10_000 + 19_999)).toBe(19_999);
    expect(map.has(10_000 + 19_997)).toBe(true);
    expect(map.has(10_000 + 19_998)).toBe(false);
  });
});
