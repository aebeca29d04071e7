// Copies one object from a good copy to another node's copy, for repair and
// moves, and checks a copy made against its source.
//
// A copy brought up to date (it was there before, it missed writes) gets only
// the blocks whose checksums differ from the source's: a node away for a while
// receives what changed meanwhile, not the whole object. A new copy gets every
// block that is not a hole. Either way the copy ends at `length`, the object's
// length for the file's committed size: bytes past it (a crashed writer's) are
// not copied.
import { E, FsError } from '../common/errno.js';
import { CHECKSUM_BLOCK_BYTES, CHECKSUM_BYTES, SUMS_PER_CALL_MAX, type ObjectSums } from '../agent/objectStore.js';
import type { Replica } from '../layout/replicas.js';
import { replicaKey, type AgentSource } from './objects.js';

/** Bytes read from the source and written to the copy at a time. */
const COPY_CHUNK_BYTES = 1024 * 1024;
const BLOCKS_PER_CHUNK = COPY_CHUNK_BYTES / CHECKSUM_BLOCK_BYTES;

export interface CopyResult {
  /** Bytes written to the copy. */
  copiedBytes: number;
}

/** length null: the source's length now, for a copy that writers write to
 *  meanwhile (a move, see src/rebalance/mover.ts): nothing is cut from it, it is
 *  only extended to the source's length; verifyCopy tells whether it caught up.
 *  under.gen: the layout generation the copy's writes carry (see Layout.gen);
 *  with under.fence, the target is fenced with it first, so that no request made
 *  under an older layout (one given up on, delivered late) changes it from then on. */
export async function copyObject(agents: AgentSource, ino: number, object: number, source: Replica, target: Replica,
  lengthOrNull: number | null, incremental: boolean, under: { gen: number; fence: boolean }): Promise<CopyResult> {
  const { from, to, sourceKey, targetKey, length, blocks } = await endsOf(agents, ino, object, source, target, lengthOrNull, under.gen);
  if (under.fence) await to.fence([targetKey]);
  // a new copy starts empty: whatever an older one left there is not kept
  if (!incremental) await to.truncate(targetKey, 0);
  let copiedBytes = 0;
  for (let first = 0; first < blocks; first += SUMS_PER_CALL_MAX) {
    const count = Math.min(SUMS_PER_CALL_MAX, blocks - first);
    const sourceSums = await from.sums(sourceKey, first, count);
    const targetSums: ObjectSums | null = incremental ? await to.sums(targetKey, first, count) : null;
    for (let chunk = 0; chunk < count; chunk += BLOCKS_PER_CHUNK) {
      const chunkBlocks = Math.min(BLOCKS_PER_CHUNK, count - chunk);
      const wanted = Array.from({ length: chunkBlocks }, (_, i) => chunk + i).filter((block) => differs(sourceSums, targetSums, first + block, block));
      if (wanted.length === 0) continue;
      // one read of the chunk's span, the blocks that differ written from it
      const spanStart = (first + wanted[0]) * CHECKSUM_BLOCK_BYTES;
      const spanEnd = Math.min(length, (first + wanted[wanted.length - 1] + 1) * CHECKSUM_BLOCK_BYTES);
      const spanBytes = spanEnd - spanStart;
      const read = (await from.read(sourceKey, spanStart, spanBytes)).subarray(0, spanBytes);
      // the source ends early (its last blocks are holes): zeros, written as such
      const data = read.length === spanBytes ? read : Buffer.concat([read, Buffer.alloc(spanBytes - read.length)]);
      // a hole of a new copy stays a hole
      const written = incremental ? wanted : wanted.filter((block) => hasSum(sourceSums, block) || !isZero(data, block, first, spanStart));
      for (const run of runsOf(written)) {
        const runStart = (first + run.start) * CHECKSUM_BLOCK_BYTES - spanStart;
        const runEnd = Math.min(data.length, (first + run.end) * CHECKSUM_BLOCK_BYTES - spanStart);
        await to.write(targetKey, spanStart + runStart, data.subarray(runStart, runEnd));
        copiedBytes += runEnd - runStart;
      }
    }
  }
  if (lengthOrNull !== null || (await to.sums(targetKey, 0, 0)).length < length) await to.truncate(targetKey, length);
  return { copiedBytes };
}

/** The two copies' agents and keys, and the length (null: the source's now) in bytes and blocks. */
async function endsOf(agents: AgentSource, ino: number, object: number, source: Replica, target: Replica, lengthOrNull: number | null, gen = 0) {
  const from = await agents.get(source.node);
  const to = await agents.get(target.node);
  const sourceKey = replicaKey(ino, object, source.replica);
  const targetKey = replicaKey(ino, object, target.replica, gen);
  const length = lengthOrNull ?? (await from.sums(sourceKey, 0, 0)).length;
  return { from, to, sourceKey, targetKey, length, blocks: Math.ceil(length / CHECKSUM_BLOCK_BYTES) };
}

/** Consecutive blocks as runs [start, end). */
function runsOf(blocks: number[]): { start: number; end: number }[] {
  const runs: { start: number; end: number }[] = [];
  for (const block of blocks) {
    const last = runs[runs.length - 1];
    if (last && last.end === block) last.end++;
    else runs.push({ start: block, end: block + 1 });
  }
  return runs;
}

function isZero(data: Buffer, block: number, first: number, spanStart: number): boolean {
  const start = (first + block) * CHECKSUM_BLOCK_BYTES - spanStart;
  const end = Math.min(data.length, start + CHECKSUM_BLOCK_BYTES);
  for (let i = start; i < end; i++) if (data[i] !== 0) return false;
  return true;
}

function sumAt(sums: ObjectSums | null, block: number): bigint | null {
  if (!sums || sums.sums.length < (block + 1) * CHECKSUM_BYTES) return null;
  return sums.sums.readBigUInt64BE(block * CHECKSUM_BYTES);
}

function hasSum(sums: ObjectSums, block: number): boolean {
  const sum = sumAt(sums, block);
  return sum !== null && sum !== 0n;
}

/** Whether block (`index` in the object, `block` in the sums) must be copied:
 *  always for a new copy, else when the copy's checksum is not the source's. A
 *  block with no checksum on either side is a hole on the source, but on the copy
 *  it may hold bytes whose checksum was never written (its node died between
 *  the two): copied (as zeros) if the copy has bytes there. */
function differs(source: ObjectSums, target: ObjectSums | null, index: number, block: number): boolean {
  if (!target) return true;
  const wanted = sumAt(source, block) ?? 0n;
  const held = sumAt(target, block) ?? 0n;
  if (wanted === 0n && held === 0n) return index * CHECKSUM_BLOCK_BYTES < target.length;
  return wanted !== held;
}

/** Checks a copy just made against its source, block by block: every block the
 *  source has a checksum for must have the same on the copy, and the copy must
 *  end at `length` (null: where the source ends). Throws (EIO) at the first difference. */
export async function verifyCopy(agents: AgentSource, ino: number, object: number, source: Replica, target: Replica, lengthOrNull: number | null): Promise<void> {
  const { from, to, sourceKey, targetKey, length, blocks } = await endsOf(agents, ino, object, source, target, lengthOrNull);
  for (let first = 0; first < blocks || first === 0; first += SUMS_PER_CALL_MAX) {
    const count = Math.min(SUMS_PER_CALL_MAX, blocks - first);
    const [wanted, held] = await Promise.all([from.sums(sourceKey, first, count), to.sums(targetKey, first, count)]);
    if (first === 0 && (held.length !== length || wanted.length !== length)) throw new FsError(E.EIO, `copy of object ${object} of inode ${ino} on node ${target.node} is ${held.length} bytes long, not ${length}`);
    for (let block = 0; block < count; block++) {
      const sum = sumAt(wanted, block) ?? 0n;
      if (sum !== 0n && sumAt(held, block) !== sum) {
        throw new FsError(E.EIO, `copy of object ${object} of inode ${ino} on node ${target.node} differs from node ${source.node}'s at block ${first + block}`);
      }
    }
    if (count <= 0) break;
  }
}
