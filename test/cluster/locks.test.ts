// Cluster-wide file locks: flock, POSIX record locks (F_SETLK, F_SETLKW, F_GETLK)
// and OFD locks held by processes of different nodes exclude each other; a
// blocked wait is interrupted by a signal; what one holder wrote the next one
// reads; the locks of a node killed (kill -9) go after its lease (when else
// locks go: lock-release.test.ts). Locks are taken by test/tools/locker.py
// processes, one JSON command a line.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import type { Cluster } from '../harness/cluster.js';
import { Locker, PENDING, child, lockTestCluster, poll, result, within } from '../harness/locker.js';

let cluster: Cluster;
const fresh = lockTestCluster((started) => (cluster = started));

describe('flock', () => {
  it('held on node 1: refused to flock -n on node 3, granted to a waiting flock -w on node 2 once the holder exits', async () => {
    const file = fresh();
    const holder = child('flock', [cluster.path(1, file), '-c', 'echo held; read line']);
    await new Promise<void>((resolve, reject) => {
      holder.proc.stdout!.on('data', () => { if (holder.stdout().includes('held')) resolve(); });
      void holder.exit.then((code) => reject(new Error(`flock holder exited with ${code}`)));
    });
    expect(spawnSync('flock', ['-n', cluster.path(3, file), 'true'], { timeout: 15_000 }).status).toBe(1);
    expect(spawnSync('flock', ['-n', '-s', cluster.path(2, file), 'true'], { timeout: 15_000 }).status).toBe(1);

    const waiter = child('flock', ['-w', '60', cluster.path(2, file), '-c', 'echo granted']);
    // only time can tell that it waits
    expect(await within(waiter.exit, 1500)).toBe(PENDING);
    const released = Date.now();
    holder.proc.stdin!.end('\n');
    expect(await within(holder.exit, 10_000)).toBe(0);
    expect(await within(waiter.exit, 10_000)).toBe(0);
    console.log(`flock -w on node 2 granted ${Date.now() - released} ms after node 1's holder exited`);
    expect(waiter.stdout()).toBe('granted\n');
    // the waiter's lock goes with its exit, but the kernel sends that unlock
    // (FUSE_RELEASE) after the process is gone: a bounded wait, not -n
    expect(spawnSync('flock', ['-w', '10', cluster.path(3, file), 'true'], { timeout: 15_000 }).status).toBe(0);
  });

  it('shared locks on nodes 2 and 3 admit a shared lock on node 1 and refuse an exclusive one', async () => {
    const file = fresh();
    const [a, b, c] = await Promise.all([Locker.start('node2'), Locker.start('node3'), Locker.start('node1')]);
    const fa = await a.open(cluster.path(2, file));
    const fb = await b.open(cluster.path(3, file));
    const fc = await c.open(cluster.path(1, file));
    expect(await a.flock(fa, 'sh')).toBe('ok');
    expect(await b.flock(fb, 'sh')).toBe('ok');
    expect(await c.flock(fc, 'ex')).toBe('EAGAIN');
    expect(await c.flock(fc, 'sh')).toBe('ok');
    expect(await c.flock(fc, 'un')).toBe('ok');
    // an upgrade on node 2 is refused while node 3 shares
    expect(await a.flock(fa, 'ex')).toBe('EAGAIN');
    expect(await b.flock(fb, 'un')).toBe('ok');
    expect(await a.flock(fa, 'ex')).toBe('ok');
    expect(await b.flock(fb, 'sh')).toBe('EAGAIN');
    // closing the descriptor releases it; the kernel sends that unlock
    // (FUSE_RELEASE) after close(2) returns, so node 3 waits for its grant
    const granted = b.send({ op: 'flock', fd: fb, type: 'ex', wait: true });
    expect(await within(granted, 1500)).toBe(PENDING);
    expect(await a.ask({ op: 'close', fd: fa })).toEqual({ ok: true });
    const answer = await within(granted, 10_000);
    expect(answer === PENDING ? 'still waiting after 10 s' : result(answer)).toBe('ok');
    for (const locker of [a, b, c]) locker.kill();
  });

  it('a blocked flock on node 2 is interrupted by a signal (EINTR), and not granted later', async () => {
    const file = fresh();
    const [holder, waiter, other] = await Promise.all([Locker.start('node1'), Locker.start('node2'), Locker.start('node3')]);
    const fh = await holder.open(cluster.path(1, file));
    const fw = await waiter.open(cluster.path(2, file));
    const fo = await other.open(cluster.path(3, file));
    expect(await holder.flock(fh, 'ex')).toBe('ok');
    const interrupted = await within(waiter.send({ op: 'flock', fd: fw, type: 'ex', wait: true, interruptAfter: 0.5 }), 10_000);
    if (interrupted === PENDING) throw new Error('a blocked flock(LOCK_EX) was not interrupted by SIGALRM within 10 s');
    expect(result(interrupted)).toBe('EINTR');
    expect(interrupted.ms as number).toBeGreaterThanOrEqual(450);
    expect(await holder.flock(fh, 'un')).toBe('ok');
    // the abandoned wait must not have become a lock of node 2
    expect(await other.flock(fo, 'ex')).toBe('ok');
    expect(await waiter.flock(fw, 'ex')).toBe('EAGAIN');
    for (const locker of [holder, waiter, other]) locker.kill();
  });
});

describe('POSIX record locks (fcntl)', () => {
  it('conflict across nodes only where ranges overlap and one of them is a write lock', async () => {
    const file = fresh();
    const [a, b] = await Promise.all([Locker.start('node2'), Locker.start('node3')]);
    const fa = await a.open(cluster.path(2, file));
    const fb = await b.open(cluster.path(3, file));
    // node 2: write lock on [0, 100), read lock on [200, 300)
    expect(await a.lock(fa, 'w', 0, 100, { api: 'lockf' })).toBe('ok');
    expect(await a.lock(fa, 'r', 200, 100)).toBe('ok');
    // node 3
    expect(await b.lock(fb, 'w', 100, 100, { api: 'lockf' })).toBe('ok'); // adjacent: no overlap
    expect(['EAGAIN', 'EACCES']).toContain(await b.lock(fb, 'r', 50, 10, { api: 'lockf' }));
    expect(['EAGAIN', 'EACCES']).toContain(await b.lock(fb, 'w', 99, 1));
    expect(await b.lock(fb, 'r', 250, 10)).toBe('ok'); // read and read
    expect(['EAGAIN', 'EACCES']).toContain(await b.lock(fb, 'w', 250, 10)); // its read lock cannot become a write lock
    expect(['EAGAIN', 'EACCES']).toContain(await b.lock(fb, 'w', 150, 60)); // [150, 210) reaches node 2's read lock
    expect(await b.lock(fb, 'w', 300, 0)).toBe('ok'); // from 300 to the end of any file
    expect(['EAGAIN', 'EACCES']).toContain(await a.lock(fa, 'r', 2 ** 40, 1));
    expect(['EAGAIN', 'EACCES']).toContain(await a.lock(fa, 'w', 120, 1));
    // node 2 unlocks part of its write lock: node 3 may take what was freed, not the rest
    expect(await a.lock(fa, 'u', 40, 20)).toBe('ok');
    expect(await b.lock(fb, 'w', 40, 20)).toBe('ok');
    expect(['EAGAIN', 'EACCES']).toContain(await b.lock(fb, 'w', 39, 1));
    expect(['EAGAIN', 'EACCES']).toContain(await b.lock(fb, 'w', 60, 1));
    // a second process on node 2 is another owner: it conflicts with the first
    const a2 = await Locker.start('node2b');
    const fa2 = await a2.open(cluster.path(2, file));
    expect(['EAGAIN', 'EACCES']).toContain(await a2.lock(fa2, 'w', 0, 1));
    expect(await a2.lock(fa2, 'r', 200, 10)).toBe('ok');
    for (const locker of [a, b, a2]) locker.kill();
  });

  it('F_GETLK on another node reports the conflicting lock: its type and range', async () => {
    const file = fresh();
    const [a, b, c] = await Promise.all([Locker.start('node2'), Locker.start('node3'), Locker.start('node1')]);
    const fa = await a.open(cluster.path(2, file));
    const fb = await b.open(cluster.path(3, file));
    const fc = await c.open(cluster.path(1, file));
    expect(await a.lock(fa, 'w', 0, 100)).toBe('ok');
    expect(await a.lock(fa, 'r', 200, 100)).toBe('ok');
    expect(await a.lock(fa, 'w', 1000, 0)).toBe('ok');
    const getlk = async (who: Locker, fd: number, type: string, start: number, len: number) => {
      const answer = await who.ask({ op: 'getlk', fd, type, start, len });
      return answer.type === 'u' ? { type: 'u' } : { type: answer.type, start: answer.start, len: answer.len };
    };
    for (const [who, fd] of [[b, fb], [c, fc]] as const) {
      expect(await getlk(who, fd, 'w', 10, 5)).toEqual({ type: 'w', start: 0, len: 100 });
      expect(await getlk(who, fd, 'r', 99, 10)).toEqual({ type: 'w', start: 0, len: 100 });
      expect(await getlk(who, fd, 'w', 100, 100)).toEqual({ type: 'u' });
      expect(await getlk(who, fd, 'r', 250, 1)).toEqual({ type: 'u' });
      expect(await getlk(who, fd, 'w', 250, 1)).toEqual({ type: 'r', start: 200, len: 100 });
      expect(await getlk(who, fd, 'w', 300, 700)).toEqual({ type: 'u' });
      expect(await getlk(who, fd, 'r', 5000, 1)).toEqual({ type: 'w', start: 1000, len: 0 });
    }
    // the holder itself sees no conflict with its own locks
    expect(await getlk(a, fa, 'w', 0, 0)).toEqual({ type: 'u' });
    for (const locker of [a, b, c]) locker.kill();
  });

  it('a blocked F_SETLKW on node 2 is interrupted by a signal (EINTR), and not granted later', async () => {
    const file = fresh();
    const [holder, waiter, other] = await Promise.all([Locker.start('node1'), Locker.start('node2'), Locker.start('node3')]);
    const fh = await holder.open(cluster.path(1, file));
    const fw = await waiter.open(cluster.path(2, file));
    const fo = await other.open(cluster.path(3, file));
    expect(await holder.lock(fh, 'w', 0, 0)).toBe('ok');
    const interrupted = await within(waiter.send({ op: 'lock', fd: fw, type: 'w', start: 0, len: 10, wait: true, interruptAfter: 0.5 }), 10_000);
    if (interrupted === PENDING) throw new Error('a blocked F_SETLKW was not interrupted by SIGALRM within 10 s');
    expect(result(interrupted)).toBe('EINTR');
    expect(interrupted.ms as number).toBeGreaterThanOrEqual(450);
    expect(await holder.lock(fh, 'u', 0, 0)).toBe('ok');
    expect(await other.lock(fo, 'w', 0, 10)).toBe('ok');
    expect(['EAGAIN', 'EACCES']).toContain(await waiter.lock(fw, 'w', 0, 1));
    for (const locker of [holder, waiter, other]) locker.kill();
  });

  it('a blocked F_SETLKW on node 3 is granted when node 2 unlocks, and not before', async () => {
    const file = fresh();
    const [a, b] = await Promise.all([Locker.start('node2'), Locker.start('node3')]);
    const fa = await a.open(cluster.path(2, file));
    const fb = await b.open(cluster.path(3, file));
    expect(await a.lock(fa, 'r', 0, 50)).toBe('ok');
    const granted = b.send({ op: 'lock', fd: fb, type: 'w', start: 40, len: 20, wait: true });
    expect(await within(granted, 1500)).toBe(PENDING);
    // unlocking a range the waiter does not need changes nothing
    expect(await a.lock(fa, 'u', 0, 30)).toBe('ok');
    expect(await within(granted, 1000)).toBe(PENDING);
    const unlocked = Date.now();
    expect(await a.lock(fa, 'u', 30, 20)).toBe('ok');
    const answer = await within(granted, 10_000);
    expect(answer === PENDING ? 'still waiting after 10 s' : result(answer)).toBe('ok');
    console.log(`F_SETLKW on node 3 granted ${Date.now() - unlocked} ms after node 2's unlock`);
    expect(['EAGAIN', 'EACCES']).toContain(await a.lock(fa, 'r', 59, 1));
    for (const locker of [a, b]) locker.kill();
  });

  it('OFD locks conflict across nodes, with each other and with POSIX locks', async () => {
    const file = fresh();
    const [a, b] = await Promise.all([Locker.start('node2'), Locker.start('node3')]);
    const fa = await a.open(cluster.path(2, file));
    const fb = await b.open(cluster.path(3, file));
    expect(await a.lock(fa, 'w', 0, 10, { kind: 'ofd' })).toBe('ok');
    expect(await a.lock(fa, 'r', 20, 10, { kind: 'ofd' })).toBe('ok');
    expect(await b.lock(fb, 'w', 5, 1, { kind: 'ofd' })).toBe('EAGAIN');
    expect(await b.lock(fb, 'r', 5, 1)).toBe('EAGAIN');
    expect(await b.lock(fb, 'r', 25, 1, { kind: 'ofd' })).toBe('ok');
    expect(await b.lock(fb, 'w', 10, 10, { kind: 'ofd' })).toBe('ok');
    const seen = await b.ask({ op: 'getlk', fd: fb, kind: 'ofd', type: 'w', start: 0, len: 1 });
    expect([seen.type, seen.start, seen.len, seen.pid]).toEqual(['w', 0, 10, -1]);
    // a second descriptor of the same process is another owner of OFD locks
    const fb2 = await b.open(cluster.path(3, file));
    expect(await b.lock(fb2, 'w', 15, 1, { kind: 'ofd' })).toBe('EAGAIN');
    for (const locker of [a, b]) locker.kill();
  });
});

describe('locks and data', () => {
  // read-increment-write of a counter under a lock, the descriptor kept open:
  // taking a lock must drop stale cached pages, releasing it must commit the writes
  const counter = `
import fcntl, os, sys
path, count, how = sys.argv[1], int(sys.argv[2]), sys.argv[3]
fd = os.open(path, os.O_RDWR)
seen = []
for _ in range(count):
    if how == 'flock':
        fcntl.flock(fd, fcntl.LOCK_EX)
    else:
        fcntl.lockf(fd, fcntl.LOCK_EX, 64, 0)
    value = int(os.pread(fd, 20, 0) or b'0')
    seen.append(value)
    os.pwrite(fd, b'%020d' % (value + 1), 0)
    # a record of who took which value, further in the file
    os.pwrite(fd, b'%08d' % value, 4096 + 8 * value)
    if how == 'flock':
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN, 64, 0)
os.close(fd)
print(' '.join(map(str, seen)))
`;
  for (const how of ['lockf', 'flock']) {
    it(`a counter incremented under ${how} by a process on node 2 and one on node 3, descriptors kept open: no increment lost`, async () => {
      const file = fresh('counter');
      const count = 150;
      const runs = [2, 3].map((id) => child('python3', ['-c', counter, cluster.path(id, file), String(count), how]));
      const codes = await within(Promise.all(runs.map((r) => r.exit)), 100_000);
      expect(codes).toEqual([0, 0]);
      const seen = runs.flatMap((r) => r.stdout().trim().split(' ').map(Number)).sort((x, y) => x - y);
      expect(seen).toEqual(Array.from({ length: 2 * count }, (_, i) => i));
      expect(fs.readFileSync(cluster.path(1, file)).subarray(0, 20).toString()).toBe(String(2 * count).padStart(20, '0'));
    }, 110_000);
  }
});

describe('locks of nodes that die or restart', () => {
  it('the locks of a node killed with kill -9 are released within a bounded time, then granted elsewhere', async () => {
    const file = fresh();
    const other = fresh();
    const holder = await Locker.start('node2');
    const fh = await holder.open(cluster.path(2, file));
    const fo = await holder.open(cluster.path(2, other));
    expect(await holder.lock(fh, 'w', 0, 0)).toBe('ok');
    expect(await holder.flock(fo, 'ex')).toBe('ok');
    const taker = await Locker.start('node3');
    const ft = await taker.open(cluster.path(3, file));
    const fto = await taker.open(cluster.path(3, other));
    expect(['EAGAIN', 'EACCES']).toContain(await taker.lock(ft, 'w', 0, 1));
    await cluster.kill9(2);
    const killed = Date.now();
    const posix = await poll(async () => (await taker.lock(ft, 'w', 0, 0)) === 'ok', 15_000);
    const flock = await poll(async () => (await taker.flock(fto, 'ex')) === 'ok', 15_000 - (Date.now() - killed));
    console.log(`locks of the killed node 2 granted on node 3 ${posix} ms (fcntl) and ${Date.now() - killed} ms (flock) after kill -9`);
    expect(posix).not.toBeNull();
    expect(flock).not.toBeNull();
    holder.kill();
    taker.kill();
    await cluster.mount(2);
  }, 60_000);
});
