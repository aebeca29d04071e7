// The buffer pool's slabs: blocks of every size share them, never overlap, and
// merge back whole when given back, so the memory they keep resident is what was
// taken at once, not what was ever taken of each size.
import { expect, it } from 'vitest';
import { BufferPool, PAGE_BYTES } from '../../src/common/bufferPool.js';

const KiB = 1024;
const MiB = 1024 * KiB;

/** A small deterministic generator, so that a failure can be replayed. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state * 1664525 + 1013904223) >>> 0;
    return state / 2 ** 32;
  };
}

it('hands out page-aligned, non-overlapping blocks of mixed sizes, and takes them all back', () => {
  const pool = new BufferPool();
  const next = random(7);
  const taken: Buffer[] = [];
  for (let step = 0; step < 5000; step++) {
    if (taken.length > 0 && (next() < 0.45 || pool.slabBytesTaken() > 128 * MiB)) {
      pool.give(taken.splice(Math.floor(next() * taken.length), 1)[0]);
      continue;
    }
    const size = 64 * KiB * 2 ** Math.floor(next() * 6) - Math.floor(next() * 1000);
    const buffer = pool.take(size);
    expect(buffer.length).toBe(pool.classOf(size));
    expect(pool.isPageAligned(buffer)).toBe(true);
    expect(buffer.byteOffset % PAGE_BYTES).toBe(0);
    taken.push(buffer);
  }
  const bySlab = new Map<ArrayBufferLike, Buffer[]>();
  for (const b of taken) bySlab.set(b.buffer, [...(bySlab.get(b.buffer) ?? []), b]);
  for (const blocks of bySlab.values()) {
    blocks.sort((a, b) => a.byteOffset - b.byteOffset);
    for (let i = 1; i < blocks.length; i++) {
      expect(blocks[i].byteOffset).toBeGreaterThanOrEqual(blocks[i - 1].byteOffset + blocks[i - 1].length);
    }
  }
  expect(pool.slabBytesTaken()).toBe(taken.reduce((sum, b) => sum + b.length, 0));
  for (const b of taken) pool.give(b);
  expect(pool.slabBytesTaken()).toBe(0);
});

it('reuses the memory of small blocks given back for a large one', () => {
  const pool = new BufferPool();
  const small = Array.from({ length: 1024 }, () => pool.take(64 * KiB));
  const slab = small[0].buffer;
  expect(small.every((b) => b.buffer === slab)).toBe(true);
  for (const b of small) pool.give(b);
  const large = pool.take(64 * MiB);
  expect(large.buffer).toBe(slab);
  expect(large.byteOffset).toBe(0);
});

it('refuses a block given back twice', () => {
  const pool = new BufferPool();
  const a = pool.take(1 * MiB);
  pool.take(1 * MiB);
  pool.give(a);
  expect(() => pool.give(a)).toThrow(/twice/);
});

it('hands out ordinary buffers past its slabs, and below their smallest size', () => {
  const pool = new BufferPool();
  const slabs = Array.from({ length: 4 }, () => pool.take(64 * MiB));
  const past = pool.take(1 * MiB);
  expect(past.length).toBe(1 * MiB);
  expect(pool.isPageAligned(past)).toBe(false);
  expect(pool.isPageAligned(pool.take(4 * KiB))).toBe(false);
  for (const b of slabs) pool.give(b);
  expect(pool.isPageAligned(pool.take(1 * MiB))).toBe(true);
});
