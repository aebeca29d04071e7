// The ranges a node remembers of an owner's POSIX locks, to reclaim after the
// lock service restarts: what the owner holds, whatever it asked before.
import { describe, expect, it } from 'vitest';
import { withoutRange } from '../../src/locks/client.js';

const r = (start: number, end: number) => ({ start, end, type: 1 });

describe('withoutRange', () => {
  it('keeps ranges apart from the one cut, and splits one it falls inside', () => {
    expect(withoutRange([r(0, 9), r(20, 29)], 10, 19)).toEqual([r(0, 9), r(20, 29)]);
    expect(withoutRange([r(0, 99)], 10, 19)).toEqual([r(0, 9), r(20, 99)]);
  });

  it('trims ranges it overlaps, and drops those it covers', () => {
    expect(withoutRange([r(0, 9), r(5, 14), r(12, 20)], 5, 12)).toEqual([r(0, 4), r(13, 14), r(13, 20)]);
    expect(withoutRange([r(3, 4), r(6, 8)], 0, 10)).toEqual([]);
  });

  it('takes -1 as the end of the file, on either side', () => {
    expect(withoutRange([r(10, -1)], 100, 109)).toEqual([r(10, 99), r(110, -1)]);
    expect(withoutRange([r(0, 9), r(10, 50)], 20, -1)).toEqual([r(0, 9), r(10, 19)]);
    expect(withoutRange([r(10, -1)], 0, -1)).toEqual([]);
  });
});
