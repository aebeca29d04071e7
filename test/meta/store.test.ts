// The metadata store on a real level database, on a disk that fills up.
import { randomUUID } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { errnoOf } from '../harness/posix.js';
import { S_IFDIR, S_IFREG } from '../../src/common/mode.js';
import { Namespace } from '../../src/meta/namespace.js';
import { FIRST_INO, ROOT_INO } from '../../src/meta/records.js';
import { MetaStore } from '../../src/meta/store.js';
import { makeLayout } from '../../src/layout/placement.js';

const time = { sec: 1, nsec: 0 };
let dir: string;

async function createStore(location: string): Promise<void> {
  await MetaStore.create(
    location,
    { fsid: randomUUID(), nextIno: FIRST_INO, defaultPolicy: null, rootNodeId: 1, createdSec: 1 },
    { attr: { ino: ROOT_INO, mode: S_IFDIR | 0o755, uid: 0, gid: 0, nlink: 2, size: 4096, rdev: 0, atime: time, mtime: time, ctime: time }, layout: null, target: '', parent: ROOT_INO, entries: 0, policy: null, xattrs: {}, inlined: false, inlineData: Buffer.alloc(0) },
    { id: 1, uuid: randomUUID(), address: '127.0.0.1:1', dataAddress: '', joinedSec: 1 },
  );
}


beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kdfs-store-'));
});
afterEach(() => {
  spawnSync('umount', [dir], { stdio: 'ignore' });
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('metadata store', () => {
  it('keeps every change across a reopen, and rename and unlink keep counts right', async () => {
    await createStore(path.join(dir, 'meta'));
    let store = await MetaStore.open(path.join(dir, 'meta'));
    let ns = new Namespace(store);
    await ns.opensAnnounced();
    await ns.create({ entry: { ino: ROOT_INO, name: 'a' }, mode: S_IFDIR | 0o755, uid: 0, gid: 0 }, [1], null);
    await ns.create({ entry: { path: '/a/f' }, mode: S_IFREG | 0o644, uid: 0, gid: 0 }, [1], null);
    await ns.create({ entry: { ino: ROOT_INO, name: 'b' }, mode: S_IFDIR | 0o755, uid: 0, gid: 0 }, [1], null);
    await ns.rename({ path: '/a' }, { path: '/b/a' });
    await ns.link({ path: '/b/a/f' }, { ino: ROOT_INO, name: 'g' });
    await store.close();
    store = await MetaStore.open(path.join(dir, 'meta'));
    ns = new Namespace(store);
    await ns.opensAnnounced();
    expect((await ns.getattr({ path: '/b/a/f' })).nlink).toBe(2);
    expect((await ns.getattr({ path: '/b' })).nlink).toBe(3);
    expect((await ns.getattr({ path: '/' })).nlink).toBe(3);
    expect((await ns.readDir({ path: '/' }, '', 10)).entries.map((e) => e.name)).toEqual(['b', 'g']);
    await ns.remove({ path: '/g' }, false);
    expect((await ns.getattr({ path: '/b/a/f' })).nlink).toBe(1);
    expect(await errnoOf(ns.remove({ path: '/b' }, true))).toBe('ENOTEMPTY');
    await store.close();
  });

  it('takes a delegated create it made already as made, after a rename or an unlink of its file too: never a second name, nor its inode written over', async () => {
    await createStore(path.join(dir, 'meta'));
    const store = await MetaStore.open(path.join(dir, 'meta'));
    try {
      const ns = new Namespace(store);
      await ns.opensAnnounced();
      const ino = await ns.reserveInos(2, 16);
      const layout = makeLayout(ino, null, null, { nodeIds: [1], domainOf: () => '', writerNodeId: 1, weightsOf: () => null });
      const create = { entry: { ino: ROOT_INO, name: 'x' }, mode: S_IFREG | 0o644, uid: 0, gid: 0, ino, layout, time };
      expect(await ns.publish([create], 2, [1])).toEqual([]);
      await ns.commitWrite(ino, 5, time, false, Buffer.from('hello'));
      // the same create again (a copy that was on its way in another call)
      expect(await ns.publish([create], 2, [1])).toEqual([]);
      await ns.rename({ path: '/x' }, { path: '/y' });
      expect(await ns.publish([create], 2, [1])).toEqual([]);
      expect((await ns.readDir({ path: '/' }, '', 10)).entries.map((e) => e.name)).toEqual(['y']);
      const attr = await ns.getattr({ path: '/y' });
      expect([attr.ino, attr.size, attr.nlink]).toEqual([ino, 5, 1]);
      // unlinked while node 2 holds it open: the inode stays, and so does its absence from the directory
      await ns.remove({ path: '/y' }, false);
      expect(await ns.publish([create], 2, [1])).toEqual([]);
      expect((await ns.readDir({ path: '/' }, '', 10)).entries).toEqual([]);
    } finally {
      await store.close();
    }
  });

  it('fails with ENOSPC when its disk is full, keeps nothing half done, and recovers', async () => {
    const mounted = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=8m', 'kdfs-store-test', dir]);
    expect(mounted.status).toBe(0);
    await createStore(path.join(dir, 'meta'));
    const store = await MetaStore.open(path.join(dir, 'meta'));
    const ns = new Namespace(store);
    await ns.opensAnnounced();
    // fill the disk
    const filler = path.join(dir, 'filler');
    const fd = fs.openSync(filler, 'w');
    try {
      for (;;) fs.writeSync(fd, Buffer.alloc(64 * 1024, 1));
    } catch (err) {
      expect((err as NodeJS.ErrnoException).code).toBe('ENOSPC');
    }
    fs.closeSync(fd);
    const outcomes = new Map<string, string>();
    for (let i = 0; i < 2000 && ![...outcomes.values()].includes('ENOSPC'); i++) {
      const name = `f${i}-${'x'.repeat(200)}`;
      outcomes.set(name, await errnoOf(ns.create({ entry: { ino: ROOT_INO, name }, mode: S_IFREG | 0o644, uid: 0, gid: 0 }, [1], null)));
    }
    expect([...outcomes.values()]).toContain('ENOSPC');
    fs.rmSync(filler);
    // after the reopen interval, the store works again
    let again = 'ENOSPC';
    for (let tries = 0; tries < 50 && again !== 'ok'; tries++) {
      again = await errnoOf(ns.create({ entry: { ino: ROOT_INO, name: 'after' }, mode: S_IFREG | 0o644, uid: 0, gid: 0 }, [1], null));
      if (again !== 'ok') await new Promise((resolve) => setTimeout(resolve, 100));
    }
    expect(again).toBe('ok');
    // what succeeded is there, what failed is not
    const listed = new Set<string>();
    for (let after = '', more = true; more;) {
      const page = await ns.readDir({ ino: ROOT_INO }, after, 500);
      for (const e of page.entries) listed.add(e.name);
      more = page.more;
      after = page.entries.at(-1)?.name ?? '';
    }
    for (const [name, outcome] of outcomes) expect(listed.has(name)).toBe(outcome === 'ok');
    expect((await ns.getattr({ ino: ROOT_INO })).nlink).toBe(2);
    await store.close();
  });
});
