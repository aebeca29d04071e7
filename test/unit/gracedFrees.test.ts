// Unlinked inodes kept a moment before they are freed (src/meta/gracedFrees.ts).
import { describe, expect, it, vi } from 'vitest';
import { GracedFrees, UNLINKED_GRACE_MS } from '../../src/meta/gracedFrees.js';

describe('graced frees', () => {
  it('frees nothing before the grace, then those that fell due together in one call', async () => {
    // the clock and timers faked: the test decides when the sweeps come
    vi.useFakeTimers();
    try {
      const calls: number[][] = [];
      const graced = new GracedFrees(async (inos) => {
        calls.push(inos);
      });
      expect(graced.keep(11)).toBe(true);
      expect(graced.keep(12)).toBe(true);
      expect(graced.keep(13)).toBe(true);
      vi.advanceTimersByTime(UNLINKED_GRACE_MS - 1);
      expect(calls).toEqual([]);
      vi.advanceTimersByTime(UNLINKED_GRACE_MS);
      expect(calls).toEqual([[11, 12, 13]]);
    } finally {
      vi.useRealTimers();
    }
  });
});
