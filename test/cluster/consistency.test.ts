// What one node sees of another's changes: close-to-open for data, and every
// metadata change at once (the metadata service calls the other nodes back
// before it acknowledges a change).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, command } from '../harness/cluster.js';
import { expectErrno } from '../harness/posix.js';

const MiB = 1024 * 1024;

let cluster: Cluster;
let n = 0;
const name = (prefix = 'c') => `${prefix}${++n}`;

beforeAll(async () => {
  cluster = await Cluster.start({ nodes: 3 });
});
afterAll(async () => {
  await cluster?.stop();
});

describe('close-to-open', () => {
  it('reads whole on one node what another wrote and closed, even with the old version cached', () => {
    const file = name();
    fs.writeFileSync(cluster.path(1, file), 'short');
    // node 2 caches the short version: its attributes and its pages
    expect(fs.readFileSync(cluster.path(2, file), 'utf8')).toBe('short');
    expect(fs.statSync(cluster.path(2, file)).size).toBe(5);
    for (let round = 0; round < 3; round++) {
      const data = randomBytes(MiB + round * 4097);
      fs.writeFileSync(cluster.path(1, file), data);
      // at once, well within the attribute timeout of node 2
      expect(fs.readFileSync(cluster.path(2, file)).equals(data)).toBe(true);
      expect(fs.readFileSync(cluster.path(3, file)).equals(data)).toBe(true);
    }
  });

  it('sees a shrunk file shrunk, and rewritten bytes rewritten', () => {
    const file = name();
    fs.writeFileSync(cluster.path(1, file), Buffer.alloc(3 * MiB, 1));
    expect(fs.readFileSync(cluster.path(2, file)).length).toBe(3 * MiB);
    fs.writeFileSync(cluster.path(1, file), Buffer.alloc(1000, 2));
    const back = fs.readFileSync(cluster.path(2, file));
    expect(back.length).toBe(1000);
    expect(back.every((b) => b === 2)).toBe(true);
  });

  it('appends on one node after the appends of another', () => {
    const file = name();
    fs.writeFileSync(cluster.path(1, file), 'a');
    expect(fs.readFileSync(cluster.path(2, file), 'utf8')).toBe('a');
    for (const [id, text] of [[1, 'b'], [2, 'c'], [3, 'd'], [2, 'e'], [1, 'f']] as const) {
      fs.appendFileSync(cluster.path(id, file), text);
    }
    for (const id of [1, 2, 3]) expect(fs.readFileSync(cluster.path(id, file), 'utf8')).toBe('abcdef');
  });

  it('keeps the page cache of a file nobody changed', () => {
    const file = name();
    const data = randomBytes(2 * MiB);
    fs.writeFileSync(cluster.path(1, file), data);
    for (let i = 0; i < 3; i++) expect(fs.readFileSync(cluster.path(2, file)).equals(data)).toBe(true);
  });

  it('shows what a node wrote to other nodes once it closes the file, not before', () => {
    const file = name();
    fs.writeFileSync(cluster.path(1, file), '');
    const fd = fs.openSync(cluster.path(1, file), 'r+');
    fs.writeSync(fd, Buffer.alloc(4096, 7), 0, 4096, 0);
    // written but not closed: the size is not committed yet
    expect(fs.readFileSync(cluster.path(2, file)).length).toBe(0);
    fs.closeSync(fd);
    const back = fs.readFileSync(cluster.path(2, file));
    expect(back.length).toBe(4096);
    expect(back.every((b) => b === 7)).toBe(true);
  });

  it('lets a node read an open file that another node unlinked, until it closes it', async () => {
    const file = name();
    const data = randomBytes(3 * MiB);
    fs.writeFileSync(cluster.path(1, file), data);
    const fd = fs.openSync(cluster.path(2, file), 'r');
    fs.unlinkSync(cluster.path(1, file));
    const back = Buffer.alloc(data.length);
    expect(fs.readSync(fd, back, 0, back.length, 0)).toBe(data.length);
    expect(back.equals(data)).toBe(true);
    fs.closeSync(fd);
    // the name is gone everywhere, at once
    expectErrno(() => fs.statSync(cluster.path(2, file)), 'ENOENT');
  });

  it('opens the new file when another node replaced the name (no stale inode)', () => {
    const file = name();
    fs.writeFileSync(cluster.path(1, file), 'old');
    expect(fs.readFileSync(cluster.path(2, file), 'utf8')).toBe('old');
    fs.writeFileSync(cluster.path(1, `${file}.tmp`), 'new');
    fs.renameSync(cluster.path(1, `${file}.tmp`), cluster.path(1, file));
    // node 2's kernel still holds the name's old entry: opening it must not reach the old file
    expect(fs.readFileSync(cluster.path(2, file), 'utf8')).toBe('new');
    expect(fs.statSync(cluster.path(2, file)).ino).toBe(fs.statSync(cluster.path(1, file)).ino);
  });
});

describe('metadata changes', () => {
  it('are seen from other nodes at once', async () => {
    const dir = name('d');
    fs.mkdirSync(cluster.path(1, dir));
    fs.writeFileSync(cluster.path(1, dir, 'f'), 'x');
    fs.writeFileSync(cluster.path(1, dir, 'g'), 'y');
    // node 2 and 3 learn the current state
    for (const id of [2, 3]) {
      expect(fs.readdirSync(cluster.path(id, dir)).sort()).toEqual(['f', 'g']);
      fs.statSync(cluster.path(id, dir, 'f'));
      fs.statSync(cluster.path(id, dir, 'g'));
    }
    fs.chmodSync(cluster.path(1, dir, 'f'), 0o600);
    fs.renameSync(cluster.path(3, dir, 'g'), cluster.path(3, dir, 'h'));
    fs.writeFileSync(cluster.path(2, dir, 'new'), 'z');
    expect((await command('touch', ['-m', '-d', '2010-01-01 00:00:00.5', cluster.path(1, dir, 'f')])).code).toBe(0);
    for (const id of [1, 2, 3]) {
      expect(fs.readdirSync(cluster.path(id, dir)).sort()).toEqual(['f', 'h', 'new']);
      const st = fs.statSync(cluster.path(id, dir, 'f'), { bigint: true });
      expect(st.mode & 0o777n).toBe(0o600n);
      expect(st.mtimeNs).toBe(1262304000500000000n);
      expectErrno(() => fs.statSync(cluster.path(id, dir, 'g')), 'ENOENT');
    }
    fs.unlinkSync(cluster.path(2, dir, 'h'));
    for (const id of [1, 3]) expectErrno(() => fs.statSync(cluster.path(id, dir, 'h')), 'ENOENT');
  });

  it('drops the entry that a rename moved in the renaming node, when another node moves it on', () => {
    // the kernel of the node that renames keeps the moved entry, with the
    // timeout of the old one, in a directory it never looked up anything in
    const [from, to] = [name('d'), name('d')];
    fs.mkdirSync(cluster.path(3, to));
    fs.mkdirSync(cluster.path(1, from));
    fs.mkdirSync(cluster.path(1, from, 'sub'));
    fs.writeFileSync(cluster.path(1, 'plain-' + to), 'x');
    fs.renameSync(cluster.path(1, from, 'sub'), cluster.path(1, to, 'moved'));
    fs.renameSync(cluster.path(2, to, 'moved'), cluster.path(2, to, 'away'));
    expectErrno(() => fs.statSync(cluster.path(1, to, 'moved')), 'ENOENT');
    // a directory onto a file: ENOTDIR if node 1 still believed in the entry
    expectErrno(() => fs.renameSync(cluster.path(1, to, 'moved'), cluster.path(1, 'plain-' + to)), 'ENOENT');
    expect(fs.statSync(cluster.path(1, to, 'away')).isDirectory()).toBe(true);
  });

  it('shows a new name on other nodes at once (no negative caching)', () => {
    const file = name();
    expectErrno(() => fs.statSync(cluster.path(2, file)), 'ENOENT');
    fs.writeFileSync(cluster.path(1, file), 'now');
    expect(fs.readFileSync(cluster.path(2, file), 'utf8')).toBe('now');
  });
});

describe('statahead', () => {
  it('answers the stats, opens and `ls -l` of a directory it listed without the root, names absent included', async () => {
    const dir = name('d');
    const files = 200;
    const content = (i: number) => Buffer.alloc(i, i);
    fs.mkdirSync(cluster.path(1, dir));
    for (let i = 0; i < files; i++) fs.writeFileSync(cluster.path(1, dir, `f${i}`), content(i));
    fs.mkdirSync(cluster.path(1, dir, 'sub'));
    expect((await command('setfattr', ['-n', 'user.tag', '-v', 'seven', cluster.path(1, dir, 'f7')])).code).toBe(0);
    // node 3 never saw the directory: its first lookups miss, and it lists the
    // directory with the attributes of every entry
    for (let i = 0; i < 3; i++) expect(fs.statSync(cluster.path(3, dir, `f${i}`)).size).toBe(i);
    const root = cluster.pid(1)!;
    // the rest needs no call: with the root stopped, a call would wait seconds and fail
    process.kill(root, 'SIGSTOP');
    const started = Date.now();
    try {
      for (let i = 3; i < files; i++) expect(fs.statSync(cluster.path(3, dir, `f${i}`)).size).toBe(i);
      // small files' content came with the listing: they open and read without a call
      for (let i = 3; i < files; i++) expect(fs.readFileSync(cluster.path(3, dir, `f${i}`)).equals(content(i))).toBe(true);
      expectErrno(() => fs.statSync(cluster.path(3, dir, 'absent')), 'ENOENT');
      // the listing itself, with each entry's type
      const listed = fs.readdirSync(cluster.path(3, dir), { withFileTypes: true });
      expect(listed.map((entry) => entry.name).sort()).toEqual([...Array.from({ length: files }, (_, i) => `f${i}`), 'sub'].sort());
      expect(listed.filter((entry) => entry.isDirectory()).map((entry) => entry.name)).toEqual(['sub']);
      // ls -l asks every name for its ACL and security label: the listing said which have none
      const plain = Array.from({ length: 30 }, (_, i) => cluster.path(3, dir, `f${i + 10}`));
      expect(await command('getfattr', ['-d', '-m', '-', ...plain])).toMatchObject({ code: 0, stdout: '' });
    } finally {
      process.kill(root, 'SIGCONT');
    }
    expect(Date.now() - started).toBeLessThan(2000);
    expect((await command('getfattr', ['--only-values', '-n', 'user.tag', cluster.path(3, dir, 'f7')])).stdout).toBe('seven');
    expect((await command('ls', ['-l', cluster.path(3, dir)])).stdout.trim().split('\n')).toHaveLength(files + 2);
  });

  it('sees at once what another node creates, removes, changes and rewrites in a directory it keeps listing', async () => {
    const dir = name('d');
    fs.mkdirSync(cluster.path(2, dir));
    for (let i = 0; i < 50; i++) fs.writeFileSync(cluster.path(2, dir, `old${i}`), 'x');
    // lookups of absent names on node 3 miss whenever the directory is not
    // known, and have it listed again and again
    const script = `const fs = require('fs'); for (let i = 0; ; i++) { try { fs.statSync(${JSON.stringify(cluster.path(3, dir))} + '/absent' + (i % 100)); } catch {} }`;
    const reader = spawn(process.execPath, ['-e', script], { stdio: 'ignore' });
    try {
      const endMs = Date.now() + 6000;
      let rounds = 0;
      while (Date.now() < endMs) {
        const file = `new${rounds++}`;
        fs.writeFileSync(cluster.path(2, dir, file), file);
        expect(fs.readdirSync(cluster.path(3, dir))).toContain(file);
        expect(fs.readFileSync(cluster.path(3, dir, file), 'utf8')).toBe(file);
        fs.unlinkSync(cluster.path(2, dir, file));
        expectErrno(() => fs.statSync(cluster.path(3, dir, file)), 'ENOENT');
        expect(fs.readdirSync(cluster.path(3, dir))).not.toContain(file);
        const old = `old${rounds % 50}`;
        fs.chmodSync(cluster.path(2, dir, old), 0o600 + (rounds % 8));
        expect(fs.statSync(cluster.path(3, dir, old)).mode & 0o777).toBe(0o600 + (rounds % 8));
        fs.writeFileSync(cluster.path(2, dir, old), `${old} in round ${rounds}`);
        expect(fs.readFileSync(cluster.path(3, dir, old), 'utf8')).toBe(`${old} in round ${rounds}`);
        expect((await command('setfattr', ['-n', 'user.round', '-v', String(rounds), cluster.path(2, dir, old)])).code).toBe(0);
        expect((await command('getfattr', ['--only-values', '-n', 'user.round', cluster.path(3, dir, old)])).stdout).toBe(String(rounds));
      }
      expect(rounds).toBeGreaterThan(10);
    } finally {
      reader.kill('SIGKILL');
      await new Promise((resolve) => reader.once('exit', resolve));
    }
  });
});

describe('across a restart of the root', () => {
  it('has a change acknowledged only once what the earlier instance let other nodes cache has expired', async () => {
    const dir = name('d');
    fs.mkdirSync(cluster.path(2, dir));
    fs.writeFileSync(cluster.path(2, dir, 'old'), 'x');
    // node 3's kernel holds the entry, granted by the instance about to die
    expect(fs.statSync(cluster.path(3, dir, 'old')).size).toBe(1);
    await cluster.kill9(1);
    await cluster.mount(1);
    // the new instance never saw that grant: it must not acknowledge before it expired
    fs.renameSync(cluster.path(2, dir, 'old'), cluster.path(2, dir, 'new'));
    expectErrno(() => fs.statSync(cluster.path(3, dir, 'old')), 'ENOENT');
    expect(fs.readFileSync(cluster.path(3, dir, 'new'), 'utf8')).toBe('x');
  }, 60_000);
});
