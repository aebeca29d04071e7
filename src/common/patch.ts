// Writes into the content of a small file kept in its inode (inlined).
import type { InlinePatch } from '../rpc/messages.js';

/** content with data written at offset (grown, zero-filled, if need be); may be content itself. */
export function writeInto(content: Buffer, offset: number, data: Buffer): Buffer {
  const end = offset + data.length;
  let target = content;
  if (end > content.length) {
    target = Buffer.alloc(end);
    content.copy(target);
  }
  data.copy(target, offset);
  return target;
}

/** content with the patches written, in order, into a copy. */
export function applyPatches(content: Buffer, patches: InlinePatch[]): Buffer {
  let target: Buffer = Buffer.from(content);
  for (const patch of patches) target = writeInto(target, patch.offset, Buffer.from(patch.data));
  return target;
}

/** Bytes [start, end). */
export interface ByteRange { start: number; end: number }

/** ranges (sorted, apart) with [start, end) added: merged with those it meets or touches. */
export function withRange(ranges: ByteRange[], start: number, end: number): ByteRange[] {
  if (end <= start) return ranges;
  const merged: ByteRange[] = [];
  let added = { start, end };
  for (const range of ranges) {
    if (range.end < added.start) merged.push(range);
    else if (range.start > added.end) {
      merged.push(added);
      added = range;
    } else added = { start: Math.min(range.start, added.start), end: Math.max(range.end, added.end) };
  }
  merged.push(added);
  return merged;
}

/** ranges cut at size: nothing at or past it. */
export function withoutPast(ranges: ByteRange[], size: number): ByteRange[] {
  return ranges.filter((range) => range.start < size).map((range) => (range.end > size ? { start: range.start, end: size } : range));
}

/** The bytes of content in each range (none past its end), as patches. */
export function piecesOf(content: Buffer, ranges: ByteRange[]): { offset: number; data: Buffer }[] {
  return ranges.filter((range) => range.start < content.length).map((range) => ({ offset: range.start, data: content.subarray(range.start, Math.min(range.end, content.length)) }));
}
