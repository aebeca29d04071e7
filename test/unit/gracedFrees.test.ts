// Unlinked inodes kept a moment before they are freed (src/meta/gracedFrees.ts).
import { describe, expect, it } from 'vitest';
import { GracedFrees, UNLINKED_GRACE_MS } from '../../src/meta/gracedFrees.js';

describe('graced frees', () => {
  it('frees nothing before the grace, then those that fell due together in one call', async () => {
    const calls: { inos: number[]; afterMs: number }[] = [];
    const startMs = Date.now();
    let freed!: () => void;
    const allFreed = new Promise<void>((resolve) => (freed = resolve));
    const graced = new GracedFrees(async (inos) => {
      calls.push({ inos, afterMs: Date.now() - startMs });
      if (calls.flatMap((call) => call.inos).length === 3) freed();
    });
    expect(graced.keep(11)).toBe(true);
    expect(graced.keep(12)).toBe(true);
    expect(graced.keep(13)).toBe(true);
    await allFreed;
    expect(calls).toHaveLength(1);
    expect(calls[0].inos).toEqual([11, 12, 13]);
    expect(calls[0].afterMs).toBeGreaterThanOrEqual(UNLINKED_GRACE_MS);
  }, 5000);
});
