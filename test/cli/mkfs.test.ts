// mkfs.kdfs: what it makes, and what it refuses without changing anything.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readSuperblock } from '../../src/format/superblock.js';
import { CLI, command } from '../harness/cluster.js';

let base: string;

/** Every file and directory under dir, with contents hashed: equal snapshots, equal bytes. */
function snapshot(dir: string): string[] {
  if (!fs.existsSync(dir)) return ['(absent)'];
  const out: string[] = [];
  const walk = (at: string) => {
    for (const name of fs.readdirSync(at).sort()) {
      const file = path.join(at, name);
      const st = fs.lstatSync(file);
      if (st.isDirectory()) {
        out.push(`${path.relative(dir, file)}/ ${st.mode}`);
        walk(file);
      } else {
        out.push(`${path.relative(dir, file)} ${st.mode} ${createHash('sha256').update(fs.readFileSync(file)).digest('hex')}`);
      }
    }
  };
  walk(dir);
  return out;
}

const mkfs = (args: string[], env: NodeJS.ProcessEnv = {}) => command(CLI.mkfs, args, env);

/** Runs mkfs expecting a refusal: non-zero exit, one line on stderr, dir unchanged. */
async function refused(args: string[], dir: string, pattern: RegExp, env: NodeJS.ProcessEnv = {}): Promise<void> {
  const before = snapshot(dir);
  const result = await mkfs(args, env);
  expect(result.code).not.toBe(0);
  expect(result.stderr.trim().split('\n')).toHaveLength(1);
  expect(result.stderr).toMatch(pattern);
  expect(snapshot(dir)).toEqual(before);
}

beforeEach(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'kdfs-mkfs-'));
});
afterEach(() => {
  fs.rmSync(base, { recursive: true, force: true });
});

describe('mkfs.kdfs', () => {
  it('formats a root node: superblock, object directories and the root meta-file', async () => {
    const dir = path.join(base, 'root');
    fs.mkdirSync(dir);
    const result = await mkfs(['--node-id', '1', '--listen', '127.0.0.1:7777', dir, '1']);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const sb = await readSuperblock(dir);
    expect(sb).toMatchObject({ nodeId: 1, rootNodeId: 1, listenAddress: '127.0.0.1:7777', formatVersion: 1 });
    expect(sb.fsid).toMatch(/^[0-9a-f-]{36}$/);
    expect(fs.readdirSync(path.join(dir, 'objects'))).toHaveLength(256);
    expect(fs.existsSync(path.join(dir, 'meta', 'CURRENT'))).toBe(true);
  });

  it('formats a node that is not the root, taking its id from KDFS_NODE_ID', async () => {
    const dir = path.join(base, 'n2');
    fs.mkdirSync(dir);
    const result = await mkfs(['--root', '127.0.0.1:7777', dir, '1'], { KDFS_NODE_ID: '2' });
    expect(result.code).toBe(0);
    const sb = await readSuperblock(dir);
    expect(sb).toMatchObject({ nodeId: 2, rootNodeId: 1, rootAddress: '127.0.0.1:7777', fsid: '' });
    expect(fs.existsSync(path.join(dir, 'meta'))).toBe(false);
  });

  it('refuses a relative path', async () => {
    fs.mkdirSync(path.join(base, 'rel'));
    const env = { PWD: base };
    const before = snapshot(path.join(base, 'rel'));
    const result = await command('sh', ['-c', `cd ${base} && ${CLI.mkfs} --node-id 1 rel 1`], env);
    expect(result.code).not.toBe(0);
    expect(result.stderr.trim().split('\n')).toHaveLength(1);
    expect(result.stderr).toMatch(/absolute/);
    expect(snapshot(path.join(base, 'rel'))).toEqual(before);
  });

  it('refuses a missing directory, and a file', async () => {
    await refused(['--node-id', '1', path.join(base, 'missing'), '1'], path.join(base, 'missing'), /no such directory/);
    fs.writeFileSync(path.join(base, 'file'), 'x');
    await refused(['--node-id', '1', path.join(base, 'file'), '1'], base, /not a directory/);
  });

  it('refuses a formatted directory unless --force, which formats it anew', async () => {
    const dir = path.join(base, 'twice');
    fs.mkdirSync(dir);
    expect((await mkfs(['--node-id', '1', dir, '1'])).code).toBe(0);
    fs.writeFileSync(path.join(dir, 'objects', 'aa', 'marker'), 'data');
    const fsid = (await readSuperblock(dir)).fsid;
    await refused(['--node-id', '1', dir, '1'], dir, /already formatted/);
    expect((await mkfs(['--node-id', '1', '--force', dir, '1'])).code).toBe(0);
    expect((await readSuperblock(dir)).fsid).not.toBe(fsid);
    expect(fs.existsSync(path.join(dir, 'objects', 'aa', 'marker'))).toBe(false);
  });

  it('refuses a non-empty directory that is not formatted, even with --force', async () => {
    const dir = path.join(base, 'full');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'precious'), 'keep me');
    await refused(['--node-id', '1', dir, '1'], dir, /not empty/);
    await refused(['--node-id', '1', '--force', dir, '1'], dir, /not empty/);
  });

  it('refuses ids that are not non-negative integers', async () => {
    const dir = path.join(base, 'ids');
    fs.mkdirSync(dir);
    for (const [node, root] of [['-1', '1'], ['abc', '1'], ['1.5', '1'], ['1', '-2'], ['1', 'x'], ['99999999999', '1']]) {
      await refused(['--node-id', node, dir, root], dir, /non-negative integer/);
    }
    await refused([dir, '1'], dir, /node id/, { KDFS_NODE_ID: 'two' });
    await refused([dir, '1'], dir, /node id/, { KDFS_NODE_ID: '' });
  });

  it('refuses a node that is not the root without --root', async () => {
    const dir = path.join(base, 'noroot');
    fs.mkdirSync(dir);
    await refused(['--node-id', '2', dir, '1'], dir, /--root/);
  });

  it('refuses malformed addresses and options, and a wrong number of operands', async () => {
    const dir = path.join(base, 'bad');
    fs.mkdirSync(dir);
    await refused(['--node-id', '1', '--listen', 'nowhere', dir, '1'], dir, /HOST:PORT/);
    await refused(['--node-id', '2', '--root', 'host:99999', dir, '1'], dir, /HOST:PORT/);
    await refused(['--node-id', '1', '--colour', dir, '1'], dir, /unknown option/);
    await refused(['--node-id', '1', dir], dir, /usage/);
  });
});
