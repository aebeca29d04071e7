// The ranges of a file whose write-behind failed (src/vfs/writeBehind.ts): what a
// commit may not claim, and what a later successful write gives back.
import { describe, expect, it } from 'vitest';
import { LostRanges } from '../../src/vfs/writeBehind.js';

describe('lost ranges', () => {
  it('start nowhere, and tell the first lost byte', () => {
    const lost = new LostRanges();
    expect(lost.first()).toBe(Infinity);
    lost.add(3 << 20, 4 << 20);
    lost.add(1 << 20, 2 << 20);
    expect(lost.first()).toBe(1 << 20);
  });

  it('are lost no more once written since, in whole or in part', () => {
    const lost = new LostRanges();
    lost.add(100, 200);
    lost.add(300, 400);
    lost.remove(100, 150);
    expect(lost.first()).toBe(150);
    lost.remove(140, 210);
    expect(lost.first()).toBe(300);
    lost.remove(350, 360);
    expect(lost.first()).toBe(300);
    lost.remove(0, 1000);
    expect(lost.first()).toBe(Infinity);
  });

  it('tell whether a range overlaps one of them', () => {
    const lost = new LostRanges();
    lost.add(100, 200);
    expect(lost.overlaps(0, 100)).toBe(false);
    expect(lost.overlaps(0, 101)).toBe(true);
    expect(lost.overlaps(199, 300)).toBe(true);
    expect(lost.overlaps(200, 300)).toBe(false);
    lost.remove(150, Infinity);
    expect(lost.overlaps(160, 170)).toBe(false);
    expect(lost.first()).toBe(100);
  });

  it('past their limit, merge into one range that covers them all, gaps too', () => {
    const lost = new LostRanges();
    for (let i = 1; i <= 100; i++) lost.add(i * 10, i * 10 + 5);
    expect(lost.first()).toBe(10);
    // the first range written again: the gap after it, never lost, now counts as lost
    lost.remove(10, 15);
    expect(lost.first()).toBe(15);
  });
});
