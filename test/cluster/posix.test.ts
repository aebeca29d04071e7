// POSIX behaviour through a kDFS mount, with the errno a local Linux file system gives.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, command, objectBytes } from '../harness/cluster.js';
import { NOBODY, asUser, expectErrno, python } from '../harness/posix.js';

const MiB = 1024 * 1024;

let cluster: Cluster;
let n = 0;
/** A fresh path on node 1. */
const fresh = (prefix = 'f') => cluster.path(1, `${prefix}${++n}`);

beforeAll(async () => {
  cluster = await Cluster.start({ nodes: 3 });
});
afterAll(async () => {
  await cluster?.stop();
});

describe('files', () => {
  it('reads back what was written, for sizes around stripe units', () => {
    for (const size of [0, 1, 4095, 4096, MiB - 1, MiB, MiB + 1, 3.5 * MiB + 17]) {
      const file = fresh();
      const data = randomBytes(size);
      fs.writeFileSync(file, data);
      expect(fs.statSync(file).size).toBe(size);
      expect(fs.readFileSync(file).equals(data)).toBe(true);
    }
  });

  it('writes at any offset: sparse files, holes read as zeros', () => {
    const file = fresh();
    const model = Buffer.alloc(5 * MiB + 300);
    const fd = fs.openSync(file, 'w+');
    const writes: [number, number][] = [[5 * MiB, 300], [123, 1000], [MiB - 10, 20], [3 * MiB + 7, 2 * MiB - 7], [0, 5]];
    for (const [offset, length] of writes) {
      const data = randomBytes(length);
      expect(fs.writeSync(fd, data, 0, length, offset)).toBe(length);
      data.copy(model, offset);
    }
    expect(fs.fstatSync(fd).size).toBe(model.length);
    const back = Buffer.alloc(model.length);
    expect(fs.readSync(fd, back, 0, back.length, 0)).toBe(model.length);
    expect(back.equals(model)).toBe(true);
    fs.closeSync(fd);
    expect(fs.readFileSync(file).equals(model)).toBe(true);
  });

  it('appends with O_APPEND, whatever the offset asked for', () => {
    const file = fresh();
    fs.writeFileSync(file, 'abc');
    const fd = fs.openSync(file, 'a');
    fs.writeSync(fd, 'def');
    fs.writeSync(fd, 'ghi', 0); // pwrite on O_APPEND appends (Linux)
    fs.closeSync(fd);
    expect(fs.readFileSync(file, 'utf8')).toBe('abcdefghi');
  });

  it('shows a reader on the same node what write-only descriptors write, whichever opened first', () => {
    const file = fresh();
    const expected = Buffer.from('a'.repeat(10_000));
    fs.writeFileSync(file, expected);
    const readBack = (fd: number) => {
      const back = Buffer.alloc(expected.length + 4096);
      return back.subarray(0, fs.readSync(fd, back, 0, back.length, 0));
    };
    // the reader's pages are cached before the writers come
    const reader = fs.openSync(file, 'r');
    expect(readBack(reader).equals(expected)).toBe(true);
    const appender = fs.openSync(file, 'a');
    fs.writeSync(appender, 'b'.repeat(100));
    const overwriter = fs.openSync(file, fs.constants.O_WRONLY);
    fs.writeSync(overwriter, 'x'.repeat(50), 0);
    const grown = Buffer.concat([Buffer.from('x'.repeat(50)), expected.subarray(50), Buffer.from('b'.repeat(100))]);
    expect(readBack(reader).equals(grown)).toBe(true);
    for (const fd of [reader, appender, overwriter]) fs.closeSync(fd);
    // the writer comes first
    const writer = fs.openSync(file, fs.constants.O_WRONLY);
    const lateReader = fs.openSync(file, 'r');
    expect(readBack(lateReader).equals(grown)).toBe(true);
    fs.writeSync(writer, 'y'.repeat(10), 5000);
    grown.fill('y', 5000, 5010);
    expect(readBack(lateReader).equals(grown)).toBe(true);
    for (const fd of [writer, lateReader]) fs.closeSync(fd);
    expect(fs.readFileSync(file).equals(grown)).toBe(true);
  });

  it('empties a file opened with O_TRUNC', () => {
    const file = fresh();
    fs.writeFileSync(file, randomBytes(2 * MiB));
    fs.writeFileSync(file, 'new');
    expect(fs.readFileSync(file, 'utf8')).toBe('new');
  });

  it('refuses O_EXCL on an existing name with EEXIST', () => {
    const file = fresh();
    fs.writeFileSync(file, 'x', { flag: 'wx' });
    expectErrno(() => fs.writeFileSync(file, 'y', { flag: 'wx' }), 'EEXIST');
    expect(fs.readFileSync(file, 'utf8')).toBe('x');
  });

  it('truncates down and up; bytes cut off never come back', () => {
    const file = fresh();
    const data = randomBytes(3 * MiB);
    fs.writeFileSync(file, data);
    fs.truncateSync(file, MiB + 5);
    expect(fs.statSync(file).size).toBe(MiB + 5);
    fs.truncateSync(file, 4 * MiB);
    const back = fs.readFileSync(file);
    expect(back.length).toBe(4 * MiB);
    expect(back.subarray(0, MiB + 5).equals(data.subarray(0, MiB + 5))).toBe(true);
    expect(back.subarray(MiB + 5).every((b) => b === 0)).toBe(true);
    const fd = fs.openSync(file, 'r+');
    fs.ftruncateSync(fd, 10);
    expect(fs.fstatSync(fd).size).toBe(10);
    fs.closeSync(fd);
    expect(fs.readFileSync(file).equals(data.subarray(0, 10))).toBe(true);
  });

  it('keeps an unlinked open file readable until its last close, then frees its objects', async () => {
    const file = fresh();
    const data = randomBytes(6 * MiB);
    fs.writeFileSync(file, data);
    const before = [1, 2, 3].reduce((sum, id) => sum + objectBytes(cluster.nodeDir(id)), 0);
    const fd = fs.openSync(file, 'r+');
    fs.unlinkSync(file);
    expect(fs.existsSync(file)).toBe(false);
    expect(fs.readdirSync(cluster.mnt(1))).not.toContain(file.split('/').pop());
    const back = Buffer.alloc(data.length);
    expect(fs.readSync(fd, back, 0, back.length, 0)).toBe(data.length);
    expect(back.equals(data)).toBe(true);
    expect(fs.fstatSync(fd).nlink).toBe(0);
    fs.writeSync(fd, 'still writable', 0);
    fs.closeSync(fd);
    // the root removes the objects of freed inodes in the background
    const deadline = Date.now() + 20_000;
    let after = before;
    while (Date.now() < deadline) {
      after = [1, 2, 3].reduce((sum, id) => sum + objectBytes(cluster.nodeDir(id)), 0);
      if (before - after >= 5 * MiB) break;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(before - after).toBeGreaterThanOrEqual(5 * MiB);
  });

  it('rm -rf on node 2 of a tree of 1,000 files of 12 KiB: the objects of every one go from every node', async () => {
    // more files than the root removes the objects of in one batch
    const objectsNow = () => [1, 2, 3].reduce((sum, id) => sum + objectBytes(cluster.nodeDir(id)), 0);
    // the objects of files earlier tests removed go first: they would make up for some of these
    let before = objectsNow();
    for (const deadline = Date.now() + 30_000; Date.now() < deadline;) {
      await new Promise((resolve) => setTimeout(resolve, 500));
      const settled = objectsNow();
      if (settled === before) break;
      before = settled;
    }
    const tree = fresh('tree');
    for (let d = 0; d < 10; d++) {
      fs.mkdirSync(`${tree}/d${d}`, { recursive: true });
      for (let f = 0; f < 100; f++) fs.writeFileSync(`${tree}/d${d}/f${f}`, randomBytes(12 * 1024));
    }
    const made = objectsNow();
    expect(made - before).toBeGreaterThanOrEqual(1000 * 12 * 1024);
    const removed = spawnSync('rm', ['-rf', cluster.path(2, tree.split('/').pop()!)], { timeout: 60_000, encoding: 'utf8' });
    expect(removed.stderr).toBe('');
    expect(removed.status).toBe(0);
    const deadline = Date.now() + 60_000;
    let after = made;
    while (Date.now() < deadline) {
      after = objectsNow();
      if (after <= before) break;
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    expect(after).toBeLessThanOrEqual(before);
  }, 120_000);

  it('syncs with fsync and fdatasync', () => {
    const file = fresh();
    const fd = fs.openSync(file, 'w');
    fs.writeSync(fd, randomBytes(MiB));
    fs.fsyncSync(fd);
    fs.writeSync(fd, 'more');
    fs.fdatasyncSync(fd);
    fs.closeSync(fd);
    expect(fs.statSync(file).size).toBe(MiB + 4);
  });

  it('holds files up to 2^40 bytes and refuses offsets past its limit with EFBIG', () => {
    const file = fresh();
    fs.writeFileSync(file, '');
    fs.truncateSync(file, 2 ** 40);
    expect(fs.statSync(file).size).toBe(2 ** 40);
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, 'end', 0, 'utf8');
    fs.writeSync(fd, Buffer.from('tail'), 0, 4, 2 ** 40 + 10);
    const back = Buffer.alloc(4);
    fs.readSync(fd, back, 0, 4, 2 ** 40 + 10);
    expect(back.toString()).toBe('tail');
    expect(fs.fstatSync(fd).size).toBe(2 ** 40 + 14);
    expectErrno(() => fs.writeSync(fd, Buffer.from('x'), 0, 1, 2 ** 50), 'EFBIG');
    fs.closeSync(fd);
    expectErrno(() => fs.truncateSync(file, 2 ** 50), 'EFBIG');
  });

  it('gives 64-bit inode numbers, the same on every node', () => {
    const file = fresh();
    fs.writeFileSync(file, 'x');
    const ino = fs.statSync(file, { bigint: true }).ino;
    expect(ino).toBeGreaterThan(2n ** 32n);
    const name = file.split('/').pop()!;
    for (const id of [2, 3]) expect(fs.statSync(cluster.path(id, name), { bigint: true }).ino).toBe(ino);
  });

  it('takes names of 255 bytes and refuses 256 with ENAMETOOLONG', () => {
    const dir = fresh('names');
    fs.mkdirSync(dir);
    const long = 'é'.repeat(127) + 'x'; // 255 bytes of UTF-8
    fs.writeFileSync(`${dir}/${long}`, 'ok');
    expect(fs.readdirSync(dir)).toEqual([long]);
    expectErrno(() => fs.writeFileSync(`${dir}/${long}y`, 'no'), 'ENAMETOOLONG');
    expectErrno(() => fs.mkdirSync(`${dir}/${'d'.repeat(256)}`), 'ENAMETOOLONG');
    // looked up too, on nodes that know the directory whole (they answer absent names themselves)
    const name = dir.split('/').pop()!;
    for (const id of [1, 2]) {
      fs.readdirSync(cluster.path(id, name));
      expectErrno(() => fs.statSync(cluster.path(id, name, 'b'.repeat(256))), 'ENAMETOOLONG');
    }
  });

  it('refuses names and link targets that are not valid UTF-8 (EILSEQ) rather than change them, and finds no such name', () => {
    // through node 2: a Latin-1 name became U+FFFD, so that 'caf\xe9' and 'caf\xff' named one file
    const name = `bytes${++n}`;
    const dir = cluster.path(2, name);
    fs.mkdirSync(dir);
    fs.writeFileSync(`${dir}/caf\u00e9`, 'utf-8');
    const latin1 = Buffer.concat([Buffer.from(`${dir}/caf`), Buffer.from([0xe9])]);
    expectErrno(() => fs.writeFileSync(latin1, 'latin1'), 'EILSEQ');
    expectErrno(() => fs.mkdirSync(latin1), 'EILSEQ');
    expectErrno(() => fs.statSync(latin1), 'ENOENT');
    expectErrno(() => fs.renameSync(`${dir}/caf\u00e9`, latin1), 'EILSEQ');
    expectErrno(() => fs.linkSync(`${dir}/caf\u00e9`, latin1), 'EILSEQ');
    expectErrno(() => fs.symlinkSync(Buffer.from([0x2f, 0x78, 0xe9]), `${dir}/link`), 'EILSEQ');
    // an overlong form and a surrogate are not UTF-8 either
    for (const bad of [[0xc0, 0xaf], [0xed, 0xa0, 0x80]]) expectErrno(() => fs.writeFileSync(Buffer.concat([Buffer.from(`${dir}/`), Buffer.from(bad)]), 'x'), 'EILSEQ');
    expect(fs.readdirSync(cluster.path(3, name))).toEqual(['caf\u00e9']);
    expect(fs.readFileSync(cluster.path(3, name, 'caf\u00e9'), 'utf8')).toBe('utf-8');
  });
});

describe('small files', () => {
  it('keep their data in their inode until they outgrow it', () => {
    const objects = () => [1, 2, 3].reduce((sum, id) => sum + objectBytes(cluster.nodeDir(id)), 0);
    const file = fresh('small');
    const before = objects();
    const small = randomBytes(5000);
    fs.writeFileSync(file, small);
    fs.appendFileSync(file, small.subarray(0, 1000));
    const grown = Buffer.concat([small, small.subarray(0, 1000)]);
    expect(objects()).toBe(before);
    for (const id of [2, 3]) expect(fs.readFileSync(cluster.path(id, file.split('/').pop()!)).equals(grown)).toBe(true);
    // holes and truncation while inline
    fs.truncateSync(file, 8000);
    expect(fs.readFileSync(file).equals(Buffer.concat([grown, Buffer.alloc(2000)]))).toBe(true);
    fs.truncateSync(file, 10);
    expect(fs.readFileSync(file).equals(grown.subarray(0, 10))).toBe(true);
    // past the inline limit: spilled to the objects, whole on every node
    const big = randomBytes(3 * MiB);
    fs.appendFileSync(file, big);
    const all = Buffer.concat([grown.subarray(0, 10), big]);
    expect(objects() - before).toBeGreaterThanOrEqual(3 * MiB);
    for (const id of [1, 2, 3]) expect(fs.readFileSync(cluster.path(id, file.split('/').pop()!)).equals(all)).toBe(true);
  });

  it('survive a write on one node while another has spilled them: each node\'s writes stay', () => {
    const name = fresh('race').split('/').pop()!;
    fs.writeFileSync(cluster.path(1, name), Buffer.alloc(3000, 1));
    const a = fs.openSync(cluster.path(1, name), 'r+');
    fs.writeSync(a, Buffer.alloc(100, 2), 0, 100, 0);
    // node 2 grows it past the inline limit (its objects take the content) and closes first
    const b = fs.openSync(cluster.path(2, name), 'r+');
    fs.writeSync(b, Buffer.alloc(MiB, 3), 0, MiB, 3000);
    fs.closeSync(b);
    fs.closeSync(a);
    const expected = Buffer.alloc(3000 + MiB, 3);
    expected.fill(1, 0, 3000);
    expected.fill(2, 0, 100);
    for (const id of [1, 2, 3]) expect(fs.readFileSync(cluster.path(id, name)).equals(expected), `node ${id}`).toBe(true);
  });
});

describe('directories', () => {
  it('creates, lists (with . and ..) and removes directories', () => {
    const dir = fresh('d');
    fs.mkdirSync(dir);
    fs.mkdirSync(`${dir}/sub`);
    fs.writeFileSync(`${dir}/file`, '');
    expect(fs.readdirSync(dir).sort()).toEqual(['file', 'sub']);
    const ls = spawnSync('ls', ['-ai', dir], { encoding: 'utf8' }).stdout.trim().split(/\s+/);
    const inodes = new Map<string, string>();
    for (let i = 0; i < ls.length; i += 2) inodes.set(ls[i + 1], ls[i]);
    expect(inodes.get('.')).toBe(String(fs.statSync(dir).ino));
    expect(inodes.get('..')).toBe(String(fs.statSync(cluster.mnt(1)).ino));
    expect(fs.statSync(dir).nlink).toBe(3);
    expectErrno(() => fs.mkdirSync(dir), 'EEXIST');
    expectErrno(() => fs.rmdirSync(dir), 'ENOTEMPTY');
    expectErrno(() => fs.rmdirSync(`${dir}/file`), 'ENOTDIR');
    expectErrno(() => fs.unlinkSync(`${dir}/sub`), 'EISDIR');
    expectErrno(() => fs.mkdirSync(`${dir}/nope/deeper`), 'ENOENT');
    expectErrno(() => fs.mkdirSync(`${dir}/file/deeper`), 'ENOTDIR');
    fs.unlinkSync(`${dir}/file`);
    fs.rmdirSync(`${dir}/sub`);
    expect(fs.statSync(dir).nlink).toBe(2);
    fs.rmdirSync(dir);
    expect(fs.existsSync(dir)).toBe(false);
  });

  it('lists directories larger than one page of the metadata service', () => {
    const dir = fresh('big');
    fs.mkdirSync(dir);
    const names = Array.from({ length: 5000 }, (_, i) => `entry-${i}`);
    for (const name of names) fs.closeSync(fs.openSync(`${dir}/${name}`, 'w'));
    expect(fs.readdirSync(dir).sort()).toEqual([...names].sort());
  });
});

describe('rename', () => {
  it('moves files across directories, replacing an existing file atomically', () => {
    const a = fresh('ra');
    const b = fresh('rb');
    fs.mkdirSync(a);
    fs.mkdirSync(b);
    fs.writeFileSync(`${a}/x`, 'new');
    fs.writeFileSync(`${b}/y`, 'old');
    const oldIno = fs.statSync(`${b}/y`).ino;
    const newIno = fs.statSync(`${a}/x`).ino;
    fs.renameSync(`${a}/x`, `${b}/y`);
    expect(fs.existsSync(`${a}/x`)).toBe(false);
    expect(fs.readFileSync(`${b}/y`, 'utf8')).toBe('new');
    expect(fs.statSync(`${b}/y`).ino).toBe(newIno);
    expect(fs.statSync(`${b}/y`).ino).not.toBe(oldIno);
  });

  it('moves directories, over an empty directory but not a non-empty one', () => {
    const parent = fresh('rd');
    fs.mkdirSync(parent);
    fs.mkdirSync(`${parent}/src`);
    fs.writeFileSync(`${parent}/src/inside`, 'i');
    fs.mkdirSync(`${parent}/empty`);
    fs.mkdirSync(`${parent}/full`);
    fs.writeFileSync(`${parent}/full/f`, '');
    fs.writeFileSync(`${parent}/file`, '');
    expectErrno(() => fs.renameSync(`${parent}/src`, `${parent}/full`), 'ENOTEMPTY');
    expectErrno(() => fs.renameSync(`${parent}/src`, `${parent}/file`), 'ENOTDIR');
    expectErrno(() => fs.renameSync(`${parent}/file`, `${parent}/empty`), 'EISDIR');
    expectErrno(() => fs.renameSync(`${parent}/src`, `${parent}/src/inside-dir`), 'EINVAL');
    expectErrno(() => fs.renameSync(`${parent}/missing`, `${parent}/other`), 'ENOENT');
    fs.renameSync(`${parent}/src`, `${parent}/empty`);
    expect(fs.readFileSync(`${parent}/empty/inside`, 'utf8')).toBe('i');
    fs.renameSync(`${parent}/empty`, `${parent}/full/moved`);
    expect(fs.statSync(parent).nlink).toBe(3); // . + full + .. from full's side
    expect(fs.statSync(`${parent}/full`).nlink).toBe(3);
    const ls = spawnSync('ls', ['-ai', `${parent}/full/moved`], { encoding: 'utf8' }).stdout.trim().split(/\s+/);
    expect(ls[ls.indexOf('..') - 1]).toBe(String(fs.statSync(`${parent}/full`).ino));
  });

  it('does nothing when both names are links to one file', () => {
    const file = fresh();
    fs.writeFileSync(file, 'same');
    fs.linkSync(file, `${file}-link`);
    fs.renameSync(file, `${file}-link`);
    expect(fs.readFileSync(file, 'utf8')).toBe('same');
    expect(fs.statSync(file).nlink).toBe(2);
  });
});

describe('links', () => {
  it('makes hard links to one inode', () => {
    const file = fresh();
    fs.writeFileSync(file, 'one');
    fs.linkSync(file, `${file}-2`);
    const [a, b] = [fs.statSync(file), fs.statSync(`${file}-2`)];
    expect(a.ino).toBe(b.ino);
    expect(a.nlink).toBe(2);
    fs.writeFileSync(`${file}-2`, 'two');
    expect(fs.readFileSync(file, 'utf8')).toBe('two');
    fs.unlinkSync(file);
    expect(fs.statSync(`${file}-2`).nlink).toBe(1);
    expect(fs.readFileSync(`${file}-2`, 'utf8')).toBe('two');
    expectErrno(() => fs.linkSync(`${file}-2`, `${file}-2`), 'EEXIST');
    const dir = fresh('ld');
    fs.mkdirSync(dir);
    expectErrno(() => fs.linkSync(dir, `${dir}-link`), 'EPERM');
  });

  it('makes symbolic links, followed or not', () => {
    const file = fresh();
    fs.writeFileSync(file, 'target');
    const link = `${file}-sym`;
    const target = file.split('/').pop()!;
    fs.symlinkSync(target, link);
    expect(fs.readlinkSync(link)).toBe(target);
    expect(fs.lstatSync(link).isSymbolicLink()).toBe(true);
    expect(fs.lstatSync(link).size).toBe(Buffer.byteLength(target));
    expect(fs.readFileSync(link, 'utf8')).toBe('target');
    fs.symlinkSync('nowhere', `${link}-dangling`);
    expectErrno(() => fs.readFileSync(`${link}-dangling`), 'ENOENT');
    expect(fs.readlinkSync(`${link}-dangling`)).toBe('nowhere');
    expectErrno(() => fs.readlinkSync(file), 'EINVAL');
    expectErrno(() => fs.symlinkSync('x', link), 'EEXIST');
  });

  it('makes FIFOs that carry data between processes', async () => {
    const fifo = fresh('fifo');
    expect((await command('mkfifo', [fifo])).code).toBe(0);
    expect(fs.statSync(fifo).isFIFO()).toBe(true);
    const writer = command('sh', ['-c', `echo through > ${fifo}`]);
    const reader = await command('cat', [fifo]);
    await writer;
    expect(reader.stdout).toBe('through\n');
  });
});

describe('attributes', () => {
  it('sets modes, owners and nanosecond times', async () => {
    const file = fresh();
    fs.writeFileSync(file, 'x');
    fs.chmodSync(file, 0o4751);
    expect(fs.statSync(file).mode & 0o7777).toBe(0o4751);
    fs.chownSync(file, 1234, 5678);
    expect(fs.statSync(file).uid).toBe(1234);
    expect(fs.statSync(file).gid).toBe(5678);
    expect((await command('touch', ['-a', '-d', '1999-12-31 23:59:59.000000001', file])).code).toBe(0);
    expect((await command('touch', ['-m', '-d', '2038-01-19 03:14:08.999999999', file])).code).toBe(0);
    const st = fs.statSync(file, { bigint: true });
    expect(st.atimeNs).toBe(946684799000000001n);
    expect(st.mtimeNs).toBe(2147483648999999999n);
  });

  it('updates mtime and ctime on writes, and the parent on entry changes', () => {
    const dir = fresh('t');
    fs.mkdirSync(dir);
    const dirBefore = fs.statSync(dir, { bigint: true });
    fs.writeFileSync(`${dir}/f`, 'a');
    const dirAfter = fs.statSync(dir, { bigint: true });
    expect(dirAfter.mtimeNs).toBeGreaterThan(dirBefore.mtimeNs);
    const before = fs.statSync(`${dir}/f`, { bigint: true });
    fs.appendFileSync(`${dir}/f`, 'b');
    const after = fs.statSync(`${dir}/f`, { bigint: true });
    expect(after.mtimeNs).toBeGreaterThan(before.mtimeNs);
    expect(after.ctimeNs).toBeGreaterThan(before.ctimeNs);
  });

  it('checks permissions for users other than root', () => {
    const dir = fresh('perm');
    fs.mkdirSync(dir, { mode: 0o755 });
    fs.writeFileSync(`${dir}/secret`, 's', { mode: 0o600 });
    fs.writeFileSync(`${dir}/public`, 'p', { mode: 0o644 });
    expect(asUser(NOBODY, `return fs.readFileSync(${JSON.stringify(`${dir}/public`)}, 'utf8')`)).toBe('p');
    expect(asUser(NOBODY, `fs.readFileSync(${JSON.stringify(`${dir}/secret`)})`)).toBe('EACCES');
    expect(asUser(NOBODY, `fs.writeFileSync(${JSON.stringify(`${dir}/new`)}, 'n')`)).toBe('EACCES');
    expect(asUser(NOBODY, `fs.chmodSync(${JSON.stringify(`${dir}/public`)}, 0o777)`)).toBe('EPERM');
    fs.chmodSync(cluster.mnt(1), 0o755);
    fs.chmodSync(dir, 0o777);
    expect(asUser(NOBODY, `fs.writeFileSync(${JSON.stringify(`${dir}/mine`)}, 'm'); return fs.statSync(${JSON.stringify(`${dir}/mine`)}).uid`)).toBe(NOBODY.uid);
    expect(fs.statSync(`${dir}/mine`).gid).toBe(NOBODY.gid);
    expect(asUser(NOBODY, `fs.unlinkSync(${JSON.stringify(`${dir}/secret`)})`)).toBe('ok');
  });

  it('inherits the group of a set-group-ID directory', () => {
    const dir = fresh('sgid');
    fs.mkdirSync(dir);
    fs.chownSync(dir, 0, 4321);
    fs.chmodSync(dir, 0o2777);
    fs.writeFileSync(`${dir}/f`, '');
    fs.mkdirSync(`${dir}/d`);
    expect(fs.statSync(`${dir}/f`).gid).toBe(4321);
    expect(fs.statSync(`${dir}/d`).gid).toBe(4321);
    expect(fs.statSync(`${dir}/d`).mode & 0o2000).toBe(0o2000);
  });

  it('keeps user.* extended attributes', () => {
    const file = fresh();
    fs.writeFileSync(file, '');
    const py = (code: string) => python(`p = ${JSON.stringify(file)}\n${code}`);
    expect(py(`os.setxattr(p, 'user.colour', b'blue')\nprint(os.getxattr(p, 'user.colour').decode())`).stdout).toBe('blue');
    expect(py(`os.setxattr(p, 'user.size', bytes(1000))\nprint(sorted(os.listxattr(p)))`).stdout).toBe("['user.colour', 'user.size']");
    const errno = (code: string) => py(`import errno\ntry:\n  ${code}\n  print('ok')\nexcept OSError as e:\n  print(errno.errorcode[e.errno])`).stdout;
    expect(errno(`os.getxattr(p, 'user.missing')`)).toBe('ENODATA');
    expect(errno(`os.setxattr(p, 'user.colour', b'red', os.XATTR_CREATE)`)).toBe('EEXIST');
    expect(errno(`os.setxattr(p, 'user.other', b'red', os.XATTR_REPLACE)`)).toBe('ENODATA');
    expect(errno(`os.removexattr(p, 'user.colour')`)).toBe('ok');
    expect(errno(`os.removexattr(p, 'user.colour')`)).toBe('ENODATA');
    expect(py(`print(os.listxattr(p))`).stdout).toBe("['user.size']");
    expect(fs.statSync(file).size).toBe(0);
  });

  it('reports the capacity of the cluster in statfs', () => {
    const st = fs.statfsSync(cluster.mnt(2));
    const local = fs.statfsSync(cluster.nodeDir(1));
    // three nodes on one disk here: three times its size
    expect(st.blocks * st.bsize).toBeGreaterThanOrEqual(3 * local.blocks * local.bsize * 0.99);
    expect(st.bavail).toBeGreaterThan(0);
    expect(st.bavail * st.bsize).toBeLessThanOrEqual(st.blocks * st.bsize);
  });
});

describe('striping policy', () => {
  it('sets the layout of new files under a directory, inherited by new subdirectories', async () => {
    const dir = fresh('stripe');
    fs.mkdirSync(dir);
    expect((await cluster.kdfs(['setstripe', '--unit', '64K', '--count', '2', dir])).code).toBe(0);
    fs.mkdirSync(`${dir}/sub`);
    fs.writeFileSync(`${dir}/sub/f`, randomBytes(300 * 1024));
    const out = (await cluster.kdfs(['getstripe', `${dir}/sub/f`])).stdout;
    expect(out).toMatch(/unit: 65536/);
    expect(out).toMatch(/count: 2/);
    expect(fs.readFileSync(`${dir}/sub/f`).length).toBe(300 * 1024);
    const dirOut = (await cluster.kdfs(['getstripe', `${dir}/sub`])).stdout;
    expect(dirOut).toMatch(/unit: 65536\ncount: 2/);
  });

  it('keeps as many copies of each object as the directory says, inherited by new subdirectories', async () => {
    const dir = fresh('copies');
    fs.mkdirSync(dir);
    expect((await cluster.kdfs(['getstripe', dir])).stdout).toMatch(/replicas: 2/);
    expect((await cluster.kdfs(['setstripe', '--replicas', '1', dir])).code).toBe(0);
    fs.mkdirSync(`${dir}/sub`);
    fs.writeFileSync(`${dir}/sub/f`, randomBytes(3 * 1024 * 1024));
    const layout = JSON.parse((await cluster.kdfs(['getstripe', '--json', `${dir}/sub/f`])).stdout) as { replicas: number; objects: { replicas: unknown[] }[] };
    expect(layout.replicas).toBe(1);
    for (const object of layout.objects) expect(object.replicas).toHaveLength(1);
    const refused = await cluster.kdfs(['setstripe', '--replicas', '9', dir]);
    expect(refused.code).toBe(2);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
  });

  it('changes the layout of an empty file, not of one with data', async () => {
    const file = fresh();
    fs.writeFileSync(file, '');
    expect((await cluster.kdfs(['setstripe', '--count', '1', file])).code).toBe(0);
    expect((await cluster.kdfs(['getstripe', file])).stdout).toMatch(/count: 1\n/);
    fs.writeFileSync(file, 'data');
    const refused = await cluster.kdfs(['setstripe', '--count', '3', file]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    // the metadata service's reason, not only the errno's name
    expect(refused.stderr).toMatch(/the layout of a file with data cannot change \(EBUSY\)/);
    const bad = await cluster.kdfs(['setstripe', '--unit', '1000', fresh()]);
    expect(bad.code).not.toBe(0);
  });

  it('refuses a unit or a count out of range with one line, changing nothing (no number wraps around)', async () => {
    const dir = fresh('range');
    fs.mkdirSync(dir);
    expect((await cluster.kdfs(['setstripe', '--unit', '128K', '--count', '2', dir])).code).toBe(0);
    for (const args of [['--unit', '100G'], ['--unit', '4G'], ['--count', '4294967297'], ['--count', '257']]) {
      const refused = await cluster.kdfs(['setstripe', ...args, dir]);
      expect(refused.code, args.join(' ')).toBe(2);
      expect(refused.stderr.trim().split('\n')).toHaveLength(1);
    }
    expect((await cluster.kdfs(['getstripe', dir])).stdout).toMatch(/unit: 131072\ncount: 2/);
  });
});
