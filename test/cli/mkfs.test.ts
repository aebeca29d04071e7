// mkfs.kdfs: what it makes, and what it refuses without changing anything. The
// root node makes the file system's credentials; every other node is formatted
// with a join token made on the root (kdfs token create, see token.test.ts).
import { createHash, X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readSuperblock } from '../../src/format/superblock.js';
import { CLI, command } from '../harness/cluster.js';
import { freePort } from '../../src/common/freePort.js';

let base: string;

/** Every file and directory under dir (and dir's own mode), with contents hashed: equal snapshots, equal bytes. */
function snapshot(dir: string): string[] {
  if (!fs.existsSync(dir)) return ['(absent)'];
  const out: string[] = [`./ ${fs.statSync(dir).mode}`];
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

/** The permission bits of a file or directory. */
const modeOf = (file: string) => fs.statSync(file).mode & 0o7777;

/** Formats a root node in base/name, listening at `listen`; its directory. */
async function formatRoot(name: string, listen = '127.0.0.1:7777'): Promise<string> {
  const dir = path.join(base, name);
  fs.mkdirSync(dir);
  const result = await mkfs(['--node-id', '1', '--listen', listen, dir, '1']);
  expect(result.code, result.stderr).toBe(0);
  return dir;
}

/** kdfs token create on the root, as an administrator does it: the token's path. */
async function tokenFor(rootDir: string, nodeId: number, name = `node${nodeId}.token`): Promise<string> {
  const out = path.join(base, name);
  const made = await command(CLI.kdfs, ['token', 'create', '--node-id', String(nodeId), '--out', out, '--dir', rootDir]);
  expect(made.code, made.stderr).toBe(0);
  expect(made.stdout).toContain(`mkfs.kdfs --token ${out}`);
  return out;
}

/** Expects dir to hold node `nodeId`'s credentials of file system fsid, readable by root only. */
function expectCredentials(dir: string, nodeId: number, fsid: string, rootCa?: string): void {
  const creds = path.join(dir, 'credentials');
  expect(modeOf(dir), 'the node directory').toBe(0o700);
  expect(modeOf(creds), 'credentials/').toBe(0o700);
  const files = fs.readdirSync(creds).sort();
  // the authority's key stays on the root
  expect(files).toEqual(nodeId === 1 && !rootCa ? ['ca.key', 'ca.pem', 'node.key', 'node.pem'] : ['ca.pem', 'node.key', 'node.pem']);
  for (const name of files) expect(modeOf(path.join(creds, name)), `credentials/${name}`).toBe(0o600);
  const ca = new X509Certificate(fs.readFileSync(path.join(creds, 'ca.pem')));
  const cert = new X509Certificate(fs.readFileSync(path.join(creds, 'node.pem')));
  expect(cert.verify(ca.publicKey)).toBe(true);
  expect(cert.subject).toContain(`CN=kdfs-node-${nodeId}`);
  expect(cert.subject).toContain(`O=kdfs ${fsid}`);
  if (rootCa) expect(fs.readFileSync(path.join(creds, 'ca.pem'), 'utf8')).toBe(rootCa);
}

/** Runs mkfs expecting a refusal: non-zero exit (`code` if given), one line on stderr, dir unchanged. */
async function refused(args: string[], dir: string, pattern: RegExp, env: NodeJS.ProcessEnv = {}, code?: number): Promise<void> {
  const before = snapshot(dir);
  const result = await mkfs(args, env);
  expect(result.code).not.toBe(0);
  if (code !== undefined) expect(result.code, result.stderr).toBe(code);
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
  it('formats a root node: superblock, object directories, the root meta-file, and the credentials, root\'s only', async () => {
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
    // the authority and the root's certificate; the directory 0700, credentials/ 0700, its files 0600
    expectCredentials(dir, 1, sb.fsid);
  });

  it('formats a node that is not the root with a join token from the root, taking its id from KDFS_NODE_ID', async () => {
    const root = await formatRoot('root');
    const fsid = (await readSuperblock(root)).fsid;
    const token = await tokenFor(root, 2);
    expect(modeOf(token)).toBe(0o600);
    const dir = path.join(base, 'n2');
    fs.mkdirSync(dir);
    const result = await mkfs(['--token', token, '--root', '127.0.0.1:7777', dir, '1'], { KDFS_NODE_ID: '2' });
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    const sb = await readSuperblock(dir);
    // the token tells the node its file system
    expect(sb).toMatchObject({ nodeId: 2, rootNodeId: 1, rootAddress: '127.0.0.1:7777', fsid });
    expect(fs.existsSync(path.join(dir, 'meta'))).toBe(false);
    // node 2's certificate, the root's authority (not its key)
    expectCredentials(dir, 2, fsid, fs.readFileSync(path.join(root, 'credentials', 'ca.pem'), 'utf8'));
  });

  it('takes the node id and the root\'s address from the token', async () => {
    const root = await formatRoot('root', '127.0.0.1:7788');
    const token = await tokenFor(root, 3);
    const dir = path.join(base, 'n3');
    fs.mkdirSync(dir);
    const result = await mkfs(['--token', token, dir, '1']);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).toContain('root node 1 at 127.0.0.1:7788');
    expect(await readSuperblock(dir)).toMatchObject({ nodeId: 3, rootNodeId: 1, rootAddress: '127.0.0.1:7788', fsid: (await readSuperblock(root)).fsid });
    expectCredentials(dir, 3, (await readSuperblock(root)).fsid, fs.readFileSync(path.join(root, 'credentials', 'ca.pem'), 'utf8'));
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
    const ca = fs.readFileSync(path.join(dir, 'credentials', 'ca.pem'), 'utf8');
    await refused(['--node-id', '1', dir, '1'], dir, /already formatted/);
    expect((await mkfs(['--node-id', '1', '--force', dir, '1'])).code).toBe(0);
    expect((await readSuperblock(dir)).fsid).not.toBe(fsid);
    expect(fs.existsSync(path.join(dir, 'objects', 'aa', 'marker'))).toBe(false);
    // a new file system, a new authority: the old one's members are not its
    expect(fs.readFileSync(path.join(dir, 'credentials', 'ca.pem'), 'utf8')).not.toBe(ca);
    expectCredentials(dir, 1, (await readSuperblock(dir)).fsid);
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

  it('refuses a node that is not the root without a join token, naming kdfs token create', async () => {
    const dir = path.join(base, 'notoken');
    fs.mkdirSync(dir);
    for (const args of [['--node-id', '2', dir, '1'], ['--node-id', '2', '--root', '127.0.0.1:7777', dir, '1']]) {
      const before = snapshot(dir);
      const result = await mkfs(args);
      expect(result.code).toBe(1);
      expect(result.stderr.trim().split('\n')).toHaveLength(1);
      expect(result.stderr).toMatch(/join token is required.*kdfs token create --node-id 2/);
      expect(snapshot(dir)).toEqual(before);
      expect(fs.readdirSync(dir)).toEqual([]);
    }
    await refused([dir, '1'], dir, /kdfs token create/, { KDFS_NODE_ID: '5' }, 1);
  });

  it('refuses a token of another node, and a token for the root', async () => {
    const root = await formatRoot('root');
    const token = await tokenFor(root, 3);
    const dir = path.join(base, 'n2');
    fs.mkdirSync(dir);
    await refused(['--node-id', '2', '--token', token, dir, '1'], dir, /node 3's, not node 2's/, {}, 1);
    await refused(['--token', token, dir, '1'], dir, /node 3's, not node 2's/, { KDFS_NODE_ID: '2' }, 1);
    // the root makes the credentials: it takes none
    await refused(['--node-id', '1', '--token', token, dir, '1'], dir, /root node .*takes no --token/, {}, 1);
    // a token for node 3, formatting node 3 of a file system whose root is node 3: the root again
    await refused(['--token', token, dir, '3'], dir, /takes no --token/, {}, 1);
  });

  it('refuses a corrupted token, and one made of another file system\'s credentials', async () => {
    const root = await formatRoot('root');
    const other = await formatRoot('other', '127.0.0.1:7799');
    const good = JSON.parse(fs.readFileSync(await tokenFor(root, 2), 'utf8')) as Record<string, unknown>;
    const foreign = JSON.parse(fs.readFileSync(await tokenFor(other, 2, 'foreign.token'), 'utf8')) as Record<string, unknown>;
    const dir = path.join(base, 'n2');
    fs.mkdirSync(dir);
    const write = (name: string, content: string | Buffer) => {
      const file = path.join(base, name);
      fs.writeFileSync(file, content, { mode: 0o600 });
      return file;
    };
    const text = JSON.stringify(good);
    const pem = good.cert as string;
    // a character of the certificate's signature changed (the last line of base64 before the footer)
    const at = pem.lastIndexOf('-----END') - 6;
    const flipped = pem.slice(0, at) + (pem[at] === 'A' ? 'B' : 'A') + pem.slice(at + 1);
    const cases: [string, string | Buffer, RegExp][] = [
      ['truncated', text.slice(0, text.length / 2), /not a kDFS join token/],
      ['garbage', Buffer.from([0x00, 0xff, 0x13, 0x37, 0x80]), /not a kDFS join token/],
      ['empty', '', /not a kDFS join token/],
      ['not-a-token', JSON.stringify({ hello: 'world' }), /not a kDFS join token/],
      ['flipped', JSON.stringify({ ...good, cert: flipped }), /unreadable certificate|not signed by the file system's authority/],
      ['no-cert', JSON.stringify({ ...good, cert: 'not a certificate' }), /unreadable certificate/],
      // another file system's certificate and key, under this one's authority: not signed by it
      ['mixed', JSON.stringify({ ...good, cert: foreign.cert, key: foreign.key }), /not signed by the file system's authority/],
      // another file system's authority under this one's certificate
      ['other-ca', JSON.stringify({ ...good, ca: foreign.ca }), /not signed by the file system's authority/],
      // the token's fields edited: its certificate says otherwise
      ['relabelled-fsid', JSON.stringify({ ...good, fsid: foreign.fsid }), /another file system/],
      ['relabelled-node', JSON.stringify({ ...good, nodeId: 3 }), /not node 3's/],
      ['other-key', JSON.stringify({ ...good, key: foreign.key }), /key does not match/],
      ['huge', JSON.stringify({ ...good, padding: 'x'.repeat(100 * 1024) }), /not a kDFS join token: too large/],
    ];
    for (const [name, content, pattern] of cases) {
      await refused(['--node-id', '2', '--token', write(name, content), dir, '1'], dir, pattern, {}, 1);
    }
    await refused(['--node-id', '2', '--token', path.join(base, 'missing.token'), dir, '1'], dir, /missing\.token is not a kDFS join token/, {}, 1);
    await refused(['--node-id', '2', '--token', base, dir, '1'], dir, /not a kDFS join token/, {}, 1);
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('refuses bad --meta addresses, missing or unreadable etcd credentials, and an etcd it cannot reach', async () => {
    const dir = path.join(base, 'n1');
    fs.mkdirSync(dir);
    const pem = path.join(base, 'x.pem');
    const key = path.join(base, 'x.key');
    const made = await command('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', key, '-out', pem, '-subj', '/CN=x', '-days', '1']);
    expect(made.code, made.stderr).toBe(0);
    const creds = ['--etcd-ca', pem, '--etcd-cert', pem, '--etcd-key', key];
    const garbage = path.join(base, 'garbage.pem');
    fs.writeFileSync(garbage, 'not a certificate');
    await refused(['--node-id', '1', '--meta', 'http://h:1', ...creds, dir, '1'], dir, /--meta takes etcd:\/\/HOST:PORT/, {}, 2);
    await refused(['--node-id', '1', '--meta', 'etcd://h:99999', ...creds, dir, '1'], dir, /is not HOST:PORT/, {}, 2);
    await refused(['--node-id', '1', '--meta', 'etcd://localhost:1', dir, '1'], dir, /needs the etcd client's credentials/);
    await refused(['--node-id', '1', '--meta', 'etcd://localhost:1', '--etcd-ca', pem, dir, '1'], dir, /three files/, {}, 2);
    await refused(['--node-id', '1', '--meta', 'etcd://localhost:1', '--etcd-ca', path.join(base, 'absent'), '--etcd-cert', pem, '--etcd-key', key, dir, '1'], dir, /--etcd-ca: ENOENT/);
    await refused(['--node-id', '1', ...creds, dir, '1'], dir, /are for --meta/);
    await refused(['--node-id', '1', '--meta', 'etcd://localhost:1', '--etcd-ca', garbage, '--etcd-cert', pem, '--etcd-key', key, dir, '1'], dir, /--etcd-ca: .* is not a PEM certificate/);
    await refused(['--node-id', '1', '--meta', 'etcd://localhost:1', '--etcd-ca', pem, '--etcd-cert', pem, '--etcd-key', pem, dir, '1'], dir, /--etcd-key: .* is not a PEM private key/);
    // a port nothing listens on: refused at once, the directory untouched
    const port = await freePort();
    await refused(['--node-id', '1', '--meta', `etcd://localhost:${port}`, ...creds, dir, '1'], dir, /cannot write the metadata into etcd/);
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
