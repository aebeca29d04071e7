// Open directories counted by inode (src/vfs/dirs.ts): a call without a file
// handle on a directory open here may come by its descriptor (fchmod).
import { describe, expect, it } from 'vitest';
import { DirHandles } from '../../src/vfs/dirs.js';
import type { MetaClient } from '../../src/meta/client.js';

describe('open directories', () => {
  it('a directory is open while any of its handles is', () => {
    const dirs = new DirHandles(null as unknown as MetaClient);
    const first = dirs.open(10);
    const second = dirs.open(10);
    dirs.open(11);
    expect(dirs.isOpen(10)).toBe(true);
    dirs.release(first);
    expect(dirs.isOpen(10)).toBe(true);
    dirs.release(second);
    dirs.release(second);
    expect(dirs.isOpen(10)).toBe(false);
    expect(dirs.isOpen(11)).toBe(true);
  });
});
