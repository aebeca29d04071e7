// kdfs-sys, the agents' fallocate(2), on a real file: what it does to a file's
// length and blocks, and the errors it gives, as node:fs gives them.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import sys from 'kdfs-sys';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { errnoOf, E } from '../../src/common/errno.js';

const MiB = 1024 * 1024;
let dir: string;
let fd: number;
let file: string;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kdfs-sys-'));
  file = path.join(dir, 'f');
  fd = fs.openSync(file, 'w+');
});
afterEach(() => {
  fs.closeSync(fd);
  fs.rmSync(dir, { recursive: true, force: true });
});

it('allocates blocks past the end without changing the length (KEEP_SIZE), or with it (0); punches holes', async () => {
  fs.writeSync(fd, Buffer.alloc(4096, 1));
  await sys.fallocate(fd, sys.FALLOC_FL_KEEP_SIZE, 0, 4 * MiB);
  expect(fs.fstatSync(fd).size).toBe(4096);
  expect(fs.fstatSync(fd).blocks * 512).toBeGreaterThanOrEqual(4 * MiB);
  await sys.fallocate(fd, 0, 0, 4 * MiB);
  expect(fs.fstatSync(fd).size).toBe(4 * MiB);
  await sys.fallocate(fd, sys.FALLOC_FL_PUNCH_HOLE | sys.FALLOC_FL_KEEP_SIZE, 0, 4 * MiB);
  expect(fs.fstatSync(fd).blocks).toBe(0);
  expect(fs.readFileSync(file).equals(Buffer.alloc(4 * MiB))).toBe(true);
});

it('fails as node:fs calls do (code and errno), and throws at once on arguments it cannot take', async () => {
  const closed = fs.openSync(file, 'r');
  fs.closeSync(closed);
  const failure = await sys.fallocate(closed, 0, 0, 4096).catch((err: unknown) => err);
  expect(failure).toMatchObject({ code: 'EBADF', syscall: 'fallocate' });
  expect(errnoOf(failure)).toBe(E.EBADF);
  // a hole punched without KEEP_SIZE: the kernel refuses it
  await expect(sys.fallocate(fd, sys.FALLOC_FL_PUNCH_HOLE, 0, 4096)).rejects.toMatchObject({ code: 'EOPNOTSUPP' });
  expect(() => sys.fallocate(fd, 0, 0, 0)).toThrow(RangeError);
  expect(() => sys.fallocate(fd, 0, -1, 4096)).toThrow(RangeError);
  expect(() => sys.fallocate(fd, 0, 2 ** 60, 4096)).toThrow(RangeError);
  expect(() => sys.fallocate(fd, 0, Number.NaN, 4096)).toThrow(RangeError);
  expect(() => sys.fallocate(fd, 0, 0, 4096.5)).toThrow(RangeError);
  expect(() => (sys.fallocate as (...args: unknown[]) => unknown)(fd, 0, 0)).toThrow(TypeError);
});
