// Three nodes, one namespace: data striped over all of them, changes made on one
// node seen from the others, all of it intact across unmount and remount.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, command, objectBytes } from '../harness/cluster.js';

const MiB = 1024 * 1024;


describe('a three-node cluster', () => {
  let cluster: Cluster;
  const data = randomBytes(24 * MiB);

  beforeAll(async () => {
    cluster = await Cluster.start({ nodes: 3 });
  });
  afterAll(async () => {
    await cluster?.stop();
  });

  it('mounts every node, one with mount -t kdfs', async () => {
    await cluster.unmount(3);
    const result = await command('mount', ['-t', 'kdfs', cluster.nodeDir(3), cluster.mnt(3)]);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const mounts = fs.readFileSync('/proc/mounts', 'utf8');
    for (let id = 1; id <= 3; id++) expect(mounts).toContain(` ${cluster.mnt(id)} fuse.kdfs `);
  });

  it('reads back through nodes 2 and 3 what node 1 wrote, striped over all nodes', async () => {
    const before = [1, 2, 3].map((id) => objectBytes(cluster.nodeDir(id)));
    fs.writeFileSync(cluster.path(1, 'big'), data);
    for (const id of [2, 3]) {
      expect(fs.readFileSync(cluster.path(id, 'big')).equals(data)).toBe(true);
    }
    const grown = [1, 2, 3].map((id, i) => objectBytes(cluster.nodeDir(id)) - before[i]);
    for (const bytes of grown) expect(bytes).toBeGreaterThanOrEqual(4 * MiB);

    const stripe = await cluster.kdfs(['getstripe', cluster.path(2, 'big')]);
    expect(stripe.code).toBe(0);
    expect(stripe.stdout).toMatch(/unit: 1048576/);
    expect(stripe.stdout).toMatch(/count: 3/);
    expect(stripe.stdout).toMatch(/replicas: 2/);
    // each object's two copies on two nodes, every node holding two copies
    const objects = [...stripe.stdout.matchAll(/^\s+\d+\s+node (\d+) good, node (\d+) good$/gm)].map((m) => [Number(m[1]), Number(m[2])]);
    expect(objects).toHaveLength(3);
    for (const [first, second] of objects) expect(first).not.toBe(second);
    expect(objects.map((o) => o[0]).sort()).toEqual([1, 2, 3]);
    expect(objects.map((o) => o[1]).sort()).toEqual([1, 2, 3]);
  });

  it('shows a rename made on one node and a nanosecond mtime set on another from the third', async () => {
    fs.writeFileSync(cluster.path(1, 'before'), 'renamed content');
    fs.mkdirSync(cluster.path(1, 'dir'));
    fs.renameSync(cluster.path(2, 'before'), cluster.path(2, 'dir', 'after'));
    const touch = await command('touch', ['-m', '-d', '2001-02-03 04:05:06.123456789', cluster.path(1, 'dir', 'after')]);
    expect(touch.code).toBe(0);
    // at once: no cache to wait out
    expect(fs.existsSync(cluster.path(3, 'before'))).toBe(false);
    expect(fs.readFileSync(cluster.path(3, 'dir', 'after'), 'utf8')).toBe('renamed content');
    const st = fs.statSync(cluster.path(3, 'dir', 'after'), { bigint: true });
    expect(st.mtimeNs).toBe(981173106123456789n);
  });

  it('keeps all of it across unmounting and remounting every node', async () => {
    for (const id of [3, 2, 1]) await cluster.unmount(id);
    for (const id of [1, 2, 3]) await cluster.mount(id);
    for (const id of [1, 2, 3]) {
      expect(fs.readFileSync(cluster.path(id, 'big')).equals(data)).toBe(true);
      expect(fs.readFileSync(cluster.path(id, 'dir', 'after'), 'utf8')).toBe('renamed content');
      expect(fs.statSync(cluster.path(id, 'dir', 'after'), { bigint: true }).mtimeNs).toBe(981173106123456789n);
    }
  });

  it('reports every node up with its space in kdfs status', async () => {
    const status = await cluster.kdfs(['status', cluster.path(2)]);
    expect(status.code).toBe(0);
    const rows = status.stdout.trim().split('\n\n')[0].split('\n').slice(1).map((line) => line.split(/\s+/));
    expect(rows.map((r) => r[0])).toEqual(['1', '2', '3']);
    for (const row of rows) expect(row[2]).toBe('up');
  });
});
