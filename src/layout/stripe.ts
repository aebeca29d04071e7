// RAID-0 striping of a file over `count` stripe objects in units of `unit` bytes:
// file unit k lives in object k mod count, at object offset (k div count) * unit.

/** A contiguous piece of an object, and where it belongs in the file. */
export interface ObjectRun {
  object: number;
  objectOffset: number;
  length: number;
  /** File offsets of the run's pieces, each one stripe unit or less, in object order. */
  pieces: { fileOffset: number; objectOffset: number; length: number }[];
}

function assertLayout(unit: number, count: number): void {
  if (!(Number.isSafeInteger(unit) && unit > 0 && Number.isSafeInteger(count) && count > 0)) {
    throw new RangeError(`bad stripe layout: unit ${unit}, count ${count}`);
  }
}

/** The object runs covering file bytes [offset, offset + length), one run per
 *  object that the range touches, in object order. */
export function mapRange(unit: number, count: number, offset: number, length: number): ObjectRun[] {
  assertLayout(unit, count);
  if (!(offset >= 0 && length >= 0)) throw new RangeError(`bad range ${offset}+${length}`);
  const runs: ObjectRun[] = [];
  const byObject = new Map<number, ObjectRun>();
  let position = offset;
  const end = offset + length;
  while (position < end) {
    const unitIndex = Math.floor(position / unit);
    const withinUnit = position - unitIndex * unit;
    const pieceLength = Math.min(unit - withinUnit, end - position);
    const object = unitIndex % count;
    const objectOffset = Math.floor(unitIndex / count) * unit + withinUnit;
    let run = byObject.get(object);
    if (!run) {
      run = { object, objectOffset, length: 0, pieces: [] };
      byObject.set(object, run);
      runs.push(run);
    }
    // Pieces of one object come in increasing, adjacent object offsets.
    if (run.objectOffset + run.length !== objectOffset) throw new Error('stripe math: non-adjacent run');
    run.pieces.push({ fileOffset: position, objectOffset, length: pieceLength });
    run.length += pieceLength;
    position += pieceLength;
  }
  return runs.sort((a, b) => a.object - b.object);
}

/** How many bytes stripe object `object` holds when the file is `fileSize` long. */
export function objectLength(unit: number, count: number, fileSize: number, object: number): number {
  assertLayout(unit, count);
  const round = unit * count;
  const fullRounds = Math.floor(fileSize / round);
  const rest = fileSize - fullRounds * round;
  return fullRounds * unit + Math.min(unit, Math.max(0, rest - object * unit));
}
