import { describe, expect, it } from 'vitest';
import { mapRange, objectLength } from '../../src/layout/stripe.js';

// A byte-by-byte model of the layout, to check the arithmetic against.
function modelPlace(unit: number, count: number, fileOffset: number): [number, number] {
  const k = Math.floor(fileOffset / unit);
  return [k % count, Math.floor(k / count) * unit + (fileOffset % unit)];
}

describe('stripe layout', () => {
  it('maps every byte of a range where the model puts it, each byte once', () => {
    for (const [unit, count] of [[4, 1], [4, 3], [8, 2], [5, 4]]) {
      for (let offset = 0; offset < 40; offset += 3) {
        for (let length = 0; length < 50; length += 7) {
          const seen = new Map<number, [number, number]>();
          for (const run of mapRange(unit, count, offset, length)) {
            let total = 0;
            for (const piece of run.pieces) {
              for (let i = 0; i < piece.length; i++) {
                expect(seen.has(piece.fileOffset + i)).toBe(false);
                seen.set(piece.fileOffset + i, [run.object, piece.objectOffset + i]);
              }
              total += piece.length;
            }
            expect(total).toBe(run.length);
            expect(run.pieces[0].objectOffset).toBe(run.objectOffset);
          }
          expect(seen.size).toBe(length);
          for (const [fileOffset, place] of seen) expect(place).toEqual(modelPlace(unit, count, fileOffset));
        }
      }
    }
  });

  it('gives one run per object touched, in object order', () => {
    const runs = mapRange(1 << 20, 3, 0, 24 << 20);
    expect(runs.map((r) => r.object)).toEqual([0, 1, 2]);
    expect(runs.map((r) => r.length)).toEqual([8 << 20, 8 << 20, 8 << 20]);
  });

  it('computes object lengths that add up to the file size and match the model', () => {
    for (const [unit, count] of [[4, 1], [4, 3], [8, 2], [5, 4]]) {
      for (let size = 0; size < 100; size++) {
        let sum = 0;
        for (let object = 0; object < count; object++) {
          const length = objectLength(unit, count, size, object);
          sum += length;
          // the model: the highest object offset used by this object, plus one
          let expected = 0;
          for (let b = 0; b < size; b++) {
            const [o, off] = modelPlace(unit, count, b);
            if (o === object) expected = Math.max(expected, off + 1);
          }
          expect(length).toBe(expected);
        }
        expect(sum).toBe(size);
      }
    }
  });

  it('handles offsets near 2^40', () => {
    const offset = 2 ** 40 + 123;
    const [run] = mapRange(1 << 20, 3, offset, 10);
    const [object, objectOffset] = modelPlace(1 << 20, 3, offset);
    expect(run.object).toBe(object);
    expect(run.objectOffset).toBe(objectOffset);
  });

  it('rejects nonsense layouts', () => {
    expect(() => mapRange(0, 1, 0, 1)).toThrow(RangeError);
    expect(() => objectLength(4, 0, 10, 0)).toThrow(RangeError);
  });
});
