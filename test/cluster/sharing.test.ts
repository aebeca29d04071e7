// What several nodes sharing files see of each other at once: coherent kernel
// caches (no waiting for a timeout), O_APPEND from several nodes, times kept by
// tar x and cp -p, allocated blocks and device nodes (set-ID bits: setid.test.ts).
// Work goes through nodes 2 and 3 mostly; node 1 is the root node.
import { execFile, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster } from '../harness/cluster.js';
import { NOBODY, asUser, expectErrno } from '../harness/posix.js';

const MiB = 1024 * 1024;

let cluster: Cluster;
let local: string;
let n = 0;
const name = (prefix = 's') => `${prefix}${++n}`;
const q = (value: string) => JSON.stringify(value);

/** Runs a program to completion within timeoutMs (killed past it); never throws. */
function runAsync(file: string, args: string[], timeoutMs: number): Promise<{ code: number | string | null; stdout: string; stderr: string; ms: number }> {
  const started = Date.now();
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: number | string; killed?: boolean }) | null;
      resolve({ code: e ? (e.killed ? 'timeout' : e.code ?? 1) : 0, stdout, stderr, ms: Date.now() - started });
    });
  });
}

function run(file: string, args: string[], timeoutMs = 30_000): { status: number | null; stdout: string; stderr: string } {
  const result = spawnSync(file, args, { encoding: 'utf8', timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 << 20 });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** Node 2 renames count files of dir (made here) one after the other, in the
 *  background: its kernel then often holds dir's lock while another node's
 *  change there is called back. */
function renamesOnNode2(dir: string, count: number): { stop(): Promise<void> } {
  for (let i = 0; i < count; i++) fs.writeFileSync(cluster.path(1, dir, `b${i}`), '');
  const renamer = execFile(process.execPath, ['-e', `
    const fs = require('fs');
    const dir = ${q(cluster.path(2, dir))};
    for (let i = 0; i < ${count}; i++) fs.renameSync(dir + '/b' + i, dir + '/B' + i);
  `], { timeout: 60_000, killSignal: 'SIGKILL' });
  const stopped = new Promise((resolve) => renamer.on('exit', resolve));
  return {
    async stop() {
      renamer.kill('SIGKILL');
      await stopped;
    },
  };
}

beforeAll(async () => {
  cluster = await Cluster.start({ nodes: 3 });
  // a local directory of the same machine (ext4): the reference for tar
  local = fs.mkdtempSync(path.join(os.tmpdir(), 'kdfs-sharing-local-'));
  fs.chmodSync(local, 0o755);
});
afterAll(async () => {
  await cluster?.stop();
  if (local) fs.rmSync(local, { recursive: true, force: true });
});

describe('coherent caches: a change on one node is seen at once on the others', () => {
  it('a rename on node 1: the old name is gone at once on node 2', () => {
    const from = name('d');
    const to = name('d');
    fs.mkdirSync(cluster.path(1, from));
    fs.mkdirSync(cluster.path(1, to));
    for (let round = 0; round < 10; round++) {
      const a = `a${round}`;
      fs.writeFileSync(cluster.path(1, from, a), `r${round}`);
      // node 2 caches the entry, the attributes and the listing
      const ino = fs.statSync(cluster.path(2, from, a)).ino;
      expect(fs.readdirSync(cluster.path(2, from))).toContain(a);
      if (round % 2 === 0) {
        fs.renameSync(cluster.path(1, from, a), cluster.path(1, from, `b${round}`));
        expectErrno(() => fs.statSync(cluster.path(2, from, a)), 'ENOENT');
        expect(fs.statSync(cluster.path(2, from, `b${round}`)).ino).toBe(ino);
      } else {
        // across directories
        fs.renameSync(cluster.path(1, from, a), cluster.path(1, to, a));
        expectErrno(() => fs.statSync(cluster.path(2, from, a)), 'ENOENT');
        expect(fs.statSync(cluster.path(2, to, a)).ino).toBe(ino);
      }
      expect(fs.readdirSync(cluster.path(2, from))).not.toContain(a);
    }
  });

  it('chmod 0600 on node 1: user nobody is refused at once on node 2, and let in at once after chmod 0644', () => {
    for (let round = 0; round < 5; round++) {
      const file = name();
      fs.writeFileSync(cluster.path(1, file), 'secret');
      fs.chmodSync(cluster.path(1, file), 0o644);
      const onNode2 = cluster.path(2, file);
      // node 2's kernel caches the attributes that let nobody in
      expect(asUser(NOBODY, `return fs.readFileSync(${q(onNode2)}, 'utf8')`)).toBe('secret');
      expect(fs.statSync(onNode2).mode & 0o777).toBe(0o644);
      fs.chmodSync(cluster.path(1, file), 0o600);
      expect(asUser(NOBODY, `fs.closeSync(fs.openSync(${q(onNode2)}, 'r'))`)).toBe('EACCES');
      fs.chmodSync(cluster.path(1, file), 0o644);
      expect(asUser(NOBODY, `return fs.readFileSync(${q(onNode2)}, 'utf8')`)).toBe('secret');
    }
  });

  it('while node 2 creates and removes files elsewhere: chmod, utimes and truncate on node 3 are seen at once on node 2', async () => {
    const busy = name('d');
    fs.mkdirSync(cluster.path(2, busy));
    // node 2's own requests wait for callbacks meanwhile: the service waits for
    // node 2 to take a callback, not for its kernel to be done with all of it
    const load = execFile(process.execPath, ['-e', `
      const fs = require('fs');
      const dir = ${q(cluster.path(2, busy))};
      for (let i = 0; ; i++) { fs.writeFileSync(dir + '/f' + (i % 50), String(i)); fs.rmSync(dir + '/f' + ((i + 25) % 50), { force: true }); }
    `], { timeout: 120_000, killSignal: 'SIGKILL' });
    const loadEnded = new Promise((resolve) => load.on('exit', resolve));
    // user nobody opens on node 2 as soon as told to: 'R' read, 'D' denied
    const opener = spawn('python3', ['-u', '-c', `
import sys
for line in sys.stdin:
    try:
        open(line.strip()).read(); sys.stdout.write('R\\n')
    except PermissionError:
        sys.stdout.write('D\\n')
`], { uid: NOBODY.uid, gid: NOBODY.gid, cwd: '/', stdio: ['pipe', 'pipe', 'inherit'] });
    const answers = readline.createInterface({ input: opener.stdout! })[Symbol.asyncIterator]();
    const openOnNode2 = async (file: string): Promise<string> => {
      opener.stdin!.write(file + '\n');
      return (await answers.next()).value as string;
    };
    try {
      const file = name();
      fs.writeFileSync(cluster.path(3, file), 'x'.repeat(1000));
      const wrong: string[] = [];
      for (let round = 0; round < 150; round++) {
        fs.chmodSync(cluster.path(3, file), 0o644);
        if ((await openOnNode2(cluster.path(2, file))) !== 'R') wrong.push(`${round}: refused after chmod 0644`);
        fs.chmodSync(cluster.path(3, file), 0o600);
        if ((await openOnNode2(cluster.path(2, file))) !== 'D') wrong.push(`${round}: let in after chmod 0600`);
        const seconds = 1_000_000 + round;
        fs.utimesSync(cluster.path(3, file), seconds, seconds);
        if (fs.statSync(cluster.path(2, file)).mtimeMs !== seconds * 1000) wrong.push(`${round}: old mtime`);
        fs.truncateSync(cluster.path(3, file), round);
        if (fs.statSync(cluster.path(2, file)).size !== round) wrong.push(`${round}: old size`);
      }
      expect(wrong).toEqual([]);
    } finally {
      opener.kill('SIGKILL');
      load.kill('SIGKILL');
      await loadEnded;
    }
  }, 120_000);

  it('chown on node 3: the new owner may write at once on node 2', () => {
    const file = name();
    fs.writeFileSync(cluster.path(3, file), 'x');
    fs.chmodSync(cluster.path(3, file), 0o644);
    const onNode2 = cluster.path(2, file);
    expect(asUser(NOBODY, `fs.writeFileSync(${q(onNode2)}, 'y')`)).toBe('EACCES');
    fs.chownSync(cluster.path(3, file), NOBODY.uid, NOBODY.gid);
    expect(asUser(NOBODY, `fs.writeFileSync(${q(onNode2)}, 'y')`)).toBe('ok');
    expect(fs.readFileSync(cluster.path(3, file), 'utf8')).toBe('y');
  });

  it('an unlink on node 3 is seen at once on node 2', () => {
    const dir = name('d');
    fs.mkdirSync(cluster.path(3, dir));
    for (let round = 0; round < 10; round++) {
      const file = `u${round}`;
      fs.writeFileSync(cluster.path(3, dir, file), 'x');
      expect(fs.readFileSync(cluster.path(2, dir, file), 'utf8')).toBe('x');
      expect(fs.readdirSync(cluster.path(2, dir))).toEqual([file]);
      fs.unlinkSync(cluster.path(3, dir, file));
      expectErrno(() => fs.statSync(cluster.path(2, dir, file)), 'ENOENT');
      expectErrno(() => fs.readFileSync(cluster.path(2, dir, file)), 'ENOENT');
      expect(fs.readdirSync(cluster.path(2, dir))).toEqual([]);
    }
    // and the empty directory itself, removed on node 3
    fs.rmdirSync(cluster.path(3, dir));
    expectErrno(() => fs.statSync(cluster.path(2, dir)), 'ENOENT');
  });

  it('renames on node 3 while node 2 creates files in the directory all along: the old names are gone at once on node 2, and writing one there makes a new file', async () => {
    // Found by an exploratory test: node 2's kernel, holding the directory's
    // lock for its own creates, dropped the old name only after the rename was
    // answered; echo > old name on node 2 then truncated the renamed file.
    const dir = name('d');
    const rounds = 150;
    fs.mkdirSync(cluster.path(2, dir));
    for (let i = 0; i < rounds; i++) fs.writeFileSync(cluster.path(2, dir, `f${i}`), `orig${i}`);
    // creates from another process of node 2, in the same directory, until stopped
    const creator = execFile(process.execPath, ['-e', `
      const fs = require('fs');
      for (let i = 0; ; i++) fs.writeFileSync(${q(cluster.path(2, dir))} + '/w' + i, '');
    `], { timeout: 60_000, killSignal: 'SIGKILL' });
    const stopped = new Promise((resolve) => creator.on('exit', resolve));
    try {
      const stale: string[] = [];
      for (let i = 0; i < rounds; i++) {
        // node 2's kernel has the name
        fs.statSync(cluster.path(2, dir, `f${i}`));
        fs.renameSync(cluster.path(3, dir, `f${i}`), cluster.path(3, dir, `g${i}`));
        if (fs.existsSync(cluster.path(2, dir, `f${i}`))) stale.push(`f${i}`);
        fs.writeFileSync(cluster.path(2, dir, `f${i}`), `rewritten${i}`);
      }
      expect(stale).toEqual([]);
    } finally {
      creator.kill('SIGKILL');
      await stopped;
    }
    for (const id of [1, 2, 3]) {
      for (let i = 0; i < rounds; i++) {
        expect(fs.readFileSync(cluster.path(id, dir, `g${i}`), 'utf8'), `node ${id}`).toBe(`orig${i}`);
        expect(fs.readFileSync(cluster.path(id, dir, `f${i}`), 'utf8'), `node ${id}`).toBe(`rewritten${i}`);
      }
    }
  }, 90_000);

  it('renames on node 3 while node 2 renames in the directory too: an old name on node 2 (a file\'s, one node 2 gave itself, a directory\'s) opened with O_TRUNC or truncate(2)d finds nothing, the renamed file keeps its content', async () => {
    // Found by exploratory tests: of two removals at once, the first answered
    // does not wait for the other node's kernel (it holds the directory's lock
    // for its own); O_TRUNC of the old name there emptied the renamed file.
    const dir = name('d');
    const rounds = 200;
    fs.mkdirSync(cluster.path(1, dir));
    // round i: 0 a file's name, opened O_TRUNC; 1 the same, truncate(2); 2 a name
    // node 2 gave the file by its own rename; 3 a directory's name, a file below opened O_TRUNC
    for (let i = 0; i < rounds; i++) {
      if (i % 4 === 3) {
        fs.mkdirSync(cluster.path(1, dir, `a${i}`));
        fs.writeFileSync(cluster.path(1, dir, `a${i}`, 'f'), `data${i}`);
      } else {
        fs.writeFileSync(cluster.path(1, dir, i % 4 === 2 ? `x${i}` : `a${i}`), `data${i}`);
      }
    }
    const renamer = renamesOnNode2(dir, 4 * rounds);
    try {
      // os.truncate is truncate(2): a path, no open
      const cutter = await runAsync('python3', ['-c', `
import os, sys
on2, on3 = sys.argv[1], sys.argv[2]
for i in range(${rounds}):
    if i % 4 == 2: os.rename(f'{on2}/x{i}', f'{on2}/a{i}')
    old = f'{on2}/a{i}/f' if i % 4 == 3 else f'{on2}/a{i}'
    os.stat(old)  # node 2's kernel has the name
    os.rename(f'{on3}/a{i}', f'{on3}/A{i}')
    try:
        if i % 4 == 1: os.truncate(old, 0)
        else: os.close(os.open(old, os.O_WRONLY | os.O_TRUNC))
        print(f'{old} reached')
    except FileNotFoundError:
        pass
`, cluster.path(2, dir), cluster.path(3, dir)], 60_000);
      expect(cutter.stderr).toBe('');
      expect(cutter.stdout).toBe('');
      expect(cutter.code).toBe(0);
    } finally {
      await renamer.stop();
    }
    for (const id of [1, 2, 3]) {
      for (let i = 0; i < rounds; i++) {
        const renamed = i % 4 === 3 ? cluster.path(id, dir, `A${i}`, 'f') : cluster.path(id, dir, `A${i}`);
        expect(fs.readFileSync(renamed, 'utf8'), `node ${id}: ${renamed}`).toBe(`data${i}`);
      }
    }
  }, 90_000);

  it('renames on node 3 while node 2 renames in the directory too: every other call through an old name on node 2 finds nothing, and through the new name acts at once, without ESTALE', async () => {
    // Found by exploratory tests: through a renamed directory's old name,
    // unlink, rename, create, mkdir and rm -rf acted in the renamed directory;
    // through a file's old name, chmod, utimes, chown and link changed the
    // renamed file. And, once those were turned away: through the new name,
    // an open with O_TRUNC (its truncation comes without a file handle), a
    // create or a mkdir answered ESTALE; and calls that the kernel does not
    // try again, by a descriptor of a directory (fchmod: rsync -a) or bind(2)
    // of a socket, got it through any name.
    const dir = name('d');
    const ops = ['unlink', 'rename', 'create', 'mkdir', 'rmrf', 'fchmod', 'bind', 'chmod', 'utime', 'chown', 'link', 'otrunc', 'setxattr', 'truncopen'];
    const onDir = new Set(['unlink', 'rename', 'create', 'mkdir', 'rmrf', 'fchmod', 'bind']);
    const rounds = 20 * ops.length;
    const opOf = (i: number) => ops[i % ops.length]!;
    // rounds of even tens go through the old name, the others through the new one
    const throughOld = (i: number) => Math.floor(i / ops.length) % 2 === 0;
    fs.mkdirSync(cluster.path(1, dir));
    for (let i = 0; i < rounds; i++) {
      if (onDir.has(opOf(i))) {
        fs.mkdirSync(cluster.path(1, dir, `a${i}`));
        fs.writeFileSync(cluster.path(1, dir, `a${i}`, 'f'), `data${i}`);
      } else {
        fs.writeFileSync(cluster.path(1, dir, `a${i}`), `data${i}`);
        fs.chmodSync(cluster.path(1, dir, `a${i}`), 0o644);
        fs.utimesSync(cluster.path(1, dir, `a${i}`), 1000, 1000);
      }
    }
    const renamer = renamesOnNode2(dir, 4 * rounds);
    try {
      const caller = await runAsync('python3', ['-c', `
import os, shutil, socket, subprocess, sys, threading
on2, on3, ops = sys.argv[1], sys.argv[2], sys.argv[3].split(',')
for i in range(${rounds}):
    op, old = ops[i % len(ops)], (i // len(ops)) % 2 == 0
    d = f'{on2}/a{i}' if old else f'{on2}/A{i}'
    os.stat(f'{on2}/a{i}')  # node 2's kernel has the name
    if op == 'fchmod': fd = os.open(f'{on2}/a{i}', os.O_RDONLY | os.O_DIRECTORY)
    if op == 'truncopen':  # open here, by another thread: truncate(2) is checked all the same
        opened = []
        opener = threading.Thread(target=lambda: opened.append(os.open(f'{on2}/a{i}', os.O_RDONLY)))
        opener.start()
        opener.join()
        fd = opened[0]
    os.rename(f'{on3}/a{i}', f'{on3}/A{i}')
    if op == 'bind' and old: continue  # bind(2) through an old name is not checked
    try:
        if op == 'unlink': os.unlink(f'{d}/f')
        elif op == 'rename': os.rename(f'{d}/f', f'{on2}/M{i}')
        elif op == 'create': os.close(os.open(f'{d}/new', os.O_CREAT | os.O_WRONLY | os.O_EXCL))
        elif op == 'mkdir': os.mkdir(f'{d}/sub')
        elif op == 'rmrf':
            r = subprocess.run(['rm', '-rf', d], capture_output=True, text=True)
            if r.returncode != 0 or r.stderr: print(f'{op} {d}: {r.stderr}')
            if old: continue  # rm -rf of an absent name succeeds
        elif op == 'fchmod':
            os.chmod(fd, 0o700)
            os.close(fd)
            continue  # through the descriptor, whatever the name
        elif op == 'bind': socket.socket(socket.AF_UNIX).bind(f'{d}/sock')
        elif op == 'setxattr': os.setxattr(d, 'user.k', b'v')
        elif op == 'truncopen':
            try: os.truncate(d, 0)
            finally: os.close(fd)
        elif op == 'chmod': os.chmod(d, 0o600)
        elif op == 'utime': os.utime(d, (2000, 2000))
        elif op == 'chown': os.chown(d, 1234, 1234)
        elif op == 'link': os.link(d, f'{on2}/L{i}')
        elif op == 'otrunc': os.close(os.open(d, os.O_WRONLY | os.O_TRUNC))
        if old: print(f'{op} {d}: reached')
    except FileNotFoundError:
        if not old: print(f'{op} {d}: ENOENT')
    except OSError as e:
        print(f'{op} {d}: {e}')
`, cluster.path(2, dir), cluster.path(3, dir), ops.join(',')], 60_000);
      expect(caller.stderr).toBe('');
      expect(caller.stdout).toBe('');
      expect(caller.code).toBe(0);
    } finally {
      await renamer.stop();
    }
    for (const id of [1, 3]) {
      for (let i = 0; i < rounds; i++) {
        const op = opOf(i);
        const old = throughOld(i);
        const at = (...names: string[]) => cluster.path(id, dir, ...names);
        const where = `node ${id}: round ${i}, ${op} through the ${old ? 'old' : 'new'} name`;
        if (op === 'rmrf') {
          expect(fs.existsSync(at(`A${i}`)), where).toBe(old);
          if (old) expect(fs.readdirSync(at(`A${i}`)), where).toEqual(['f']);
          continue;
        }
        if (onDir.has(op)) {
          const expected = old ? ['f'] : { unlink: [], rename: [], create: ['f', 'new'], mkdir: ['f', 'sub'], fchmod: ['f'], bind: ['f', 'sock'] }[op]!;
          expect(fs.readdirSync(at(`A${i}`)).sort(), where).toEqual(expected);
          expect(fs.existsSync(at(`M${i}`)), where).toBe(op === 'rename' && !old);
          if (op === 'fchmod') expect(fs.statSync(at(`A${i}`)).mode & 0o777, where).toBe(0o700);
          continue;
        }
        const st = fs.statSync(at(`A${i}`));
        expect(st.mode & 0o777, where).toBe(op === 'chmod' && !old ? 0o600 : 0o644);
        const truncated = (op === 'otrunc' || op === 'truncopen') && !old;
        if (!truncated) expect(st.mtimeMs, where).toBe(op === 'utime' && !old ? 2_000_000 : 1_000_000);
        expect(st.uid, where).toBe(op === 'chown' && !old ? 1234 : 0);
        expect(st.nlink, where).toBe(op === 'link' && !old ? 2 : 1);
        const xattr = spawnSync('getfattr', ['--only-values', '-n', 'user.k', at(`A${i}`)], { encoding: 'utf8', timeout: 10_000 });
        expect(xattr.stdout, where).toBe(op === 'setxattr' && !old ? 'v' : '');
        expect(fs.readFileSync(at(`A${i}`), 'utf8'), where).toBe(truncated ? '' : `data${i}`);
      }
    }
  }, 120_000);

  it('a file replaced by rename again and again from nodes 2 and 3 while node 2 renames in its directory: readers on nodes 2 and 3 always open and read a whole version, and opens through a hard link of a file whose other links go never fail', async () => {
    // What turning opens through removed names away must not break (an
    // exploratory test: ESTALE reached readers, 1-3 in 5,000 opens).
    const dir = name('d');
    const versions = 100;
    const links = 200;
    fs.mkdirSync(cluster.path(1, dir));
    fs.writeFileSync(cluster.path(1, dir, 'T'), 'v'.repeat(20_000));
    fs.writeFileSync(cluster.path(1, dir, 'L'), 'payload');
    for (let k = 0; k < links; k++) fs.linkSync(cluster.path(1, dir, 'L'), cluster.path(1, dir, `t${k}`));
    for (let i = 0; i < 4 * versions; i++) fs.writeFileSync(cluster.path(1, dir, `b${i}`), '');
    for (let k = 0; k < links; k++) fs.statSync(cluster.path(2, dir, `t${k}`));
    const writer = (node: number) => runAsync('python3', ['-c', `
import os, sys
d = sys.argv[1]
for i in range(${versions}):
    tmp = f'{d}/tmp{os.getpid()}-{i}'
    with open(tmp, 'w') as f: f.write(chr(97 + i % 26) * 20000)
    os.rename(tmp, f'{d}/T')
`, cluster.path(node, dir)], 60_000);
    // reads until told to stop: a whole version every time, no error
    const reader = (node: number) => runAsync('python3', ['-c', `
import os, sys
d, stop = sys.argv[1], sys.argv[2]
reads = 0
while not os.path.exists(stop):
    with open(f'{d}/T') as f: data = f.read()
    if len(data) != 20000 or data != data[0] * 20000: print(f'bad read: {len(data)} bytes')
    with open(f'{d}/L') as f:
        if f.read() != 'payload': print('bad link read')
    reads += 1
print(f'reads {reads}', file=sys.stderr)
`, cluster.path(node, dir), cluster.path(1, dir, 'stop')], 60_000);
    const readers = [reader(2), reader(3)];
    const unlinker = runAsync('python3', ['-c', `
import os, sys
for k in range(${links}): os.unlink(f'{sys.argv[1]}/t{k}')
`, cluster.path(3, dir)], 60_000);
    const renamer = runAsync(process.execPath, ['-e', `
      const fs = require('fs');
      const dir = ${q(cluster.path(2, dir))};
      for (let i = 0; i < ${4 * versions}; i++) fs.renameSync(dir + '/b' + i, dir + '/B' + i);
    `], 60_000);
    const writers = await Promise.all([writer(2), writer(3), unlinker, renamer]);
    fs.writeFileSync(cluster.path(1, dir, 'stop'), '');
    const done = [...writers, ...(await Promise.all(readers))];
    ['writer on node 2', 'writer on node 3', 'unlinker on node 3', 'renamer on node 2', 'reader on node 2', 'reader on node 3'].forEach((who, i) => {
      expect(done[i].stdout, who).toBe('');
      expect(done[i].stderr.replace(/^reads \d+\n$/, ''), who).toBe('');
      expect(done[i].code, who).toBe(0);
    });
  }, 90_000);

  it('a directory a process on node 2 works in, renamed on node 3 (in its parent, or into another directory): getcwd on node 2 gives its new path within moments, and ".." is its new parent', async () => {
    // Found by exploratory tests: the kernel dropped the entry of the old name,
    // which the process's working directory still held: getcwd failed (ENOENT)
    // and "../x" was made in the old parent, until something on node 2 looked
    // up the new name.
    const dir = name('d');
    fs.mkdirSync(cluster.path(1, dir, 'q'), { recursive: true });
    const rounds = 20;
    const mover = await runAsync('python3', ['-c', `
import os, sys, time
on2, on3 = sys.argv[1], sys.argv[2]
os.stat(f'{on2}/q')  # node 2's kernel knows the directory it moves into
for i in range(${rounds}):
    os.mkdir(f'{on3}/d{i}')
    os.chdir(f'{on2}/d{i}')
    to = f'q/D{i}' if i % 2 else f'D{i}'
    os.rename(f'{on3}/d{i}', f'{on3}/{to}')
    deadline = time.monotonic() + 10
    while True:
        try:
            if os.getcwd() == f'{on2}/{to}': break
        except FileNotFoundError:
            pass
        if time.monotonic() > deadline:
            sys.exit(f'round {i}: getcwd not {on2}/{to} after 10 s')
        time.sleep(0.002)
    os.close(os.open(f'../new{i}', os.O_CREAT | os.O_WRONLY))
    os.chdir('/')
`, cluster.path(2, dir), cluster.path(3, dir)], 60_000);
    expect(mover.stderr).toBe('');
    expect(mover.stdout).toBe('');
    expect(mover.code).toBe(0);
    for (let i = 0; i < rounds; i++) {
      const parent = i % 2 ? cluster.path(1, dir, 'q') : cluster.path(1, dir);
      expect(fs.existsSync(path.join(parent, `new${i}`)), `round ${i}: ../new${i} in the new parent`).toBe(true);
    }
  }, 90_000);

  it('renameat2 RENAME_EXCHANGE on node 2 swaps two files, and a directory with a file across directories, seen at once on node 3; a directory into its own subtree is EINVAL, an absent name ENOENT', async () => {
    const dir = name('d');
    const swapper = await runAsync('python3', ['-c', `
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
def exchange(a, b, flags=2):
    if libc.renameat2(-100, a.encode(), -100, b.encode(), flags) != 0:
        return os.strerror(ctypes.get_errno())
    return 'ok'
on2, on3 = sys.argv[1], sys.argv[2]
os.makedirs(f'{on2}/p/sub'); os.makedirs(f'{on2}/q')
open(f'{on2}/a', 'w').write('A'); open(f'{on2}/q/b', 'w').write('B')
for name in ('a', 'q/b'): open(f'{on3}/{name}').read()  # node 3's kernel has both
print(exchange(f'{on2}/a', f'{on2}/q/b'), open(f'{on3}/a').read(), open(f'{on3}/q/b').read())
print(exchange(f'{on2}/p', f'{on2}/q/b'), open(f'{on3}/p').read(), os.listdir(f'{on3}/q/b'), os.stat(f'{on3}').st_nlink, os.stat(f'{on3}/q').st_nlink)
print(exchange(f'{on2}/q', f'{on2}/q/b/sub'), exchange(f'{on2}/a', f'{on2}/absent'), exchange(f'{on2}/a', f'{on2}/p', 3))
`, cluster.path(2, dir), cluster.path(3, dir)], 30_000);
    expect(swapper.stderr).toBe('');
    expect(swapper.stdout).toBe([
      'ok B A',
      "ok A ['sub'] 3 3",
      'Invalid argument No such file or directory Invalid argument',
      '',
    ].join('\n'));
  });

  it('rm -rf of one tree from nodes 2 and 3 at once: both succeed and the tree is gone; calls relative to a descriptor of a directory removed elsewhere find nothing (ENOENT), as on one machine', async () => {
    // Found by an exploratory test: the directory's inode, freed at its
    // removal, answered ESTALE to the kernel's getattr, which a call relative
    // to a descriptor (rm -rf's unlinkat) got through (0/4 rounds both
    // succeeded, the tree left behind).
    const dir = name('d');
    for (let round = 0; round < 4; round++) {
      const tree = cluster.path(1, dir, `t${round}`);
      for (let d = 0; d < 12; d++) {
        fs.mkdirSync(path.join(tree, `d${d}`, 'sub'), { recursive: true });
        for (let f = 0; f < 12; f++) fs.writeFileSync(path.join(tree, `d${d}`, f % 2 ? 'sub' : '', `f${f}`), 'x');
      }
      // both kernels know the tree
      for (const id of [2, 3]) expect(run('find', [cluster.path(id, dir, `t${round}`)]).status).toBe(0);
      const [on2, on3] = await Promise.all([2, 3].map((id) => runAsync('rm', ['-rf', cluster.path(id, dir, `t${round}`)], 60_000)));
      expect(on2.stderr + on3.stderr, `round ${round}`).toBe('');
      expect([on2.code, on3.code], `round ${round}`).toEqual([0, 0]);
      expect(fs.existsSync(tree), `round ${round}`).toBe(false);
    }
    const held = await runAsync('python3', ['-c', `
import os, shutil, sys
on2, on3 = sys.argv[1], sys.argv[2]
os.makedirs(f'{on2}/p/s'); open(f'{on2}/p/f', 'w').close()
fd = os.open(f'{on2}/p', os.O_RDONLY | os.O_DIRECTORY)
os.stat('f', dir_fd=fd)
shutil.rmtree(f'{on3}/p')
out = []
for call in (lambda: os.unlink('f', dir_fd=fd), lambda: os.rmdir('s', dir_fd=fd), lambda: os.stat('f', dir_fd=fd)):
    try: call(); out.append('ok')
    except OSError as e: out.append(e.strerror)
out.append(str(os.listdir(fd)))
out.append(str(os.fstat(fd).st_nlink))
print(', '.join(out))
`, cluster.path(2, dir), cluster.path(3, dir)], 30_000);
    expect(held.stderr).toBe('');
    expect(held.stdout).toBe('No such file or directory, No such file or directory, No such file or directory, [], 0\n');
  }, 120_000);

  it('a file rewritten and closed on node 1 has its new size and mtime at once on node 2, which had cached the old ones', () => {
    const file = name();
    fs.writeFileSync(cluster.path(1, file), 'short');
    for (let round = 0; round < 6; round++) {
      // node 2 caches the attributes and the pages of the current version
      const before = fs.statSync(cluster.path(2, file), { bigint: true });
      fs.readFileSync(cluster.path(2, file));
      let expected: number;
      if (round % 3 === 0) {
        // rewritten whole (O_TRUNC)
        expected = 100_000 + round * 4097;
        fs.writeFileSync(cluster.path(1, file), randomBytes(expected));
      } else if (round % 3 === 1) {
        // grown in place, without truncation
        expected = Number(before.size) + 3 * MiB + 1;
        const fd = fs.openSync(cluster.path(1, file), 'r+');
        fs.writeSync(fd, Buffer.from('z'), 0, 1, expected - 1);
        fs.closeSync(fd);
      } else {
        // shrunk
        expected = 777 + round;
        fs.truncateSync(cluster.path(1, file), expected);
      }
      const after = fs.statSync(cluster.path(2, file), { bigint: true });
      const truth = fs.statSync(cluster.path(1, file), { bigint: true });
      expect(Number(after.size)).toBe(expected);
      expect(after.mtimeNs).toBe(truth.mtimeNs);
      expect(fs.statSync(cluster.path(3, file)).size).toBe(expected);
      expect(fs.readFileSync(cluster.path(2, file)).length).toBe(expected);
    }
  });
});

describe('O_APPEND from two nodes at once', () => {
  // one process per node, each writing its lines with os.write on an O_APPEND descriptor
  const appender = `
import os, sys
path, tag, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
fd = os.open(path, os.O_WRONLY | os.O_APPEND)
for i in range(count):
    line = ('%s %05d ' % (tag, i) + 'abcdefghij' * (i * 37 % 23) + '\\n').encode()
    written = os.write(fd, line)
    if written != len(line):
        sys.exit('short write: %d of %d' % (written, len(line)))
os.close(fd)
`;
  const expectedLine = (tag: string, i: number) => `${tag} ${String(i).padStart(5, '0')} ${'abcdefghij'.repeat((i * 37) % 23)}`;

  function checkLines(text: string, tags: string[], count: number, line: (tag: string, i: number) => string): void {
    expect(text.endsWith('\n')).toBe(true);
    const lines = text.slice(0, -1).split('\n');
    const next = new Map(tags.map((tag) => [tag, 0]));
    const bad: string[] = [];
    for (const [index, got] of lines.entries()) {
      const tag = got.split(' ')[0];
      const i = next.get(tag);
      if (i === undefined || got !== line(tag, i)) {
        if (bad.length < 5) bad.push(`line ${index + 1}: ${JSON.stringify(got.slice(0, 120))}`);
        continue;
      }
      next.set(tag, i + 1);
    }
    expect(bad).toEqual([]);
    expect(lines.length).toBe(tags.length * count);
    for (const tag of tags) expect(next.get(tag)).toBe(count);
  }

  it('2 x 2,000 lines written with os.write by one process on node 2 and one on node 3: every line intact', async () => {
    const file = name('append');
    fs.writeFileSync(cluster.path(2, file), '');
    const [a, b] = await Promise.all([
      runAsync('python3', ['-c', appender, cluster.path(2, file), 'node2', '2000'], 90_000),
      runAsync('python3', ['-c', appender, cluster.path(3, file), 'node3', '2000'], 90_000),
    ]);
    console.log(`O_APPEND, 2 x 2000 os.write: ${a.ms} ms and ${b.ms} ms`);
    expect([a.code, a.stderr, b.code, b.stderr]).toEqual([0, '', 0, '']);
    for (const id of [1, 2, 3]) checkLines(fs.readFileSync(cluster.path(id, file), 'utf8'), ['node2', 'node3'], 2000, expectedLine);
  }, 100_000);

  it('2 x 1,000 lines appended with echo >> by a shell on node 2 and one on node 3: every line intact', async () => {
    const file = name('echo');
    fs.writeFileSync(cluster.path(3, file), '');
    const loop = (id: number) => `for i in $(seq 0 999); do echo "node${id} $i $(printf '%0*d' $((i % 50)) 0)" >> ${q(cluster.path(id, file))} || exit 1; done`;
    const [a, b] = await Promise.all([
      runAsync('bash', ['-c', loop(2)], 90_000),
      runAsync('bash', ['-c', loop(3)], 90_000),
    ]);
    console.log(`echo >>, 2 x 1000 lines: ${a.ms} ms and ${b.ms} ms`);
    expect([a.code, a.stderr, b.code, b.stderr]).toEqual([0, '', 0, '']);
    const line = (tag: string, i: number) => `${tag} ${i} ${'0'.repeat(Math.max(1, i % 50))}`;
    for (const id of [1, 2]) checkLines(fs.readFileSync(cluster.path(id, file), 'utf8'), ['node2', 'node3'], 1000, line);
  }, 100_000);
});

describe('a small file (kept in its inode) written by two nodes at once', () => {
  // Found by hand: a node's commit of an inlined file sent its whole copy,
  // which replaced what another node had committed (zeros where it wrote).
  const block = (char: string) => Buffer.alloc(4096, char);

  /** Opens one new file on nodes 2 and 3; `writes` runs with both descriptors. */
  function together(writes: (two: number, three: number) => void): string {
    const file = name('inl');
    fs.writeFileSync(cluster.path(2, file), '');
    const two = fs.openSync(cluster.path(2, file), 'r+');
    const three = fs.openSync(cluster.path(3, file), 'r+');
    try {
      writes(two, three);
    } finally {
      fs.closeSync(three);
      fs.closeSync(two);
    }
    return file;
  }

  it('disjoint writes, both fsynced: each node\'s bytes stay, seen from every node', () => {
    const file = together((two, three) => {
      fs.writeSync(two, block('A'), 0, 4096, 0);
      fs.writeSync(three, block('B'), 0, 4096, 4096);
      fs.fsyncSync(three);
      fs.fsyncSync(two);
    });
    for (const id of [1, 2, 3]) expect(fs.readFileSync(cluster.path(id, file)).equals(Buffer.concat([block('A'), block('B')])), `node ${id}`).toBe(true);
  });

  it('one that grows past the inode on both nodes: the first bytes of each stay', () => {
    const file = together((two, three) => {
      fs.writeSync(two, block('A'), 0, 4096, 0);
      fs.writeSync(three, block('B'), 0, 4096, 4096);
      fs.writeSync(two, Buffer.from('far'), 0, 3, MiB);
      fs.writeSync(three, Buffer.from('farther'), 0, 7, 2 * MiB);
      fs.fsyncSync(two);
      fs.fsyncSync(three);
    });
    for (const id of [1, 2, 3]) {
      const data = fs.readFileSync(cluster.path(id, file));
      expect(data.length).toBe(2 * MiB + 7);
      expect(data.subarray(0, 8192).equals(Buffer.concat([block('A'), block('B')])), `node ${id}`).toBe(true);
      expect(data.subarray(MiB, MiB + 3).toString()).toBe('far');
      expect(data.subarray(2 * MiB).toString()).toBe('farther');
    }
  });

  it('written on node 2, truncated to 0 on node 3 before node 2 closes: grown again, it reads zeros', () => {
    const file = name('inl');
    fs.writeFileSync(cluster.path(2, file), '');
    // write-only: the write reaches node 2's daemon at once (no page cache), uncommitted
    const two = fs.openSync(cluster.path(2, file), fs.constants.O_WRONLY);
    fs.writeSync(two, Buffer.alloc(3000, 'x'), 0, 3000, 0);
    fs.truncateSync(cluster.path(3, file), 0);
    fs.closeSync(two);
    for (const id of [1, 2, 3]) expect(fs.statSync(cluster.path(id, file)).size, `node ${id}`).toBe(0);
    fs.truncateSync(cluster.path(3, file), 3000);
    for (const id of [1, 2, 3]) expect(fs.readFileSync(cluster.path(id, file)).equals(Buffer.alloc(3000)), `node ${id}`).toBe(true);
  });

  /** A new empty file, open write-only on nodes 2 and 3: each write reaches its
   *  node's daemon at once (no page cache), in the order of the test. */
  function writeOnlyOnTwoAndThree(): { file: string; two: number; three: number } {
    const file = name('inl');
    fs.writeFileSync(cluster.path(2, file), '');
    return { file, two: fs.openSync(cluster.path(2, file), fs.constants.O_WRONLY), three: fs.openSync(cluster.path(3, file), fs.constants.O_WRONLY) };
  }

  /** Zeros, with each [char, offset, end] filled in. */
  function bytes(size: number, fills: [string, number, number][]): Buffer {
    const out = Buffer.alloc(size);
    for (const [char, offset, end] of fills) out.fill(char, offset, end);
    return out;
  }

  it('spilled by node 2 while node 3 commits bytes into it: node 3\'s bytes go to the objects too', () => {
    const { file, two, three } = writeOnlyOnTwoAndThree();
    fs.writeSync(two, Buffer.alloc(100, 'A'), 0, 100, 0);
    // past the inode: node 2 spills what it wrote, to commit later
    fs.writeSync(two, Buffer.from('far'), 0, 3, MiB);
    fs.writeSync(three, Buffer.alloc(100, 'B'), 0, 100, 200);
    fs.fsyncSync(three);
    fs.fsyncSync(two);
    fs.closeSync(three);
    fs.closeSync(two);
    const expected = bytes(MiB + 3, [['A', 0, 100], ['B', 200, 300], ['far', MiB, MiB + 3]]);
    for (const id of [1, 2, 3]) expect(fs.readFileSync(cluster.path(id, file)).equals(expected), `node ${id}`).toBe(true);
  });

  it('spilled by node 3, then by node 2 with the content the service had: node 3\'s bytes stay', () => {
    const { file, two, three } = writeOnlyOnTwoAndThree();
    fs.writeSync(three, Buffer.alloc(100, 'B'), 0, 100, 5000);
    fs.writeSync(three, Buffer.from('far'), 0, 3, MiB);
    // a read on node 3 waits for its writes to reach the objects (kept open:
    // a close would commit them)
    const reader = fs.openSync(cluster.path(3, file), 'r');
    const got = Buffer.alloc(100);
    fs.readSync(reader, got, 0, 100, 5000);
    expect(got.equals(Buffer.alloc(100, 'B'))).toBe(true);
    // node 2 commits bytes around node 3's (zeros where they are, in the service's copy)...
    fs.writeSync(two, Buffer.alloc(100, 'A'), 0, 100, 0);
    fs.writeSync(two, Buffer.alloc(100, 'C'), 0, 100, 6000);
    fs.fsyncSync(two);
    // ...then spills that copy, zeros included, to the objects, and commits first
    fs.writeSync(two, Buffer.from('farther'), 0, 7, 2 * MiB);
    fs.fsyncSync(two);
    fs.fsyncSync(three);
    fs.closeSync(reader);
    fs.closeSync(three);
    fs.closeSync(two);
    const expected = bytes(2 * MiB + 7, [['A', 0, 100], ['B', 5000, 5100], ['C', 6000, 6100], ['far', MiB, MiB + 3], ['farther', 2 * MiB, 2 * MiB + 7]]);
    for (const id of [1, 2, 3]) expect(fs.readFileSync(cluster.path(id, file)).equals(expected), `node ${id}`).toBe(true);
  });

  it('an in-place write on node 2 and an append on node 3: both stay', () => {
    const file = name('inl');
    fs.writeFileSync(cluster.path(2, file), Buffer.alloc(100, 'x'));
    const two = fs.openSync(cluster.path(2, file), 'r+');
    fs.writeSync(two, Buffer.alloc(50, 'y'), 0, 50, 0);
    fs.appendFileSync(cluster.path(3, file), Buffer.alloc(100, 'z'));
    fs.closeSync(two);
    const expected = Buffer.concat([Buffer.alloc(50, 'y'), Buffer.alloc(50, 'x'), Buffer.alloc(100, 'z')]);
    for (const id of [1, 2, 3]) expect(fs.readFileSync(cluster.path(id, file)).equals(expected), `node ${id}`).toBe(true);
  });
});

describe('times kept by tar x and cp -p', () => {
  /** Every path under root (itself excluded), parents before children. */
  function walk(root: string, rel = ''): string[] {
    const out: string[] = [];
    for (const entry of fs.readdirSync(path.join(root, rel), { withFileTypes: true }).sort((x, y) => x.name.localeCompare(y.name))) {
      const sub = path.join(rel, entry.name);
      out.push(sub);
      if (entry.isDirectory()) out.push(...walk(root, sub));
    }
    return out;
  }

  it('tar x on node 2 of a tree with old mtimes: every file, directory and link has its archived mtime, seen from node 3', () => {
    // the tree, built locally with touch -d, then archived (pax: nanosecond times)
    const src = path.join(local, 'tree-src');
    const tree = path.join(src, 'tree');
    fs.mkdirSync(path.join(tree, 'a', 'b', 'c'), { recursive: true });
    fs.mkdirSync(path.join(tree, 'empty'));
    const files: [string, number][] = [['top', 10], ['a/one', 5000], ['a/b/two', 3 * MiB + 5], ['a/b/c/three', 0], ['a/b/c/four', 70_000]];
    for (const [file, size] of files) fs.writeFileSync(path.join(tree, file), randomBytes(size));
    fs.symlinkSync('b/two', path.join(tree, 'a', 'link'));
    const entries = walk(src);
    // deepest first, so that setting a child's times does not change its parent's
    const byDepth = [...entries].sort((x, y) => y.split('/').length - x.split('/').length);
    byDepth.forEach((entry, i) => {
      const when = `${1995 + i}-0${1 + (i % 9)}-1${i % 10} 0${i % 10}:1${i % 10}:2${i % 10}.${String(123456789 + i * 1111).slice(0, 9)}`;
      const touched = run('touch', ['-h', '-d', when, path.join(src, entry)]);
      expect(touched.stderr).toBe('');
    });
    const archive = path.join(local, 'tree.tar');
    expect(run('tar', ['--format=posix', '-cf', archive, '-C', src, 'tree']).status).toBe(0);

    // reference: the same archive extracted on the local disk
    const ref = path.join(local, 'tree-ref');
    fs.mkdirSync(ref);
    expect(run('tar', ['-xf', archive, '-C', ref]).status).toBe(0);
    const dest = name('tar');
    fs.mkdirSync(cluster.path(2, dest));
    const extracted = run('tar', ['-xf', archive, '-C', cluster.path(2, dest)], 60_000);
    expect([extracted.status, extracted.stderr]).toEqual([0, '']);

    expect(walk(cluster.path(3, dest))).toEqual(walk(ref));
    const mismatches: string[] = [];
    for (const entry of walk(ref)) {
      const original = fs.lstatSync(path.join(src, entry), { bigint: true });
      const want = fs.lstatSync(path.join(ref, entry), { bigint: true });
      const got = fs.lstatSync(cluster.path(3, dest, entry), { bigint: true });
      // the local extraction keeps the nanoseconds: kDFS must too
      expect(want.mtimeNs).toBe(original.mtimeNs);
      if (got.mtimeNs !== want.mtimeNs) mismatches.push(`${entry}: mtime ${got.mtimeNs} instead of ${want.mtimeNs}`);
      if (got.mode !== want.mode) mismatches.push(`${entry}: mode ${got.mode.toString(8)} instead of ${want.mode.toString(8)}`);
      if (got.isFile() && got.size !== want.size) mismatches.push(`${entry}: size ${got.size} instead of ${want.size}`);
    }
    expect(mismatches).toEqual([]);
    for (const [file] of files) {
      expect(fs.readFileSync(cluster.path(3, dest, 'tree', file)).equals(fs.readFileSync(path.join(ref, 'tree', file)))).toBe(true);
    }
  }, 90_000);

  it('cp -p to node 2 keeps the mtime, seen from node 3', () => {
    const source = path.join(local, 'cp-source');
    fs.writeFileSync(source, randomBytes(2 * MiB + 3));
    expect(run('touch', ['-d', '2003-04-05 06:07:08.987654321', source]).status).toBe(0);
    // before cp reads it (which may update its atime)
    const want = fs.statSync(source, { bigint: true });
    const file = name('cp');
    expect(run('cp', ['-p', source, cluster.path(2, file)]).status).toBe(0);
    const got = fs.statSync(cluster.path(3, file), { bigint: true });
    expect(got.mtimeNs).toBe(want.mtimeNs);
    expect(got.atimeNs).toBe(want.atimeNs);
    expect(got.size).toBe(want.size);
  });

  it('times set on an open file after writing to it survive its close', () => {
    const file = name('utime');
    const fd = fs.openSync(cluster.path(2, file), 'w');
    fs.writeSync(fd, randomBytes(MiB + 17));
    fs.futimesSync(fd, new Date('2002-02-02T02:02:02.5Z'), new Date('2001-01-01T01:01:01.25Z'));
    fs.closeSync(fd);
    for (const id of [2, 3, 1]) {
      const st = fs.statSync(cluster.path(id, file), { bigint: true });
      expect(st.mtimeNs).toBe(BigInt(Date.parse('2001-01-01T01:01:01.25Z')) * 1_000_000n);
      expect(st.size).toBe(BigInt(MiB + 17));
    }
  });
});

describe('st_blocks counts the blocks really allocated', () => {
  const writeSparse = (file: string, size: number, writes: [number, number][]) => {
    const fd = fs.openSync(file, 'w');
    fs.ftruncateSync(fd, size);
    for (const [offset, length] of writes) fs.writeSync(fd, randomBytes(length), 0, length, offset);
    fs.closeSync(fd);
  };
  const duBytes = (file: string) => Number(run('du', ['-B1', file]).stdout.split('\t')[0]);

  it('a 100 MiB sparse file with 1 MiB written in the middle is sparse, seen from another node', () => {
    for (const offset of [50 * MiB, 50 * MiB + 12345]) {
      const file = name('sparse');
      writeSparse(cluster.path(2, file), 100 * MiB, [[offset, MiB]]);
      const st = fs.statSync(cluster.path(3, file));
      expect(st.size).toBe(100 * MiB);
      // about 1 MiB (a misaligned MiB touches one more page on each side), far below 100 MiB
      expect(st.blocks * 512).toBeGreaterThanOrEqual(MiB);
      expect(st.blocks * 512).toBeLessThanOrEqual(MiB + 64 * 1024);
      expect(duBytes(cluster.path(3, file))).toBe(st.blocks * 512);
    }
    const empty = name('sparse');
    writeSparse(cluster.path(2, empty), 100 * MiB, []);
    expect(fs.statSync(cluster.path(3, empty)).blocks).toBe(0);
  });

  it('a dense file has about size/512 blocks, seen from another node', () => {
    for (const size of [8 * MiB, 5 * MiB + 1000]) {
      const file = name('dense');
      fs.writeFileSync(cluster.path(2, file), randomBytes(size));
      const st = fs.statSync(cluster.path(3, file));
      expect(st.size).toBe(size);
      expect(st.blocks * 512).toBeGreaterThanOrEqual(size);
      expect(st.blocks * 512).toBeLessThanOrEqual(size + 64 * 1024);
      expect(duBytes(cluster.path(1, file))).toBe(st.blocks * 512);
    }
  });
});

describe('device nodes', () => {
  it('a character device made by root on node 2 (c 1 3) behaves like /dev/null on node 3', () => {
    const dev = name('null');
    const made = run('mknod', ['-m', '0666', cluster.path(2, dev), 'c', '1', '3']);
    expect([made.status, made.stderr]).toEqual([0, '']);
    const st = fs.statSync(cluster.path(3, dev));
    expect(st.isCharacterDevice()).toBe(true);
    expect(st.rdev).toBe(fs.statSync('/dev/null').rdev);
    // written to: swallowed; read from: end of file at once
    fs.writeFileSync(cluster.path(3, dev), randomBytes(MiB));
    const dd = run('dd', ['if=/dev/zero', `of=${cluster.path(3, dev)}`, 'bs=1M', 'count=8', 'status=none']);
    expect([dd.status, dd.stderr]).toEqual([0, '']);
    expect(fs.readFileSync(cluster.path(3, dev)).length).toBe(0);
    const fd = fs.openSync(cluster.path(3, dev), 'r+');
    expect(fs.writeSync(fd, Buffer.from('hello'))).toBe(5);
    expect(fs.readSync(fd, Buffer.alloc(100), 0, 100, null)).toBe(0);
    fs.closeSync(fd);
    // the node itself is unchanged, and another user may use it too (mode 0666)
    expect(fs.statSync(cluster.path(3, dev)).size).toBe(0);
    expect(asUser(NOBODY, `fs.writeFileSync(${q(cluster.path(3, dev))}, 'x'); return fs.readFileSync(${q(cluster.path(3, dev))}).length`)).toBe(0);
    expect(fs.readFileSync(cluster.path(2, dev)).length).toBe(0);
  });

  it('a character device c 1 5 made on node 2 reads zeros on node 3, like /dev/zero', () => {
    const dev = name('zero');
    expect(run('mknod', [cluster.path(2, dev), 'c', '1', '5']).status).toBe(0);
    const fd = fs.openSync(cluster.path(3, dev), 'r');
    const buf = Buffer.alloc(65536, 0xaa);
    expect(fs.readSync(fd, buf, 0, buf.length, null)).toBe(buf.length);
    fs.closeSync(fd);
    expect(buf.every((b) => b === 0)).toBe(true);
  });
});
