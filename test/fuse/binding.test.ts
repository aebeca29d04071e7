// kdfs-fuse, the libfuse3 low-level binding (native/fuse), through a real mount
// of memfs.cjs, a tiny in-memory file system on it in a child process: what the
// kernel sends reaches JavaScript with the right arguments, and what JavaScript
// answers or notifies reaches the kernel.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { NOBODY, asUser, python } from '../harness/posix.js';
import { Locker, MemFs, type Message, WAIT_MS } from './memfs.js';

const F_RDLCK = 0;
const F_WRLCK = 1;
const F_UNLCK = 2;
const LOCK_EX = 2;
const LOCK_NB = 4;
const EINTR = 4;
const EAGAIN = 11;
const ENOENT = 2;
const NOTIFY_QUEUE = 4096;

let memfs: MemFs;
let lockers: Locker[] = [];

beforeAll(async () => {
  memfs = await MemFs.start();
});
afterEach(async () => {
  await Promise.all(lockers.map((l) => l.kill()));
  lockers = [];
});
afterAll(async () => {
  await memfs?.stop();
});

async function locker(user?: { uid: number; gid: number }): Promise<Locker> {
  const l = await Locker.start(user);
  lockers.push(l);
  return l;
}

/** Resolves with the exit code of a command run in the background. */
function background(file: string, args: string[]): { pid: number; exit: Promise<number> } {
  const child = spawn(file, args, { stdio: 'ignore' });
  const exit = new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${file} did not exit`)), WAIT_MS * 2);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve(code ?? -1);
    });
  });
  return { pid: child.pid!, exit };
}

/** Waits (bounded) for a condition no event announces: a thread's state in /proc. */
async function until(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + WAIT_MS;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

describe('requests', () => {
  it('lookup, getattr, create, write and read reach JavaScript with their arguments', async () => {
    const mark = await memfs.mark();
    expect(fs.statSync(memfs.mnt).isDirectory()).toBe(true);
    fs.writeFileSync(memfs.path('hello'), 'hello, world');
    expect(fs.readFileSync(memfs.path('hello'), 'utf8')).toBe('hello, world');
    const st = fs.statSync(memfs.path('hello'));
    expect(st.size).toBe(12);
    await memfs.sync();

    // the root's attributes, asked for once since the mount (then cached for an hour)
    expect(memfs.ops('getattr').some((m) => m.args![4] === 1)).toBe(true);
    expect(st.uid).toBe(0);
    const lookup = memfs.ops('lookup', mark).find((m) => m.s1 === 'hello')!;
    expect(lookup.args![4]).toBe(1);
    expect(lookup.args![0]).toBe(0); // uid of the caller
    expect(lookup.args![2]).toBe(process.pid);
    expect(memfs.ops('create', mark).find((m) => m.s1 === 'hello')).toBeDefined();
    const write = memfs.ops('write', mark).find((m) => m.args![4] === st.ino)!;
    expect(write.args!.slice(6, 8)).toEqual([12, 0]); // size, offset
    const read = memfs.ops('read', mark).find((m) => m.args![4] === st.ino)!;
    expect(read.args![7]).toBe(0);
  });

  it('forget reaches JavaScript, with the inode and its lookup count', async () => {
    const file = memfs.path('forgotten');
    fs.writeFileSync(file, 'x');
    const ino = fs.statSync(file).ino;
    const mark = await memfs.mark();
    fs.unlinkSync(file);
    const forget = await memfs.waitForOp('forget', (m) => m.args![4] === ino, mark);
    expect(forget.args![5]).toBeGreaterThanOrEqual(1);
  });

  it('refuses a second reply to a request with a JavaScript error', async () => {
    const mark = await memfs.mark();
    expect(() => fs.statSync(memfs.path('answer-twice'))).toThrow(/ENOENT/);
    const twice = await memfs.waitFor((m) => m.ev === 'twice', mark);
    expect(twice).toMatchObject({ threw: true, name: 'RangeError' });
  });

  it('copy_file_range reaches JavaScript', async () => {
    fs.writeFileSync(memfs.path('copy-from'), 'abcdefghij');
    fs.writeFileSync(memfs.path('copy-to'), '');
    const from = fs.statSync(memfs.path('copy-from')).ino;
    const to = fs.statSync(memfs.path('copy-to')).ino;
    const mark = await memfs.mark();
    const copied = python(`i = os.open(${JSON.stringify(memfs.path('copy-from'))}, os.O_RDONLY)
o = os.open(${JSON.stringify(memfs.path('copy-to'))}, os.O_WRONLY)
print(os.copy_file_range(i, o, 4, 2, 1))`);
    expect(copied).toMatchObject({ status: 0, stdout: '4' });
    await memfs.sync();
    const op = memfs.ops('copy_file_range', mark)[0];
    expect(op.args![4]).toBe(from);
    expect(op.args![6]).toBe(2); // off_in
    expect(op.args![7]).toBe(to);
    expect(op.args![9]).toBe(1); // off_out
    expect(op.args!.slice(10, 12)).toEqual([4, 0]); // len, flags
    expect(op.args![5]).toBeGreaterThan(0); // the handles memfs gave
    expect(op.args![8]).toBeGreaterThan(0);
    expect(fs.readFileSync(memfs.path('copy-to'), 'latin1')).toBe('\0cdef');
  });

  it('flags writes through direct-I/O handles by a caller without CAP_FSETID (kill_suidgid)', async () => {
    const file = memfs.path('setuid');
    fs.writeFileSync(file, 'x');
    fs.chmodSync(file, 0o666);
    const ino = fs.statSync(file).ino;
    await memfs.command({ cmd: 'directIo', on: true });
    try {
      let mark = await memfs.mark();
      fs.writeFileSync(file, 'root', { flag: 'r+' });
      const byRoot = await memfs.waitForOp('write', (m) => m.args![4] === ino, mark);
      expect(byRoot.args![0]).toBe(0);
      expect(byRoot.args![8]).toBe(0);

      mark = await memfs.mark();
      expect(asUser(NOBODY, `fs.writeFileSync(${JSON.stringify(file)}, 'nobody', { flag: 'r+' })`)).toBe('ok');
      const byNobody = await memfs.waitForOp('write', (m) => m.args![4] === ino, mark);
      expect(byNobody.args![0]).toBe(NOBODY.uid);
      expect(byNobody.args![8]).toBe(1);
    } finally {
      await memfs.command({ cmd: 'directIo', on: false });
    }
  });
});

describe('locks', () => {
  it('fcntl locks of two processes reach JavaScript with owners, types, ranges, pids and the sleep flag', async () => {
    const file = memfs.path('posix-locked');
    fs.writeFileSync(file, 'locked');
    const ino = fs.statSync(file).ino;
    const a = await locker();
    const b = await locker();
    const fdA = (await a.request({ open: file })).fd;
    const fdB = (await b.request({ open: file })).fd;
    const setlk = (after: number, pid: number) => memfs.waitForOp('setlk', (m) => m.args![4] === ino && m.args![9] === pid, after);

    let mark = await memfs.mark();
    expect(await a.request({ fd: fdA, setlk: [F_WRLCK, 0, 0] })).toEqual({ ok: true });
    const first = await setlk(mark, a.pid);
    expect(first.args!.slice(6, 11)).toEqual([F_WRLCK, 0, -1, a.pid, 0]); // type start end(EOF) pid sleep
    const ownerA = first.s1!;
    expect(ownerA).toMatch(/^\d+$/);

    mark = await memfs.mark();
    expect(await a.request({ fd: fdA, setlk: [F_RDLCK, 100, 10] })).toEqual({ ok: true });
    const second = await setlk(mark, a.pid);
    expect(second.args!.slice(6, 9)).toEqual([F_RDLCK, 100, 109]);
    expect(second.s1).toBe(ownerA); // one owner per process

    // B asks who is in the way: A's write lock on [0, 99], as memfs answered it
    mark = await memfs.mark();
    expect(await b.request({ fd: fdB, getlk: [F_WRLCK, 0, 0] })).toEqual({ ok: true, type: F_WRLCK, start: 0, len: 100, pid: a.pid });
    const getlk = await memfs.waitForOp('getlk', (m) => m.args![4] === ino, mark);
    expect(getlk.args!.slice(6, 9)).toEqual([F_WRLCK, 0, -1]);
    const ownerB = getlk.s1!;
    expect(ownerB).toMatch(/^\d+$/);
    expect(ownerB).not.toBe(ownerA);
    // a range that meets no write lock: no conflict (F_UNLCK)
    expect(await b.request({ fd: fdB, getlk: [F_RDLCK, 100, 5] })).toMatchObject({ ok: true, type: F_UNLCK });

    mark = await memfs.mark();
    expect(await b.request({ fd: fdB, setlk: [F_WRLCK, 0, 0] })).toEqual({ errno: EAGAIN });
    const refused = await setlk(mark, b.pid);
    expect(refused.args![10]).toBe(0);
    expect(refused.s1).toBe(ownerB);

    // closing A's descriptor flushes with A's owner: its locks go, B gets the lock
    mark = await memfs.mark();
    expect(await a.request({ close: fdA })).toEqual({ ok: true });
    const flush = await memfs.waitForOp('flush', (m) => m.args![4] === ino, mark);
    expect(flush.s1).toBe(ownerA);
    expect(await b.request({ fd: fdB, setlk: [F_WRLCK, 0, 0] })).toEqual({ ok: true });
  });

  it('a blocked F_SETLKW is interrupted by a signal: the interrupt names its slot, the waiter gets EINTR', async () => {
    const file = memfs.path('posix-wait');
    fs.writeFileSync(file, 'locked');
    const ino = fs.statSync(file).ino;
    const a = await locker();
    const b = await locker();
    const fdA = (await a.request({ open: file })).fd;
    const fdB = (await b.request({ open: file })).fd;
    expect(await a.request({ fd: fdA, setlk: [F_WRLCK, 0, 0] })).toEqual({ ok: true });

    const mark = await memfs.mark();
    const waiting = b.request({ fd: fdB, setlk: [F_WRLCK, 10, 20], wait: true });
    const setlkw = await memfs.waitForOp('setlk', (m) => m.args![4] === ino && m.args![9] === b.pid, mark);
    expect(setlkw.args!.slice(6, 11)).toEqual([F_WRLCK, 10, 29, b.pid, 1]);
    process.kill(b.pid, 'SIGUSR1');
    const interrupt = await memfs.waitForOp('interrupt', () => true, mark);
    expect(interrupt.slot).toBe(setlkw.slot);
    expect(interrupt.args![4]).toBe(ino); // the interrupted request's arguments
    expect(await waiting).toEqual({ errno: EINTR });
  });

  it('flock locks of two processes reach JavaScript with their owners, and go at release', async () => {
    const file = memfs.path('flocked');
    fs.writeFileSync(file, 'locked');
    const ino = fs.statSync(file).ino;
    const a = await locker();
    const b = await locker();
    const fdA = (await a.request({ open: file })).fd;
    const fdB = (await b.request({ open: file })).fd;

    let mark = await memfs.mark();
    expect(await a.request({ fd: fdA, flock: LOCK_EX })).toEqual({ ok: true });
    const byA = await memfs.waitForOp('flock', (m) => m.args![4] === ino, mark);
    expect(byA.args![6]).toBe(LOCK_EX);
    expect(byA.args![2]).toBe(a.pid);
    const ownerA = byA.s1!;
    expect(ownerA).toMatch(/^\d+$/);

    mark = await memfs.mark();
    expect(await b.request({ fd: fdB, flock: LOCK_EX | LOCK_NB })).toEqual({ errno: EAGAIN });
    const byB = await memfs.waitForOp('flock', (m) => m.args![4] === ino, mark);
    expect(byB.args![6]).toBe(LOCK_EX | LOCK_NB);
    expect(byB.s1).toMatch(/^\d+$/);
    expect(byB.s1).not.toBe(ownerA);

    // the last close of A's open file releases it with flock_release and A's owner
    mark = await memfs.mark();
    expect(await a.request({ close: fdA })).toEqual({ ok: true });
    const release = await memfs.waitForOp('release', (m) => m.args![4] === ino, mark);
    expect(release.args![6]).toBe(1);
    expect(release.s1).toBe(ownerA);
    expect(await b.request({ fd: fdB, flock: LOCK_EX | LOCK_NB })).toEqual({ ok: true });
  });
});

describe('notifications', () => {
  it('inval_entry waits for a request held in that directory without blocking the event loop', async () => {
    fs.mkdirSync(memfs.path('dir'));
    const dir = fs.statSync(memfs.path('dir')).ino;
    const added = await memfs.command({ cmd: 'addFile', parent: dir, name: 'x' });
    expect(added.err).toBeUndefined();
    await memfs.command({ cmd: 'hold', op: 'lookup', name: 'x' });
    const mark = await memfs.mark();
    // stat(2) looks x up, holding dir's lock until memfs answers
    const stat = background('stat', [memfs.path('dir', 'x')]);
    await memfs.waitFor((m) => m.ev === 'held' && m.name === 'x', mark);
    try {
      const { queued, done } = await memfs.notify({ cmd: 'notifyInvalEntry', parent: dir, name: 'x' });
      expect(queued).toBe(0);
      // the notification thread waits in the kernel for the directory...
      await until(() => memfs.blockedThreads() > 0, 'the notification thread blocks in the kernel');
      // ...while the event loop goes on: more notifications queue, up to the bound
      const flood = await memfs.command({ cmd: 'flood', parent: dir, name: 'x', count: NOTIFY_QUEUE });
      expect(flood).toMatchObject({ queued: NOTIFY_QUEUE - 1, refused: -EAGAIN });
      expect(await memfs.command({ cmd: 'ping' })).toMatchObject({ ev: 'pong' });
      expect(memfs.messages.slice(mark).some((m) => m.ev === 'notified' || m.ev === 'flooded')).toBe(false);

      // answered: the lookup completes, then the notification, then the flood
      const after = await memfs.mark();
      await memfs.command({ cmd: 'release' });
      expect(await stat.exit).toBe(0);
      expect(await done).toBe(0);
      const flooded = await memfs.waitFor((m) => m.ev === 'flooded' && m.id === flood.id, after);
      const results = flooded.results as Record<string, number>;
      expect(Object.values(results).reduce((a, b) => a + b, 0)).toBe(NOTIFY_QUEUE - 1);
      expect(Object.keys(results).every((r) => r === '0' || r === String(-ENOENT))).toBe(true);
    } finally {
      await memfs.command({ cmd: 'release' });
    }
    // the entry was dropped: the next stat looks x up again
    const again = await memfs.mark();
    fs.statSync(memfs.path('dir', 'x'));
    await memfs.sync();
    expect(memfs.ops('lookup', again).some((m) => m.s1 === 'x')).toBe(true);
  });

  it('inval_inode makes the kernel ask for the attributes again', async () => {
    const file = memfs.path('attrs');
    fs.writeFileSync(file, 'x');
    const ino = fs.statSync(file).ino; // after the write: asks for the new attributes
    let mark = await memfs.mark();
    fs.statSync(file);
    fs.statSync(file);
    await memfs.sync();
    expect(memfs.ops('getattr', mark).filter((m) => m.args![4] === ino)).toHaveLength(0); // cached for an hour

    const { queued, done } = await memfs.notify({ cmd: 'notifyInvalInode', ino, offset: -1, length: 0 });
    expect(queued).toBe(0);
    expect(await done).toBe(0);
    mark = await memfs.mark();
    fs.statSync(file);
    await memfs.waitForOp('getattr', (m) => m.args![4] === ino, mark);
  });

  it('inval_attrs_now drops the attributes before it returns, though the notification thread waits for a directory', async () => {
    const file = memfs.path('attrsNow');
    fs.writeFileSync(file, 'x');
    const ino = fs.statSync(file).ino;
    fs.mkdirSync(memfs.path('heldDir'));
    const dir = fs.statSync(memfs.path('heldDir')).ino;
    expect((await memfs.command({ cmd: 'addFile', parent: dir, name: 'y' })).err).toBeUndefined();
    await memfs.command({ cmd: 'hold', op: 'lookup', name: 'y' });
    let mark = await memfs.mark();
    const stat = background('stat', [memfs.path('heldDir', 'y')]);
    await memfs.waitFor((m) => m.ev === 'held' && m.name === 'y', mark);
    try {
      const { done } = await memfs.notify({ cmd: 'notifyInvalEntry', parent: dir, name: 'y' });
      await until(() => memfs.blockedThreads() > 0, 'the notification thread blocks in the kernel');
      mark = await memfs.mark();
      fs.statSync(file);
      await memfs.sync();
      expect(memfs.ops('getattr', mark).filter((m) => m.args![4] === ino)).toHaveLength(0);
      expect(await memfs.command({ cmd: 'notifyInvalAttrsNow', ino })).toMatchObject({ result: 0 });
      mark = await memfs.mark();
      fs.statSync(file);
      await memfs.waitForOp('getattr', (m) => m.args![4] === ino, mark);
      expect(await memfs.command({ cmd: 'notifyInvalAttrsNow', ino: 987654 })).toMatchObject({ result: -ENOENT });
      await memfs.command({ cmd: 'release' });
      expect(await stat.exit).toBe(0);
      expect(await done).toBe(0);
    } finally {
      await memfs.command({ cmd: 'release' });
    }
  });

  it('delete drops the entry of the child it names', async () => {
    const file = memfs.path('deleted');
    fs.writeFileSync(file, 'x');
    const ino = fs.statSync(file).ino;
    const { queued, done } = await memfs.notify({ cmd: 'notifyDelete', parent: 1, child: ino, name: 'deleted' });
    expect(queued).toBe(0);
    expect(await done).toBe(0);
    const mark = await memfs.mark();
    fs.statSync(file);
    await memfs.sync();
    expect(memfs.ops('lookup', mark).some((m) => m.s1 === 'deleted')).toBe(true);
  });

  it('a notification about an inode the kernel does not have completes with -ENOENT', async () => {
    const { queued, done } = await memfs.notify({ cmd: 'notifyInvalInode', ino: 987654, offset: 0, length: 0 });
    expect(queued).toBe(0);
    expect(await done).toBe(-ENOENT);
  });
});

describe('mount options', () => {
  function mountFlags(mnt: string): string[] {
    const line = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === mnt)!;
    return line.split(' ')[5].split(',');
  }

  it('mounts nosuid,nodev by default, and honours suid and dev', async () => {
    expect(mountFlags(memfs.mnt)).toEqual(expect.arrayContaining(['nosuid', 'nodev']));
    const other = await MemFs.start(['suid', 'dev']);
    try {
      const flags = mountFlags(other.mnt);
      expect(flags).not.toContain('nosuid');
      expect(flags).not.toContain('nodev');
    } finally {
      await other.stop();
    }
  });

  it('ends the session on unmount: op exit, notifications done, the thread joined, the process free to leave', async () => {
    const other = await MemFs.start([], { MEMFS_NATURAL_EXIT: '1' });
    try {
      const mark = await other.mark();
      const { queued, done } = await other.notify({ cmd: 'notifyInvalInode', ino: 1, offset: -1, length: 0 });
      expect(queued).toBe(0);
      await other.command({ cmd: 'unmount' });
      await other.waitFor((m: Message) => m.ev === 'exit', mark);
      expect(typeof (await done)).toBe('number');
      // nothing but the binding's handles kept it alive: it leaves once they are closed
      const code = await new Promise<number | null>((resolve, reject) => {
        if (other.child.exitCode !== null) return resolve(other.child.exitCode);
        const timer = setTimeout(() => reject(new Error('memfs did not leave after the session ended')), WAIT_MS);
        other.child.once('exit', (c) => {
          clearTimeout(timer);
          resolve(c);
        });
      });
      expect(code).toBe(0);
    } finally {
      await other.stop();
    }
  });
});
