// Zeros for the holes of sparse files: pieces of one shared buffer, never copied.
const ZEROS = Buffer.alloc(1024 * 1024);

/** Pieces of zeros making up length bytes. */
export function zeroPieces(length: number): Buffer[] {
  const pieces: Buffer[] = [];
  for (let at = 0; at < length; at += ZEROS.length) pieces.push(ZEROS.subarray(0, Math.min(ZEROS.length, length - at)));
  return pieces;
}
