// The byte ranges and patches of small files kept in their inode (src/common/patch.ts).
import { describe, expect, it } from 'vitest';
import { applyPatches, piecesOf, withRange, withoutPast } from '../../src/common/patch.js';

describe('byte ranges', () => {
  it('merges ranges that meet or touch, keeps the others apart', () => {
    let ranges = withRange([], 10, 20);
    ranges = withRange(ranges, 30, 40);
    expect(ranges).toEqual([{ start: 10, end: 20 }, { start: 30, end: 40 }]);
    expect(withRange(ranges, 20, 30)).toEqual([{ start: 10, end: 40 }]);
    expect(withRange(ranges, 0, 5)).toEqual([{ start: 0, end: 5 }, { start: 10, end: 20 }, { start: 30, end: 40 }]);
    expect(withRange(ranges, 5, 5)).toBe(ranges);
  });

  it('cuts ranges at a size', () => {
    expect(withoutPast([{ start: 0, end: 4 }, { start: 8, end: 16 }, { start: 20, end: 30 }], 10)).toEqual([{ start: 0, end: 4 }, { start: 8, end: 10 }]);
  });

  it('takes the pieces of content in ranges, none past its end', () => {
    const content = Buffer.from('abcdefgh');
    const pieces = piecesOf(content, [{ start: 1, end: 3 }, { start: 6, end: 12 }, { start: 20, end: 24 }]);
    expect(pieces.map((p) => [p.offset, p.data.toString()])).toEqual([[1, 'bc'], [6, 'gh']]);
  });

  it('applies patches in order, growing the content with zeros', () => {
    const patched = applyPatches(Buffer.from('abc'), [{ offset: 1, data: Buffer.from('XY') }, { offset: 5, data: Buffer.from('Z') }, { offset: 2, data: Buffer.from('q') }]);
    expect(patched).toEqual(Buffer.from([0x61, 0x58, 0x71, 0, 0, 0x5a]));
  });
});
