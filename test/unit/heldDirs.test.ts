// Directories removed elsewhere that a process here still holds (src/vfs/heldDirs.ts).
import { describe, expect, it } from 'vitest';
import { HeldDirs } from '../../src/vfs/heldDirs.js';
import type { Attr } from '../../src/rpc/messages.js';

const time = { sec: 1, nsec: 0 };
const attr = (ino: number, mode: number): Attr => ({ ino, mode, uid: 7, gid: 8, nlink: 3, size: 4096, rdev: 0, atime: time, mtime: time, ctime: time, blocks: 0 });

describe('held directories', () => {
  it('answer for a directory the kernel was told of as for a removed one: no link, empty; not for a file', () => {
    const held = new HeldDirs();
    held.told(attr(10, 0o40750));
    held.told(attr(11, 0o100644));
    expect(held.removed(10)).toMatchObject({ ino: 10, mode: 0o40750, uid: 7, gid: 8, nlink: 0, size: 0 });
    expect(held.removed(11)).toBeNull();
    expect(held.removed(12)).toBeNull();
  });
});
