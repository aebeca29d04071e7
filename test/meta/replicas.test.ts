// Stale marking in the metadata store (real level database): an object never
// loses its last good copy, a commit whose copies are all stale fails, a
// directory's number of copies survives changes and a reopen, and repair's
// layout change is refused when the file changed meanwhile.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { errnoOf } from '../harness/posix.js';
import { S_IFDIR, S_IFREG } from '../../src/common/mode.js';
import { goodReplicas, replicasOf } from '../../src/layout/replicas.js';
import { Namespace } from '../../src/meta/namespace.js';
import { FIRST_INO, ROOT_INO } from '../../src/meta/records.js';
import { MetaStore } from '../../src/meta/store.js';

const time = { sec: 1, nsec: 0 };
const NODES = [1, 2, 3];
let dir: string;
let store: MetaStore;
let ns: Namespace;

beforeEach(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kdfs-replicas-'));
  await MetaStore.create(
    path.join(dir, 'meta'),
    { fsid: randomUUID(), nextIno: FIRST_INO, defaultPolicy: { unitBytes: 0, count: 0, replicas: 2 }, rootNodeId: 1, createdSec: 1 },
    { attr: { ino: ROOT_INO, mode: S_IFDIR | 0o755, uid: 0, gid: 0, nlink: 2, size: 4096, rdev: 0, atime: time, mtime: time, ctime: time }, layout: null, target: '', parent: ROOT_INO, entries: 0, policy: null, xattrs: {}, inlined: false, inlineData: Buffer.alloc(0) },
    { id: 1, uuid: randomUUID(), address: '127.0.0.1:1', dataAddress: '', joinedSec: 1 },
  );
  store = await MetaStore.open(path.join(dir, 'meta'));
  ns = new Namespace(store);
  await ns.opensAnnounced();
});

afterEach(async () => {
  await store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});


async function file(name: string): Promise<number> {
  const { inode } = await ns.create({ entry: { ino: ROOT_INO, name }, mode: S_IFREG | 0o644, uid: 0, gid: 0 }, NODES, store.fs.defaultPolicy);
  // spilled to its objects
  await ns.commitWrite(inode.attr.ino, 1 << 20, time, false, null);
  return inode.attr.ino;
}

const layoutOf = async (ino: number) => (await store.run((tx) => tx.mustInode(ino), false)).layout!;

describe('stale copies in the metadata', () => {
  it('places two copies of each object on two nodes, and marks one stale with a commit', async () => {
    const ino = await file('a');
    const layout = await layoutOf(ino);
    for (let object = 0; object < 3; object++) {
      const nodes = replicasOf(layout, object).map((r) => r.node);
      expect(nodes).toHaveLength(2);
      expect(new Set(nodes).size).toBe(2);
    }
    await ns.commitWrite(ino, 2 << 20, time, false, null, undefined, null, undefined, [1]);
    const after = await layoutOf(ino);
    expect(after.stale).toEqual([1]);
    expect(goodReplicas(after, 0).map((r) => r.replica)).toEqual([0]);
    expect(store.needsRepair.has(ino)).toBe(true);
  });

  it('never leaves an object without a good copy: a report keeps the last, a commit fails', async () => {
    const ino = await file('b');
    await ns.markStale(ino, [0, 1]);
    const layout = await layoutOf(ino);
    expect(goodReplicas(layout, 0)).toHaveLength(1);
    // the writer's data went only to copies now all stale: not stored
    const remaining = goodReplicas(layout, 0)[0].replica;
    expect(await errnoOf(ns.commitWrite(ino, 3 << 20, time, false, null, undefined, null, undefined, [remaining]))).toBe('EIO');
    expect((await ns.getattr({ ino })).size).toBe(1 << 20);
  });

  it('keeps a directory\'s number of copies across changes and a reopen', async () => {
    await ns.create({ entry: { ino: ROOT_INO, name: 'd' }, mode: S_IFDIR | 0o755, uid: 0, gid: 0 }, NODES, store.fs.defaultPolicy);
    await ns.setStripe({ path: '/d' }, { unitBytes: 0, count: 0, replicas: 3 }, NODES, store.fs.defaultPolicy);
    for (const name of ['x', 'y']) await ns.create({ entry: { path: `/d/${name}` }, mode: S_IFREG | 0o644, uid: 0, gid: 0 }, NODES, store.fs.defaultPolicy);
    await store.close();
    store = await MetaStore.open(path.join(dir, 'meta'));
    ns = new Namespace(store);
    await ns.create({ entry: { path: '/d/z' }, mode: S_IFREG | 0o644, uid: 0, gid: 0 }, NODES, store.fs.defaultPolicy);
    for (const name of ['x', 'y', 'z']) {
      const { layout } = await ns.getStripe({ path: `/d/${name}` }, NODES, store.fs.defaultPolicy);
      expect(layout!.replicas).toBe(3);
    }
  });

  it('refuses repair\'s new layout when the file changed while its copies were made', async () => {
    const ino = await file('c');
    await ns.markStale(ino, [1]);
    const before = await store.run((tx) => tx.mustInode(ino), false);
    const repaired = { ...before.layout!, stale: [] };
    await ns.commitWrite(ino, 1 << 20, { sec: 5, nsec: 0 }, false, null);
    expect(await ns.replaceLayout(ino, before.layout!, repaired, { size: before.attr.size, ctime: before.attr.ctime })).toBe(false);
    const now = await store.run((tx) => tx.mustInode(ino), false);
    expect(await ns.replaceLayout(ino, now.layout!, repaired, { size: now.attr.size, ctime: now.attr.ctime })).toBe(true);
    expect((await layoutOf(ino)).stale).toEqual([]);
    expect(store.needsRepair.has(ino)).toBe(false);
  });
});
