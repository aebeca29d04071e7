// When cluster-wide file locks go: with the process that exits or closes a
// descriptor of the file (POSIX locks), with a node process restarted after
// kill -9 (at once, not after the lease), and not with a restart of the root
// node (the holders reclaim them: never two holders). Locks are taken by
// test/tools/locker.py processes, one JSON command a line.
import { describe, expect, it } from 'vitest';
import type { Cluster } from '../harness/cluster.js';
import { Locker, PENDING, lockTestCluster, poll, within } from '../harness/locker.js';

let cluster: Cluster;
const fresh = lockTestCluster((started) => (cluster = started));
/** How long the kernel's release of a closed file may take to reach its node. */
const RELEASE_MS = 5000;

describe('POSIX locks go with their process', () => {
  it('a process\'s POSIX locks go when it exits (killed), at once', async () => {
    const file = fresh();
    const [a, b] = await Promise.all([Locker.start('node2'), Locker.start('node3')]);
    const fa = await a.open(cluster.path(2, file));
    const fb = await b.open(cluster.path(3, file));
    expect(await a.lock(fa, 'w', 0, 10)).toBe('ok');
    expect(await a.lock(fa, 'r', 20, 0)).toBe('ok');
    expect(['EAGAIN', 'EACCES']).toContain(await b.lock(fb, 'w', 0, 1));
    a.kill();
    expect(await within(a.gone, 10_000)).not.toBe(PENDING);
    expect(await b.lock(fb, 'w', 0, 0)).toBe('ok');
    b.kill();
  });

  it('closing the locking descriptor drops the process\'s POSIX locks, at once', async () => {
    const file = fresh();
    const [a, b] = await Promise.all([Locker.start('node2'), Locker.start('node3')]);
    const fa = await a.open(cluster.path(2, file));
    const fb = await b.open(cluster.path(3, file));
    expect(await a.lock(fa, 'w', 0, 10)).toBe('ok');
    expect(['EAGAIN', 'EACCES']).toContain(await b.lock(fb, 'w', 0, 1));
    expect(await a.ask({ op: 'close', fd: fa })).toEqual({ ok: true });
    expect(await b.lock(fb, 'w', 0, 10)).toBe('ok');
    for (const locker of [a, b]) locker.kill();
  });

  it('closing any other descriptor of the file drops the process\'s POSIX locks too (fcntl(2)), not its OFD locks', async () => {
    const file = fresh();
    const [a, b] = await Promise.all([Locker.start('node2'), Locker.start('node3')]);
    const fa = await a.open(cluster.path(2, file));
    const fb = await b.open(cluster.path(3, file));
    expect(await a.lock(fa, 'w', 0, 10)).toBe('ok');
    expect(await a.lock(fa, 'w', 100, 10, { kind: 'ofd' })).toBe('ok');
    expect(['EAGAIN', 'EACCES']).toContain(await b.lock(fb, 'w', 0, 10));
    const second = await a.open(cluster.path(2, file), 'r');
    expect(await a.ask({ op: 'close', fd: second })).toEqual({ ok: true });
    expect(await b.lock(fb, 'w', 0, 10)).toBe('ok');
    expect(['EAGAIN', 'EACCES']).toContain(await b.lock(fb, 'w', 105, 1));
    // the process exits: its OFD lock goes with its last descriptor, whose
    // release the kernel sends after the exit, not before (FUSE_RELEASE is
    // asynchronous), so within moments of it rather than at once
    a.kill();
    expect(await within(a.gone, 10_000)).not.toBe(PENDING);
    expect(await poll(async () => (await b.lock(fb, 'w', 105, 1)) === 'ok', RELEASE_MS, 20)).not.toBeNull();
    b.kill();
  });
});

describe('locks of nodes that restart', () => {
  it('a node restarted after kill -9 loses its old locks at once; its new ones outlive the old session', async () => {
    const file = fresh();
    const holder = await Locker.start('node3');
    const fh = await holder.open(cluster.path(3, file));
    expect(await holder.lock(fh, 'w', 0, 0)).toBe('ok');
    expect(await holder.flock(fh, 'ex')).toBe('ok');
    const taker = await Locker.start('node2');
    const ft = await taker.open(cluster.path(2, file));
    expect(['EAGAIN', 'EACCES']).toContain(await taker.lock(ft, 'w', 0, 1));
    await cluster.kill9(3);
    const killed = Date.now();
    await cluster.mount(3);
    const remounted = Date.now() - killed;
    // no waiting for the lease: the restarted node's old locks are gone once it is back
    const posix = await taker.lock(ft, 'w', 0, 0);
    const flock = await taker.flock(ft, 'ex');
    console.log(`node 3 back ${remounted} ms after kill -9; its locks: ${posix} (fcntl), ${flock} (flock) ${Date.now() - killed} ms after the kill`);
    expect([posix, flock]).toEqual(['ok', 'ok']);
    expect(await taker.lock(ft, 'u', 0, 0)).toBe('ok');
    expect(await taker.flock(ft, 'un')).toBe('ok');
    // the new node 3 takes a lock: the end of its predecessor's session must not take it away
    const newHolder = await Locker.start('node3-new');
    const fn = await newHolder.open(cluster.path(3, file));
    expect(await newHolder.lock(fn, 'w', 0, 0)).toBe('ok');
    const deadline = killed + 6000; // past the lease of the killed node's session
    while (Date.now() < deadline) {
      expect(['EAGAIN', 'EACCES']).toContain(await taker.lock(ft, 'w', 0, 1));
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    for (const locker of [holder, taker, newHolder]) locker.kill();
  }, 60_000);

  it('after the root node restarts, the holders keep their locks: never two holders', async () => {
    const file = fresh();
    const holder = await Locker.start('node2');
    const fh = await holder.open(cluster.path(2, file));
    expect(await holder.lock(fh, 'w', 0, 100)).toBe('ok');
    expect(await holder.flock(fh, 'ex')).toBe('ok');
    // the same owner locks and unlocks another range many times meanwhile (as
    // SQLite does): the node once forgot the oldest of its 64 last requests,
    // the lock held from the start among them
    for (let i = 0; i < 100; i++) {
      expect(await holder.lock(fh, 'w', 200, 10)).toBe('ok');
      expect(await holder.lock(fh, 'u', 200, 10)).toBe('ok');
    }
    const taker = await Locker.start('node3');
    const ft = await taker.open(cluster.path(3, file));
    await cluster.kill9(1);
    await cluster.mount(1);
    // whether the service is still waiting for the reclaims or not, the locks are node 2's
    expect(['EAGAIN', 'EACCES']).toContain(await taker.lock(ft, 'w', 50, 1, {}));
    expect(await taker.flock(ft, 'ex')).toBe('EAGAIN');
    // a range nobody holds is granted (at the latest once the reclaim period is over)
    const free = await poll(async () => (await taker.lock(ft, 'w', 100, 10)) === 'ok', 25_000);
    expect(free).not.toBeNull();
    expect(['EAGAIN', 'EACCES']).toContain(await taker.lock(ft, 'w', 99, 1));
    expect(await taker.flock(ft, 'ex')).toBe('EAGAIN');
    // and once node 2 lets go, node 3 gets them
    expect(await holder.lock(fh, 'u', 0, 100)).toBe('ok');
    expect(await holder.flock(fh, 'un')).toBe('ok');
    expect(await taker.lock(ft, 'w', 0, 100)).toBe('ok');
    expect(await taker.flock(ft, 'ex')).toBe('ok');
    holder.kill();
    taker.kill();
  }, 90_000);
});
