// kdfs token create: the join token of a node, made on the root node from the
// file system's authority (mkfs.kdfs --token FILE on the node then, see
// mkfs.test.ts). It writes a new file readable by root only, and refuses
// anything else without writing.
import { X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readSuperblock } from '../../src/format/superblock.js';
import { CLI, command } from '../harness/cluster.js';

let base: string;

beforeEach(() => {
  base = fs.mkdtempSync(path.join(os.tmpdir(), 'kdfs-token-'));
});
afterEach(() => {
  fs.rmSync(base, { recursive: true, force: true });
});

const tokenCreate = (args: string[]) => command(CLI.kdfs, ['token', 'create', ...args]);
const modeOf = (file: string) => fs.statSync(file).mode & 0o7777;

async function mkfs(args: string[]): Promise<void> {
  const result = await command(CLI.mkfs, args);
  expect(result.code, result.stderr).toBe(0);
}

/** A root node formatted in base/name. */
async function formatRoot(name: string, listen = '127.0.0.1:7777'): Promise<string> {
  const dir = path.join(base, name);
  fs.mkdirSync(dir, { recursive: true });
  await mkfs(['--node-id', '1', '--listen', listen, dir, '1']);
  return dir;
}

/** Every file under dir with its bytes: what a refusal must leave as it was. */
function contents(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (at: string) => {
    for (const entry of fs.readdirSync(at, { withFileTypes: true })) {
      const file = path.join(at, entry.name);
      if (entry.isDirectory()) walk(file);
      else out[path.relative(dir, file)] = `${modeOf(file).toString(8)} ${fs.readFileSync(file, 'base64')}`;
    }
  };
  walk(dir);
  return out;
}

/** kdfs token create expected to refuse: exit 1, one line naming why, nothing written under base. */
async function refused(args: string[], pattern: RegExp): Promise<void> {
  const before = contents(base);
  const result = await tokenCreate(args);
  expect(result.code, result.stdout).toBe(1);
  expect(result.stderr.trim().split('\n')).toHaveLength(1);
  expect(result.stderr).toMatch(/^kdfs: /);
  expect(result.stderr).toMatch(pattern);
  expect(contents(base)).toEqual(before);
}

describe('kdfs token create', () => {
  it('writes a new file, readable by root only, with node N\'s certificate of the file system\'s authority', async () => {
    const root = await formatRoot('root');
    const fsid = (await readSuperblock(root)).fsid;
    const out = path.join(base, 'node2.token');
    const made = await tokenCreate(['--node-id', '2', '--out', out, '--dir', root]);
    expect(made.stderr).toBe('');
    expect(made.code).toBe(0);
    expect(made.stdout).toContain(`mkfs.kdfs --token ${out}`);
    expect(modeOf(out)).toBe(0o600);
    const token = JSON.parse(fs.readFileSync(out, 'utf8')) as { version: number; fsid: string; nodeId: number; rootAddress: string; ca: string; cert: string; key: string };
    expect(token).toMatchObject({ version: 1, fsid, nodeId: 2, rootAddress: '127.0.0.1:7777' });
    expect(token.ca).toBe(fs.readFileSync(path.join(root, 'credentials', 'ca.pem'), 'utf8'));
    const cert = new X509Certificate(token.cert);
    expect(cert.verify(new X509Certificate(token.ca).publicKey)).toBe(true);
    expect(cert.subject).toContain('CN=kdfs-node-2');
    expect(cert.subject).toContain(`O=kdfs ${fsid}`);
    // never the authority's key
    expect(JSON.stringify(token)).not.toContain(fs.readFileSync(path.join(root, 'credentials', 'ca.key'), 'utf8').trim().split('\n')[1]);
    // each token its own key
    const second = path.join(base, 'node2-again.token');
    expect((await tokenCreate(['--node-id', '2', '--out', second, '--dir', root])).code).toBe(0);
    expect((JSON.parse(fs.readFileSync(second, 'utf8')) as { key: string }).key).not.toBe(token.key);
  });

  it('finds the root node in a directory where kdfs up put the nodes (node1/)', async () => {
    const up = path.join(base, 'up');
    const root = await formatRoot(path.join('up', 'node1'));
    const out = path.join(base, 'node4.token');
    const made = await tokenCreate(['--node-id', '4', '--out', out, '--dir', up]);
    expect(made.code, made.stderr).toBe(0);
    expect((JSON.parse(fs.readFileSync(out, 'utf8')) as { fsid: string }).fsid).toBe((await readSuperblock(root)).fsid);
  });

  it('refuses an --out file that exists, leaving it as it was', async () => {
    const root = await formatRoot('root');
    const out = path.join(base, 'precious');
    fs.writeFileSync(out, 'keep me', { mode: 0o644 });
    await refused(['--node-id', '2', '--out', out, '--dir', root], /precious exists/);
    expect(fs.readFileSync(out, 'utf8')).toBe('keep me');
    // a token already made is not overwritten either
    const made = path.join(base, 'node2.token');
    expect((await tokenCreate(['--node-id', '2', '--out', made, '--dir', root])).code).toBe(0);
    await refused(['--node-id', '2', '--out', made, '--dir', root], /exists/);
    // nor a directory
    await refused(['--node-id', '2', '--out', base, '--dir', root], /exists/);
  });

  it('refuses a directory that is not the root node\'s, and the root\'s own id', async () => {
    const root = await formatRoot('root');
    const out = path.join(base, 'out.token');
    // a node that is not the root: it has credentials, not the authority
    const node = await (async () => {
      const token = path.join(base, 'n2.token');
      expect((await tokenCreate(['--node-id', '2', '--out', token, '--dir', root])).code).toBe(0);
      const dir = path.join(base, 'n2');
      fs.mkdirSync(dir);
      await mkfs(['--token', token, dir, '1']);
      fs.rmSync(token);
      return dir;
    })();
    await refused(['--node-id', '3', '--out', out, '--dir', node], /not the root node's directory/);
    const empty = path.join(base, 'empty');
    fs.mkdirSync(empty);
    await refused(['--node-id', '3', '--out', out, '--dir', empty], /not the root node's directory/);
    await refused(['--node-id', '3', '--out', out, '--dir', path.join(base, 'missing')], /not the root node's directory/);
    // a root node's directory whose authority is gone
    const broken = await formatRoot('broken');
    fs.rmSync(path.join(broken, 'credentials', 'ca.key'));
    await refused(['--node-id', '3', '--out', out, '--dir', broken], /not the root node's directory/);
    // the root has its credentials: no token for it
    await refused(['--node-id', '1', '--out', out, '--dir', root], /node 1 is the root node/);
    expect(fs.existsSync(out)).toBe(false);
  });

  it('refuses bad input with one line and exit status 2', async () => {
    const root = await formatRoot('root');
    const out = path.join(base, 'out.token');
    for (const args of [['--out', out, '--dir', root], ['--node-id', '2', '--dir', root], ['--node-id', 'two', '--out', out, '--dir', root], ['--node-id', '0', '--out', out, '--dir', root]]) {
      const result = await tokenCreate(args);
      expect(result.code, args.join(' ')).toBe(2);
      expect(result.stderr.trim().split('\n'), args.join(' ')).toHaveLength(1);
    }
    expect(fs.existsSync(out)).toBe(false);
  });
});
