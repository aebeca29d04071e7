// kdfs node revoke: a member locked out at once. Its own mount answers EACCES,
// its credentials open no gRPC call any more, the data key it held opens no
// agent (the handshake is refused), and the files keep every byte through the
// other nodes, its copies made again there.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CLI, Cluster, command } from '../harness/cluster.js';
import { sha256 } from '../harness/faults.js';
import { RpcClient } from '../../src/rpc/client.js';
import { readSuperblock } from '../../src/format/superblock.js';
import { loadCredentials } from '../../src/security/credentials.js';
import { useIdentity } from '../../src/security/tls.js';
import type { MetaMethods } from '../../src/rpc/messages.js';

let cluster: Cluster;

beforeAll(async () => {
  cluster = await Cluster.start({ nodes: 3, replicas: 2 });
}, 120_000);

afterAll(async () => {
  await cluster?.stop();
});

describe('local users', () => {
  it('go through the mount only: node directories and administrative commands are root\'s, the mount is everyone\'s', async () => {
    const asNobody = (...args: string[]) => command('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', ...args]);
    fs.mkdirSync(cluster.path(1, 'shared'), { mode: 0o1777 });
    fs.chmodSync(cluster.path(1, 'shared'), 0o1777);
    const wrote = await asNobody('sh', '-c', `echo mine > ${cluster.path(2, 'shared', 'nobody')} && cat ${cluster.path(3, 'shared', 'nobody')}`);
    expect(wrote.code, wrote.stderr).toBe(0);
    expect(wrote.stdout).toBe('mine\n');
    for (const id of [1, 2]) {
      const listed = await asNobody('ls', cluster.nodeDir(id));
      expect(listed.code).not.toBe(0);
      expect(listed.stderr).toMatch(/Permission denied/);
      for (const file of ['kdfs.log', 'superblock', 'credentials/node.key']) {
        expect((await asNobody('cat', path.join(cluster.nodeDir(id), file))).code, file).not.toBe(0);
      }
    }
    const setstripe = await asNobody(CLI.kdfs, 'setstripe', '--count', '1', cluster.path(1, 'shared'));
    expect(setstripe.code).toBe(1);
    expect(setstripe.stderr.trim().split('\n')).toHaveLength(1);
    expect(setstripe.stderr).toMatch(/run it as root/);
    const status = await asNobody(CLI.kdfs, 'status', '--dir', cluster.dir);
    expect(status.code).toBe(1);
  }, 60_000);
});

describe('kdfs node revoke', () => {
  it('locks a node out at once; the others keep every file', async () => {
    const files = new Map<string, string>();
    fs.mkdirSync(cluster.path(1, 'kept'));
    for (let i = 0; i < 8; i++) {
      const data = randomBytes(3 * 1024 * 1024);
      fs.writeFileSync(cluster.path(3, 'kept', `f${i}`), data);
      files.set(`f${i}`, sha256(data));
    }
    const sb = await readSuperblock(cluster.nodeDir(3));
    // node 3's credentials, as a thief of its directory would hold them
    useIdentity(loadCredentials(cluster.nodeDir(3), 3, sb.fsid));
    const asNode3 = new RpcClient<MetaMethods>(cluster.rootAddress, 'Meta', sb.fsid, 3000);
    try {
      expect((await asNode3.call('ListNodes', {})).nodes?.length).toBe(3);
      const revoked = await cluster.kdfs(['node', 'revoke', '3', '--dir', cluster.dir]);
      expect(revoked.code, revoked.stderr).toBe(0);
      // its next call is refused
      await expect(asNode3.call('ListNodes', {})).rejects.toThrow(/revoked|PERMISSION_DENIED/);
      const refused = fs.readFileSync(path.join(cluster.nodeDir(1), 'kdfs.log'), 'utf8');
      expect(refused).toMatch(/node 3 is revoked/);
    } finally {
      asNode3.close();
    }
    // its own mount: refused at once, not left waiting
    const startedMs = Date.now();
    expect(() => fs.readdirSync(cluster.path(3, 'kept'))).toThrow(/EACCES/);
    expect(() => fs.writeFileSync(cluster.path(3, 'kept', 'after'), 'x')).toThrow(/EACCES/);
    expect(Date.now() - startedMs).toBeLessThan(5000);
    // the others: every file whole, and new files go to nodes 1 and 2 only
    for (const id of [1, 2]) {
      for (const [name, digest] of files) expect(sha256(fs.readFileSync(cluster.path(id, 'kept', name))), `${name} via node ${id}`).toBe(digest);
    }
    fs.writeFileSync(cluster.path(2, 'kept', 'new'), randomBytes(2 * 1024 * 1024));
    const layout = JSON.parse((await cluster.kdfs(['getstripe', '--json', cluster.path(1, 'kept', 'new')])).stdout) as { objects: { replicas: { node: number }[] }[] };
    expect(layout.objects.flatMap((o) => o.replicas.map((r) => r.node))).not.toContain(3);
    // node 3's state says so
    const status = JSON.parse((await cluster.kdfs(['status', '--json', '--dir', cluster.dir])).stdout) as { nodes: { id: number; admin: string }[] };
    expect(status.nodes.find((n) => n.id === 3)?.admin).toBe('revoked');
  }, 120_000);
});
