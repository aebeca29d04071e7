// mount.kdfs: how a node starts and stops, and what it refuses.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readSuperblock } from '../../src/format/superblock.js';
import { CLI, Cluster, command, sweep, testDir, waitGone } from '../harness/cluster.js';

let cluster: Cluster | null = null;
afterEach(async () => {
  await cluster?.stop();
  cluster = null;
});

const mounted = (mountPoint: string) => fs.readFileSync('/proc/mounts', 'utf8').includes(` ${mountPoint} fuse.kdfs `);

/** mount.kdfs expected to refuse: non-zero exit, one line, nothing mounted. */
async function refused(args: string[], mountPoint: string, pattern: RegExp): Promise<void> {
  const result = await command(CLI.mount, args);
  expect(result.code).not.toBe(0);
  expect(result.stderr.trim().split('\n')).toHaveLength(1);
  expect(result.stderr).toMatch(pattern);
  expect(mounted(mountPoint)).toBe(false);
}

describe('mount.kdfs', () => {
  it('stops cleanly on umount, fusermount -u and SIGTERM', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3 }));
    fs.writeFileSync(c.path(3, 'f'), 'kept');
    const stops: [number, () => Promise<unknown>][] = [
      [3, () => command('umount', [c.mnt(3)])],
      [2, () => command('fusermount', ['-u', c.mnt(2)])],
      [1, async () => process.kill(c.pid(1)!, 'SIGTERM')],
    ];
    for (const [id, stop] of stops) {
      const pid = c.pid(id)!;
      await stop();
      expect(await waitGone(pid)).toBe(true);
      expect(mounted(c.mnt(id))).toBe(false);
      expect(fs.existsSync(path.join(c.nodeDir(id), 'kdfs.run'))).toBe(false);
    }
    for (const id of [1, 2, 3]) await c.mount(id);
    expect(fs.readFileSync(c.path(2, 'f'), 'utf8')).toBe('kept');
  });

  it('stays in the foreground with -f, until SIGTERM', async () => {
    const c = (cluster = await Cluster.start({ nodes: 2 }));
    await c.unmount(2);
    const child = spawn(CLI.mount, ['-f', c.nodeDir(2), c.mnt(2)], { stdio: ['ignore', 'ignore', 'pipe'] });
    // the node says when it is mounted
    await new Promise<void>((resolve, reject) => {
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => {
        stderr += chunk.toString();
        if (stderr.includes('mounted at')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`exited with ${code}: ${stderr}`)));
    });
    expect(mounted(c.mnt(2))).toBe(true);
    fs.writeFileSync(c.path(2, 'fg'), 'foreground');
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    child.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(mounted(c.mnt(2))).toBe(false);
    expect(fs.readFileSync(c.path(1, 'fg'), 'utf8')).toBe('foreground');
  });

  it('refuses bad input with one line and mounts nothing', async () => {
    const c = (cluster = await Cluster.start({ nodes: 2 }));
    await c.unmount(2);
    const empty = path.join(c.dir, 'empty');
    fs.mkdirSync(empty);
    await refused([empty, c.mnt(2)], c.mnt(2), /not formatted/);
    await refused([c.nodeDir(2), path.join(c.dir, 'nowhere')], path.join(c.dir, 'nowhere'), /no such directory/);
    await refused([c.nodeDir(2)], c.mnt(2), /usage/);
    await refused(['-o', 'colour=blue', c.nodeDir(2), c.mnt(2)], c.mnt(2), /unknown mount option/);
    await refused([c.nodeDir(1), c.mnt(2)], c.mnt(2), /already served by process/);
    // a corrupted superblock
    const copy = path.join(c.dir, 'corrupt');
    fs.mkdirSync(copy);
    const frame = fs.readFileSync(path.join(c.nodeDir(2), 'superblock'));
    frame[frame.length - 12] ^= 0xff;
    fs.writeFileSync(path.join(copy, 'superblock'), frame);
    await refused([copy, c.mnt(2)], c.mnt(2), /checksum/);
    // and the node mounts fine afterwards
    await c.mount(2);
  });

  it('refuses a node of another file system, and a second directory for one node id', async () => {
    const c = (cluster = await Cluster.start({ nodes: 2 }));
    // a directory formatted as node 2 of this cluster (with a token the administrator made for node 2), but not the one that joined
    const impostor = path.join(c.dir, 'impostor');
    fs.mkdirSync(impostor);
    const token = path.join(c.dir, 'impostor.token');
    expect((await c.kdfs(['token', 'create', '--node-id', '2', '--out', token, '--dir', c.nodeDir(1)])).code).toBe(0);
    expect((await command(CLI.mkfs, ['--node-id', '2', '--token', token, '--root', c.rootAddress, impostor, '1'])).code).toBe(0);
    fs.mkdirSync(path.join(c.dir, 'mnt-impostor'));
    await refused([impostor, path.join(c.dir, 'mnt-impostor')], path.join(c.dir, 'mnt-impostor'), /node id 2 is already a member/);

    // a directory formatted with a token of another file system's root, told this cluster's root: not let in
    const other = path.join(c.dir, 'other-root');
    fs.mkdirSync(other);
    expect((await command(CLI.mkfs, ['--node-id', '1', '--listen', '127.0.0.1:1', other, '1'])).code).toBe(0);
    const foreignToken = path.join(c.dir, 'foreign.token');
    expect((await c.kdfs(['token', 'create', '--node-id', '3', '--out', foreignToken, '--dir', other])).code).toBe(0);
    const stranger = path.join(c.dir, 'stranger');
    fs.mkdirSync(stranger);
    expect((await command(CLI.mkfs, ['--token', foreignToken, '--root', c.rootAddress, stranger, '1'])).code).toBe(0);
    fs.mkdirSync(path.join(c.dir, 'mnt-stranger'));
    await refused([stranger, path.join(c.dir, 'mnt-stranger')], path.join(c.dir, 'mnt-stranger'), /another kDFS file system/);
    const members = JSON.parse((await c.kdfs(['status', '--json', '--dir', c.dir])).stdout) as { nodes: { id: number }[] };
    expect(members.nodes.map((n) => n.id)).toEqual([1, 2]);

    // the root formatted anew: node 2 belongs to the old file system
    for (const id of [2, 1]) await c.unmount(id);
    const oldFsid = (await readSuperblock(c.nodeDir(2))).fsid;
    expect((await command(CLI.mkfs, ['--node-id', '1', '--listen', c.rootAddress, '--force', c.nodeDir(1), '1'])).code).toBe(0);
    await c.mount(1);
    await refused([c.nodeDir(2), c.mnt(2)], c.mnt(2), /another kDFS file system/);
    expect((await readSuperblock(c.nodeDir(2))).fsid).toBe(oldFsid);
  });
});

describe('a run file left by a killed node', () => {
  it('is ignored when its pid now belongs to another process, which nothing signals', async () => {
    const c = (cluster = await Cluster.start({ nodes: 2 }));
    await c.kill9(2);
    // another process now has a pid the run file names
    const bystander = spawn('sleep', ['600'], { stdio: 'ignore' });
    const runFile = path.join(c.nodeDir(2), 'kdfs.run');
    const info = JSON.parse(fs.readFileSync(runFile, 'utf8')) as { pid: number };
    fs.writeFileSync(runFile, JSON.stringify({ ...info, pid: bystander.pid }));
    try {
      // kdfs down stops node 1, clears node 2's stale mount, and signals nobody else
      const down = await command(CLI.kdfs, ['down', '--dir', c.dir]);
      expect(down.code).toBe(0);
      expect(down.stdout).toMatch(/1 node stopped/);
      expect(mounted(c.mnt(2))).toBe(false);
      expect(bystander.exitCode).toBeNull();
      expect(bystander.signalCode).toBeNull();
      // and the directory is not taken to be in use
      await c.mount(1);
      fs.writeFileSync(runFile, JSON.stringify({ ...info, pid: bystander.pid }));
      await c.mount(2);
      expect(fs.existsSync(c.path(2, '.'))).toBe(true);
    } finally {
      bystander.kill();
    }
  });
});

describe('kdfs up, status and down', () => {
  it('starts a local cluster, reports it, and stops it', async () => {
    const dir = testDir();
    try {
      const up = await command(CLI.kdfs, ['up', '--nodes', '2', '--dir', dir]);
      expect(up.stderr).toBe('');
      expect(up.code).toBe(0);
      expect(up.stdout).toContain(`mounted at ${path.join(dir, 'mnt')}`);
      expect(mounted(path.join(dir, 'mnt'))).toBe(true);
      expect(mounted(path.join(dir, 'mnt2'))).toBe(true);
      fs.writeFileSync(path.join(dir, 'mnt', 'hello'), 'world');
      expect(fs.readFileSync(path.join(dir, 'mnt2', 'hello'), 'utf8')).toBe('world');
      const status = await command(CLI.kdfs, ['status', '--dir', dir]);
      expect(status.code).toBe(0);
      expect(status.stdout).toMatch(/^1\s+127\.0\.0\.1:\d+\s+up\s/m);
      expect(status.stdout).toMatch(/^2\s+127\.0\.0\.1:\d+\s+up\s/m);
      const again = await command(CLI.kdfs, ['up', '--dir', dir]);
      expect(again.code).not.toBe(0);
      expect(again.stderr).toMatch(/already up/);
      const down = await command(CLI.kdfs, ['down', '--dir', dir]);
      expect(down.code).toBe(0);
      expect(mounted(path.join(dir, 'mnt'))).toBe(false);
      expect(mounted(path.join(dir, 'mnt2'))).toBe(false);
    } finally {
      await sweep(dir);
    }
  });
});
