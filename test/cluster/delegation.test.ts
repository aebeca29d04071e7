// Creates a node makes by itself under a delegation of the directory (see
// Delegation in proto/kdfs.proto): other nodes must see them at once, O_EXCL
// must hold across nodes, a directory with such creates is not empty, and what
// a close acknowledged survives the death of the node that made it.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster } from '../harness/cluster.js';
import { expectErrno } from '../harness/posix.js';

let cluster: Cluster;
let n = 0;
const name = (prefix = 'g') => `${prefix}${++n}`;

beforeAll(async () => {
  cluster = await Cluster.start({ nodes: 3 });
});
afterAll(async () => {
  await cluster?.stop();
});

const RACER = path.resolve(__dirname, '..', 'tools', 'racer.js');

interface RaceResult { made: string[]; removed: string[]; won: string[]; errors: string[] }

/** Runs test/tools/racer.js in dir, within 60 s. */
function race(dir: string, tag: string, rounds: number, logDir: string): Promise<RaceResult> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [RACER, dir, tag, String(rounds), logDir], { timeout: 60_000, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`racer ${tag}: ${err.message} ${stderr}`));
      else resolve(JSON.parse(stdout) as RaceResult);
    });
  });
}

/** A directory made on node 2, with a first file created there (the create that
 *  asks for the delegation): node 2's next creates there are its own. */
function delegatedDir(): string {
  const dir = name('d');
  fs.mkdirSync(cluster.path(2, dir));
  fs.writeFileSync(cluster.path(2, dir, 'first'), 'first');
  return dir;
}

describe('creates under a delegation', () => {
  it('files node 2 created and holds open, unwritten, are seen at once by node 3 (stat, readdir, open)', () => {
    for (let round = 0; round < 5; round++) {
      const dir = delegatedDir();
      const names = Array.from({ length: 20 }, (_, i) => `f${i}`);
      const fds = names.map((file) => fs.openSync(cluster.path(2, dir, file), 'w', 0o640));
      try {
        const inos = names.map((file) => fs.fstatSync(fds[names.indexOf(file)]).ino);
        expect(new Set(inos).size).toBe(names.length);
        // node 3 touches the directory first through a listing, then by name
        expect(fs.readdirSync(cluster.path(3, dir)).sort()).toEqual(['first', ...names].sort());
        names.forEach((file, i) => {
          const st = fs.statSync(cluster.path(3, dir, file));
          expect(st.ino).toBe(inos[i]);
          expect(st.size).toBe(0);
          expect(st.mode & 0o777).toBe(0o640 & ~process.umask());
        });
        // data written after the recall reaches node 3 at close
        fs.writeSync(fds[0], `round ${round}`);
      } finally {
        for (const fd of fds) fs.closeSync(fd);
      }
      expect(fs.readFileSync(cluster.path(3, dir, 'f0'), 'utf8')).toBe(`round ${round}`);
    }
  });

  it('times, owner and mode node 2 set on files it made and holds open go with their creates: seen by node 3 before and after the close', () => {
    const dir = delegatedDir();
    const mtimeMs = Date.parse('2001-02-03T04:05:06.789Z');
    const atimeMs = Date.parse('2002-03-04T05:06:07.5Z');
    const made = ['seenOpen', 'seenClosed'].map((file) => {
      const fd = fs.openSync(cluster.path(2, dir, file), 'w', 0o600);
      fs.writeSync(fd, `content of ${file}`);
      // as tar x does, in its order
      fs.futimesSync(fd, atimeMs / 1000, mtimeMs / 1000);
      fs.fchownSync(fd, 65534, 65534);
      fs.fchmodSync(fd, 0o4751);
      // the kernel is answered with the changes at once
      const st = fs.fstatSync(fd);
      expect([st.uid, st.gid, st.mode & 0o7777, st.mtimeMs]).toEqual([65534, 65534, 0o4751, mtimeMs]);
      return { file, fd };
    });
    const expectSet = (file: string, size: number) => {
      const st = fs.statSync(cluster.path(3, dir, file));
      expect([st.uid, st.gid, (st.mode & 0o7777).toString(8), st.mtimeMs, st.atimeMs, st.size], file).toEqual([65534, 65534, '4751', mtimeMs, atimeMs, size]);
    };
    // node 3 looks before node 2 closes: the creates come with the changes (not the content: not closed)
    expectSet('seenOpen', 0);
    for (const { fd } of made) fs.closeSync(fd);
    expectSet('seenOpen', 'content of seenOpen'.length);
    expectSet('seenClosed', 'content of seenClosed'.length);
    expect(fs.readFileSync(cluster.path(3, dir, 'seenClosed'), 'utf8')).toBe('content of seenClosed');
  });

  it('files node 2 made by itself and wrote past their inodes before any call: node 3 sees them empty before the close, whole after, and writes into them', () => {
    const dir = delegatedDir();
    const head = Buffer.alloc(5000, 'h');
    const tail = Buffer.alloc(20_000, 't');
    const TAIL_AT = 9000;
    const files = ['spilledSeenOpen', 'spilledClosed'].map((file) => {
      // write-only: each write reaches node 2's daemon at once, in this order
      const fd = fs.openSync(cluster.path(2, dir, file), fs.constants.O_WRONLY | fs.constants.O_CREAT, 0o644);
      fs.writeSync(fd, head, 0, head.length, 0);
      fs.writeSync(fd, tail, 0, tail.length, TAIL_AT);
      return { file, fd };
    });
    // node 3 looks first: the create comes with it, its data not committed yet;
    // node 3's bytes between node 2's go where node 2's are (not into an inode node 2's commit would drop)
    expect(fs.statSync(cluster.path(3, dir, 'spilledSeenOpen')).size).toBe(0);
    const three = fs.openSync(cluster.path(3, dir, 'spilledSeenOpen'), fs.constants.O_WRONLY);
    fs.writeSync(three, Buffer.alloc(100, 'x'), 0, 100, 6000);
    fs.closeSync(three);
    fs.writeSync(files[0].fd, Buffer.from('end'), 0, 3, TAIL_AT + tail.length);
    for (const { fd } of files) fs.closeSync(fd);
    const whole = Buffer.alloc(TAIL_AT + tail.length);
    head.copy(whole, 0);
    tail.copy(whole, TAIL_AT);
    const seenOpen = Buffer.concat([whole, Buffer.from('end')]);
    seenOpen.fill('x', 6000, 6100);
    for (const id of [1, 3]) {
      expect(fs.readFileSync(cluster.path(id, dir, 'spilledSeenOpen')).equals(seenOpen), `node ${id}`).toBe(true);
      expect(fs.readFileSync(cluster.path(id, dir, 'spilledClosed')).equals(whole), `node ${id}`).toBe(true);
    }
  });

  it('a name node 2 created by itself is EEXIST for O_EXCL on node 3, and the reverse', () => {
    for (let round = 0; round < 5; round++) {
      const dir = delegatedDir();
      const mine = fs.openSync(cluster.path(2, dir, 'lock'), 'wx');
      try {
        expectErrno(() => fs.openSync(cluster.path(3, dir, 'lock'), 'wx'), 'EEXIST');
      } finally {
        fs.closeSync(mine);
      }
      // node 3 now looks at the directory: node 2 asks the service again
      fs.closeSync(fs.openSync(cluster.path(3, dir, 'other'), 'wx'));
      expectErrno(() => fs.openSync(cluster.path(2, dir, 'other'), 'wx'), 'EEXIST');
      fs.closeSync(fs.openSync(cluster.path(2, dir, 'third'), 'wx'));
      expect(fs.readdirSync(cluster.path(1, dir)).sort()).toEqual(['first', 'lock', 'other', 'third']);
    }
  });

  it('a directory with a file node 2 created and holds open is not empty for rmdir, on node 3 or on node 2 itself', () => {
    const dir = delegatedDir();
    fs.unlinkSync(cluster.path(2, dir, 'first'));
    const fd = fs.openSync(cluster.path(2, dir, 'open'), 'w');
    try {
      expectErrno(() => fs.rmdirSync(cluster.path(3, dir)), 'ENOTEMPTY');
    } finally {
      fs.closeSync(fd);
    }
    fs.unlinkSync(cluster.path(2, dir, 'open'));
    fs.rmdirSync(cluster.path(3, dir));
    expectErrno(() => fs.statSync(cluster.path(2, dir)), 'ENOENT');
    // ...nor for rmdir on node 2 itself
    const own = delegatedDir();
    fs.unlinkSync(cluster.path(2, own, 'first'));
    const fd2 = fs.openSync(cluster.path(2, own, 'open'), 'w');
    try {
      expectErrno(() => fs.rmdirSync(cluster.path(2, own)), 'ENOTEMPTY');
    } finally {
      fs.closeSync(fd2);
    }
    expect(fs.readdirSync(cluster.path(3, own))).toEqual(['open']);
  });

  it('unlink and rename of files node 2 created by itself, before and after close', () => {
    const dir = delegatedDir();
    const fd = fs.openSync(cluster.path(2, dir, 'a'), 'w');
    fs.renameSync(cluster.path(2, dir, 'a'), cluster.path(2, dir, 'b'));
    fs.writeSync(fd, 'renamed while open');
    fs.closeSync(fd);
    expect(fs.readFileSync(cluster.path(3, dir, 'b'), 'utf8')).toBe('renamed while open');
    fs.writeFileSync(cluster.path(2, dir, 'c'), 'c');
    fs.unlinkSync(cluster.path(2, dir, 'c'));
    expectErrno(() => fs.statSync(cluster.path(3, dir, 'c')), 'ENOENT');
    expect(fs.readdirSync(cluster.path(3, dir)).sort()).toEqual(['b', 'first']);
  });

  it('a stopped holder holds nobody up past its lease; its creates refused after are not reported as stored', () => {
    const dir = delegatedDir();
    const fd = fs.openSync(cluster.path(2, dir, 'held'), 'w');
    fs.writeSync(fd, 'from node 2');
    const pid = cluster.pid(2)!;
    process.kill(pid, 'SIGSTOP');
    let closed: unknown = null;
    try {
      const started = Date.now();
      // node 2 cannot send its create: the service waits for its lease to end, no longer
      expect(fs.readdirSync(cluster.path(3, dir))).toEqual(['first']);
      const waitedMs = Date.now() - started;
      console.log(`a listing on node 3 waited ${waitedMs} ms for stopped node 2`);
      expect(waitedMs).toBeLessThan(8000);
      fs.writeFileSync(cluster.path(3, dir, 'held'), 'from node 3', { flag: 'wx' });
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    try {
      fs.closeSync(fd);
    } catch (err) {
      closed = (err as NodeJS.ErrnoException).code;
    }
    // the close of node 2's file cannot be acknowledged: its name was taken meanwhile
    expect(closed).toBe('EIO');
    for (const id of [1, 3]) expect(fs.readFileSync(cluster.path(id, dir, 'held'), 'utf8')).toBe('from node 3');
  }, 60_000);

  it('node 2 and node 3 racing in directories node 2 made: no create lost or doubled, O_EXCL has one winner', async () => {
    for (let round = 0; round < 6; round++) {
      const dir = delegatedDir();
      const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kdfs-racer-'));
      let a: RaceResult;
      let b: RaceResult;
      try {
        [a, b] = await Promise.all([race(cluster.path(2, dir), 'a', 40, logDir), race(cluster.path(3, dir), 'b', 40, logDir)]);
      } finally {
        fs.rmSync(logDir, { recursive: true, force: true });
      }
      expect(a.errors).toEqual([]);
      expect(b.errors).toEqual([]);
      const expected = new Set(['first']);
      for (const side of [a, b]) {
        for (const file of side.made) expected.add(file);
        for (const file of side.removed) expected.delete(file);
      }
      for (let i = 0; i < 40; i++) {
        const winners = [a.won.includes(`s${i}`) ? 'a' : null, b.won.includes(`s${i}`) ? 'b' : null].filter(Boolean);
        expect(winners.length, `s${i}`).toBe(1);
        expect(fs.readFileSync(cluster.path(1, dir, `s${i}`), 'utf8')).toBe(winners[0]);
        expected.add(`s${i}`);
      }
      expect(fs.readdirSync(cluster.path(1, dir)).sort()).toEqual([...expected].sort());
      for (const side of [a, b]) {
        for (const file of side.made) {
          if (side.removed.includes(file)) continue;
          expect(fs.readFileSync(cluster.path(1, dir, file), 'utf8')).toBe(file.startsWith('h') ? '' : `${file[0]} ${file.slice(1)}`);
        }
      }
    }
  }, 120_000);

  it('files node 2 makes by itself and renames or removes at once, from other processes: each file once, under one name, with its content', async () => {
    // Several writers' commits carry creates again (a file's commit does not
    // wait for the call already carrying its create): a rename or unlink of such
    // a file waits for every call carrying its create, or a create applied after
    // the rename would bring the old name back, over the renamed inode. The root
    // serves one node's calls nearly always in the order sent, so this seldom
    // catches a missing wait by itself (test/unit/delegations.test.ts checks the
    // waits); it checks the whole under concurrent renames and removals.
    const dir = delegatedDir();
    const where = cluster.path(2, dir);
    const stopFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'kdfs-renamer-')), 'stop');
    const WRITERS = 3;
    const FILES = 150;
    const writer = (p: number) => `const fs = require('fs'); for (let i = 0; i < ${FILES}; i++) fs.writeFileSync(${JSON.stringify(where)} + '/c${p}_' + i, 'c${p}_' + i);`;
    // renames every c name it lists to r, and removes every r name ending in 7
    const renamer = `const fs = require('fs'); const dir = ${JSON.stringify(where)}; let last = false;
      for (;;) {
        const stop = fs.existsSync(${JSON.stringify(stopFile)});
        for (const name of fs.readdirSync(dir)) {
          try {
            if (name.startsWith('c')) fs.renameSync(dir + '/' + name, dir + '/r' + name.slice(1));
            else if (name.startsWith('r') && name.endsWith('7')) fs.unlinkSync(dir + '/' + name);
          } catch (err) { if (err.code !== 'ENOENT') throw err; }
        }
        if (last) break;
        last = stop;
      }`;
    const children: ReturnType<typeof execFile>[] = [];
    const run = (script: string) => new Promise<void>((resolve, reject) => {
      children.push(execFile(process.execPath, ['-e', script], { timeout: 60_000, killSignal: 'SIGKILL' }, (err, _stdout, stderr) => (err ? reject(new Error(`${err.message} ${stderr}`)) : resolve())));
    });
    const renaming = run(renamer);
    try {
      await Promise.all(Array.from({ length: WRITERS }, (_, p) => run(writer(p))));
      fs.writeFileSync(stopFile, '');
      await renaming;
    } finally {
      // a writer failed: the renamer is stopped, not left renaming in the mount
      for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
      await renaming.catch(() => undefined);
      fs.rmSync(path.dirname(stopFile), { recursive: true, force: true });
    }
    for (const id of [1, 3]) {
      const names = new Set(fs.readdirSync(cluster.path(id, dir)));
      const inos = new Set<number>();
      for (let p = 0; p < WRITERS; p++) {
        for (let i = 0; i < FILES; i++) {
          const file = `${p}_${i}`;
          // the renamer's last pass came after every writer ended: no c name is left
          expect(names.has(`c${file}`), `c${file} on node ${id}`).toBe(false);
          if (i % 10 === 7) {
            expect(names.has(`r${file}`), `r${file} on node ${id}`).toBe(false);
            continue;
          }
          expect(fs.readFileSync(cluster.path(id, dir, `r${file}`), 'utf8')).toBe(`c${file}`);
          const stat = fs.statSync(cluster.path(id, dir, `r${file}`));
          expect(stat.nlink).toBe(1);
          inos.add(stat.ino);
        }
      }
      expect(inos.size).toBe(WRITERS * (FILES - FILES / 10));
      expect(names.size).toBe(WRITERS * (FILES - FILES / 10) + 1);
    }
  }, 120_000);

  it('a file node 2 made by itself, open across kill -9 and restart of the root, is made and kept at its close', async () => {
    const dir = delegatedDir();
    const fd = fs.openSync(cluster.path(2, dir, 'across'), 'w');
    // close releases the descriptor even when it fails: closed once, whatever happens
    let closing = false;
    try {
      fs.writeSync(fd, 'written before the restart');
      await cluster.kill9(1);
      await cluster.mount(1);
      fs.writeSync(fd, ' and after');
      closing = true;
      fs.closeSync(fd);
    } finally {
      if (!closing) fs.closeSync(fd);
    }
    expect(fs.readFileSync(cluster.path(3, dir, 'across'), 'utf8')).toBe('written before the restart and after');
    // node 2 goes on creating there, now asking the new service first
    fs.writeFileSync(cluster.path(2, dir, 'after'), 'after');
    expect(fs.readdirSync(cluster.path(1, dir)).sort()).toEqual(['across', 'after', 'first']);
  }, 90_000);

  it('what node 2 closed survives kill -9 of node 2; its directory stays usable from the others', async () => {
    const dir = delegatedDir();
    const files = Array.from({ length: 50 }, (_, i) => `c${i}`);
    for (const file of files) fs.writeFileSync(cluster.path(2, dir, file), `content of ${file}`);
    // one more, open and unwritten when the node dies: it may or may not exist after
    const fd = fs.openSync(cluster.path(2, dir, 'unclosed'), 'w');
    await cluster.kill9(2);
    try {
      fs.closeSync(fd);
    } catch {
      // the mount is gone with its node
    }
    for (const file of files) expect(fs.readFileSync(cluster.path(3, dir, file), 'utf8')).toBe(`content of ${file}`);
    // the dead node's delegation does not hold the directory up
    fs.writeFileSync(cluster.path(3, dir, 'after'), 'after');
    expect(fs.readdirSync(cluster.path(1, dir))).toEqual(expect.arrayContaining([...files, 'after', 'first']));
    await cluster.mount(2);
    expect(fs.readFileSync(cluster.path(2, dir, 'c7'), 'utf8')).toBe('content of c7');
  }, 60_000);

  it('empty files node 2 closed (no commit at close) are made with its next batch of closes: there after kill -9 of node 2 once the batch went', async () => {
    const dir = delegatedDir();
    const files = Array.from({ length: 50 }, (_, i) => `e${i}`);
    for (const file of files) fs.closeSync(fs.openSync(cluster.path(2, dir, file), 'w'));
    // The README's bound is about 5 ms (the closes' batch); nothing outside node 2
    // tells when it went, so the test waits 100 times that, doing nothing on node 2.
    await new Promise((resolve) => setTimeout(resolve, 500));
    await cluster.kill9(2);
    expect(fs.readdirSync(cluster.path(3, dir))).toEqual(expect.arrayContaining(files));
    await cluster.mount(2);
  }, 60_000);
});
