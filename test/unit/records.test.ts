// Inode records as the metadata store writes and reads them (src/meta/records.ts).
import { describe, expect, it } from 'vitest';
import { decodeInode, encodeInode } from '../../src/meta/records.js';
import type { Inode } from '../../src/rpc/messages.js';

function emptyFile(): Inode {
  const time = { sec: 1_700_000_000, nsec: 5 };
  return {
    attr: { ino: 42, mode: 0o100644, uid: 0, gid: 0, nlink: 1, size: 0, rdev: 0, atime: time, mtime: time, ctime: time, blocks: 0 },
    layout: null, target: '', parent: 1, entries: 0, policy: null,
    xattrs: { 'user.empty': Buffer.alloc(0), 'user.full': Buffer.from('value') }, inlined: true, inlineData: Buffer.alloc(0),
  };
}

describe('inode records', () => {
  it('read back from the store, empty bytes are Buffers as written (found by a failover test: an empty file could not be spilled, EIO)', () => {
    const read = decodeInode(encodeInode(emptyFile()));
    expect(Buffer.isBuffer(read.inlineData)).toBe(true);
    expect(read.inlineData.equals(Buffer.alloc(0))).toBe(true);
    for (const value of Object.values(read.xattrs)) expect(Buffer.isBuffer(value)).toBe(true);
    expect(read.xattrs['user.full'].toString()).toBe('value');
    expect(read.xattrs['user.empty'].length).toBe(0);
  });
});
