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
