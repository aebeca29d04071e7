// The object store of an agent on a real directory: whole pages from the buffer
// pool go to disk with O_DIRECT, the rest through the page cache, and reads see
// both alike.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { ObjectStore } from '../../src/agent/objectStore.js';
import { PAGE_BYTES, buffers } from '../../src/common/bufferPool.js';
import { E } from '../../src/common/errno.js';
import { FALLOCATE_ALLOCATE, FALLOCATE_PUNCH, FALLOCATE_ZERO } from '../../src/rpc/messages.js';

const MiB = 1024 * 1024;
const key = { ino: 1234, index: 0, replica: 0 };
let dir: string;
let store: ObjectStore;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kdfs-objects-'));
  ObjectStore.create(dir);
  store = new ObjectStore(dir);
});
afterEach(() => {
  store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** The open flags of this process's descriptors of a file, from /proc. */
function openFlags(file: string): number[] {
  const flags: number[] = [];
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = fs.readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // closed meanwhile
    }
    if (target !== file) continue;
    const info = fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    flags.push(parseInt(/^flags:\s+([0-7]+)/m.exec(info)![1], 8));
  }
  return flags;
}

it('writes whole pages of pooled buffers with O_DIRECT, anything else through the page cache, and reads back both', async () => {
  const model = Buffer.alloc(3 * MiB);
  const write = async (offset: number, data: Buffer) => {
    await store.write(key, offset, data);
    data.copy(model, offset);
  };
  const pooled = (length: number) => {
    const buffer = buffers.take(length).subarray(0, length);
    randomBytes(length).copy(buffer);
    expect(buffers.isPageAligned(buffer)).toBe(true);
    return buffer;
  };
  await write(MiB + 100, randomBytes(5000)); // unaligned, ordinary buffer
  expect(openFlags(store.pathOf(key)).some((f) => (f & fs.constants.O_DIRECT) !== 0)).toBe(false);
  await write(0, pooled(2 * MiB)); // over the bytes just written through the cache
  expect(openFlags(store.pathOf(key)).some((f) => (f & fs.constants.O_DIRECT) !== 0)).toBe(true);
  await write(MiB + 10, randomBytes(20)); // into pages just written directly
  await write(2 * MiB + PAGE_BYTES, pooled(MiB - PAGE_BYTES));
  const unaligned = pooled(64 * 1024).subarray(1, PAGE_BYTES + 1);
  expect(buffers.isPageAligned(unaligned)).toBe(false);
  await write(2 * MiB + 7, unaligned);
  expect((await store.read(key, 0, model.length)).equals(model)).toBe(true);
  await store.sync([key]);
  expect(fs.readFileSync(store.pathOf(key)).equals(model)).toBe(true);
});

it('once a copy is fenced, refuses writes and truncations made under an older layout generation, lets none on its way change the copy after it, and keeps the fence when the copy is removed', async () => {
  const under = (gen: number) => ({ ...key, gen });
  await store.write(under(0), 0, Buffer.alloc(8192, 1));
  // writes of gen 0 on their way when the repair fences gen 1: done before the
  // fence is, or refused; none changes the copy after it
  let inTurnDone = false;
  const inTurn = store.write(under(0), 0, Buffer.alloc(2 * MiB, 8)).finally(() => (inTurnDone = true));
  // in its turn by now: the fence waits for it
  await new Promise((resolve) => setImmediate(resolve));
  expect(inTurnDone).toBe(false);
  const onTheirWay = Promise.allSettled([inTurn, ...[2, 3, 4].map((byte) => store.write(under(0), 0, Buffer.alloc(2 * MiB, byte)))]);
  await store.fence([under(1)]);
  expect(inTurnDone).toBe(true);
  const afterFence = await store.read(key, 0, 8192);
  await onTheirWay;
  expect((await store.read(key, 0, 8192)).equals(afterFence)).toBe(true);
  // late requests of gen 0: refused, the copy unchanged
  await expect(store.write(under(0), 0, Buffer.alloc(4096, 5))).rejects.toMatchObject({ errno: 116 });
  await expect(store.truncate(under(0), 0)).rejects.toMatchObject({ errno: 116 });
  expect((await store.read(key, 0, 8192)).equals(afterFence)).toBe(true);
  // under the repaired layout's generation (or a later one): taken
  await store.write(under(1), 0, Buffer.alloc(4096, 6));
  await store.truncate(under(2), 4096);
  expect((await store.read(key, 0, 8192)).equals(Buffer.alloc(4096, 6))).toBe(true);
  // a fence never lowers the generation
  await store.fence([under(1)]);
  await expect(store.write(under(0), 0, Buffer.alloc(10))).rejects.toMatchObject({ errno: 116 });
  // removed, the copy stays fenced: a late write makes no orphan copy
  await store.remove([key]);
  await expect(store.write(under(0), 0, Buffer.alloc(10, 7))).rejects.toMatchObject({ errno: 116 });
  expect(fs.existsSync(store.pathOf(key))).toBe(false);
  await store.write(under(1), 0, Buffer.alloc(10, 7));
  expect((await store.read(key, 0, 10)).equals(Buffer.alloc(10, 7))).toBe(true);
});

it('fallocate: an allocation gives blocks and keeps content and length; a punch makes zeros and frees blocks; a zeroing keeps them; checksums follow', async () => {
  const data = randomBytes(64 * 1024 + 100);
  await store.write(key, 0, data);
  const file = store.pathOf(key);
  const allocatedBytes = () => fs.statSync(file).blocks * 512;
  await store.fallocate(key, FALLOCATE_ALLOCATE, 0, MiB);
  expect(fs.statSync(file).size).toBe(data.length);
  expect(allocatedBytes()).toBeGreaterThanOrEqual(MiB);
  expect((await store.read(key, 0, data.length)).equals(data)).toBe(true);

  // from the middle of block 1 to the middle of block 10
  const model = Buffer.from(data);
  const before = allocatedBytes();
  await store.fallocate(key, FALLOCATE_PUNCH, 5000, 40_000);
  model.fill(0, 5000, 45_000);
  expect((await store.read(key, 0, data.length)).equals(model)).toBe(true);
  expect(allocatedBytes()).toBeLessThan(before);

  // across the end of the object and past it: the length stays
  await store.fallocate(key, FALLOCATE_ZERO, 60_000, 100_000);
  model.fill(0, 60_000);
  expect(fs.statSync(file).size).toBe(data.length);
  expect((await store.read(key, 0, data.length)).equals(model)).toBe(true);

  // a punched block has the checksum of zeros, not none: a byte that appears there on disk is found
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.from([0x5a]), 0, 1, 20_000);
  fs.closeSync(fd);
  await expect(store.read(key, 16_384, 4096)).rejects.toMatchObject({ errno: E.EBADMSG });
});

it('fallocate of an absent object: a punch leaves it absent, an allocation makes it empty with blocks; a bad mode is EINVAL', async () => {
  await store.fallocate(key, FALLOCATE_PUNCH, 0, 4096);
  expect(fs.existsSync(store.pathOf(key))).toBe(false);
  await store.fallocate(key, FALLOCATE_ALLOCATE, 4096, MiB);
  expect(fs.statSync(store.pathOf(key)).size).toBe(0);
  expect(fs.statSync(store.pathOf(key)).blocks * 512).toBeGreaterThanOrEqual(MiB);
  // and room for the checksums of writes there (8 bytes a block)
  expect(fs.statSync(store.pathOf(key) + '.sum').blocks * 512).toBeGreaterThanOrEqual((MiB / 4096) * 8);
  expect((await store.read(key, 0, MiB)).length).toBe(0);
  await expect(store.fallocate(key, 7, 0, 4096)).rejects.toMatchObject({ errno: E.EINVAL });
});

it('fallocate that extends: the object grows to the range end, and a punch there frees the blocks', async () => {
  await store.fallocate(key, FALLOCATE_ALLOCATE, 0, MiB, true);
  const file = store.pathOf(key);
  expect(fs.statSync(file).size).toBe(MiB);
  expect(fs.statSync(file).blocks * 512).toBeGreaterThanOrEqual(MiB);
  await store.fallocate(key, FALLOCATE_PUNCH, 0, MiB);
  expect(fs.statSync(file).blocks).toBe(0);
  expect((await store.read(key, 0, MiB)).equals(Buffer.alloc(MiB))).toBe(true);
});

it('a punch over a sparse object keeps its checksums file sparse: written only where checksums were', async () => {
  await store.write(key, 0, randomBytes(4096));
  await store.write(key, 256 * MiB, randomBytes(4096));
  const sumsFile = store.pathOf(key) + '.sum';
  const before = fs.statSync(sumsFile).blocks;
  await store.fallocate(key, FALLOCATE_PUNCH, 0, 256 * MiB + 4096);
  expect(fs.statSync(sumsFile).blocks).toBeLessThanOrEqual(before);
  expect((await store.read(key, 256 * MiB, 4096)).equals(Buffer.alloc(4096))).toBe(true);
  expect((await store.read(key, 0, 4096)).equals(Buffer.alloc(4096))).toBe(true);
});
