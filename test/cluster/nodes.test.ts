// Nodes added and removed while the file system runs: a node added takes its
// share of the data (kdfs rebalance) while files are written and read; a node
// drained (kdfs node remove) while written to, killed midway and mounted again,
// ends holding nothing with every file whole; a dead node removed by force has
// its copies made again; a node whose directory was lost joins again with a
// new one (mkfs.kdfs --replace) and its copies are rebuilt onto it.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { CLI, Cluster, command, objectBytes } from '../harness/cluster.js';
import { MiB, nodeStates, sha256, stripeOf } from '../harness/faults.js';
import { poll } from '../harness/locker.js';

let cluster: Cluster | null = null;
const children: ChildProcess[] = [];

afterEach(async () => {
  for (const proc of children.splice(0)) proc.kill('SIGKILL');
  await cluster?.stop();
  cluster = null;
});

/** How long a drain, a rebalance or a rebuild of these few MiB may take. */
const MOVE_WAIT_MS = 90_000;

/** Writes `count` files of random sizes under dir, with their digests. */
function writeFiles(dir: string, count: number, maxBytes: number): Map<string, string> {
  fs.mkdirSync(dir, { recursive: true });
  const digests = new Map<string, string>();
  for (let i = 0; i < count; i++) {
    const data = randomBytes(maxBytes / 2 + Math.floor(Math.random() * (maxBytes / 2)));
    fs.writeFileSync(path.join(dir, `f${i}`), data);
    digests.set(`f${i}`, sha256(data));
  }
  return digests;
}

/** The names under dir whose content is not the digest given (read afresh, through `mnt`'s node). */
function mismatches(dir: string, digests: Map<string, string>): string[] {
  const bad: string[] = [];
  for (const [name, digest] of digests) {
    let content: Buffer;
    try {
      content = fs.readFileSync(path.join(dir, name));
    } catch (err) {
      bad.push(`${name}: ${(err as Error).message}`);
      continue;
    }
    if (sha256(content) !== digest) bad.push(`${name}: wrong content`);
  }
  return bad;
}

/** A child (killed by afterEach if the test fails) that writes new files into dir, one every 20 ms or so, until `stop` exists, printing "name digest" for each file closed. */
function writer(dir: string, stop: string): { proc: ChildProcess; files: () => Map<string, string>; exit: Promise<number | null> } {
  const script = [
    'import os, hashlib, sys, time', `d = ${JSON.stringify(dir)}`, 'os.makedirs(d, exist_ok=True)', 'i = 0',
    `while not os.path.exists(${JSON.stringify(stop)}):`,
    '    data = os.urandom(256 * 1024 + (i % 4) * 65536)', '    name = "w%d" % i',
    '    with open(os.path.join(d, name), "wb") as f: f.write(data)',
    '    print(name, hashlib.sha256(data).hexdigest(), flush=True)', '    i += 1', '    time.sleep(0.02)',
  ].join('\n');
  const proc = spawn('python3', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(proc);
  let out = '';
  proc.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const exit = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  const files = () => new Map(out.split('\n').filter((l) => l.includes(' ')).map((l) => l.split(' ') as [string, string]));
  return { proc, files, exit };
}

/** A child that reads the files of dir again and again until `stop` exists, checking each against its digest. */
function reader(dir: string, digests: Map<string, string>, stop: string): { exit: Promise<{ code: number | null; out: string }> } {
  const expected = JSON.stringify(Object.fromEntries(digests));
  const script = [
    'import os, hashlib, json, sys', `d = ${JSON.stringify(dir)}`, `want = json.loads(${JSON.stringify(expected)})`, 'reads = 0', 'bad = []',
    `while not os.path.exists(${JSON.stringify(stop)}):`,
    '    for name, digest in want.items():',
    '        try:',
    '            with open(os.path.join(d, name), "rb") as f: got = hashlib.sha256(f.read()).hexdigest()',
    '        except OSError as e: got = str(e)',
    '        reads += 1',
    '        if got != digest: bad.append(name + ": " + got)',
    'print(json.dumps({"reads": reads, "bad": bad}), flush=True)',
  ].join('\n');
  const proc = spawn('python3', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(proc);
  let out = '';
  proc.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  return { exit: new Promise((resolve) => proc.on('exit', (code) => resolve({ code, out }))) };
}

/** Stripe object copies (not their checksums) in a node's directory. */
function copiesIn(nodeDir: string): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      if (entry.isDirectory()) walk(path.join(dir, entry.name));
      else if (!entry.name.endsWith('.sum')) found.push(entry.name);
    }
  };
  walk(path.join(nodeDir, 'objects'));
  return found;
}

interface NodeStatusJson {
  nodes: { id: number; state: string; admin: string; copies: number; lastCopies: number; belowR: number; safeToStop: boolean }[];
  drain: { state: string; objectsMoved: number; message: string };
}

async function nodeStatus(c: Cluster): Promise<NodeStatusJson> {
  const result = await c.kdfs(['node', 'status', '--json', '--dir', c.dir]);
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as NodeStatusJson;
}

async function degradedObjects(c: Cluster, via = 1): Promise<number | null> {
  const result = await c.kdfs(['status', '--json', c.mnt(via)]);
  return result.code === 0 ? (JSON.parse(result.stdout) as { degradedObjects: number | null }).degradedObjects : null;
}

/** Formats node `id`'s directory as an administrator does: a join token made
 *  on the root (kdfs token create), mkfs.kdfs --token on the node, the token deleted. */
async function formatNode(c: Cluster, id: number, extraMkfsArgs: string[] = []): Promise<void> {
  const token = path.join(c.dir, `node${id}.token`);
  const made = await c.kdfs(['token', 'create', '--node-id', String(id), '--out', token, '--dir', c.nodeDir(1)]);
  expect(made.code, made.stderr).toBe(0);
  try {
    // the node id and the root's address come from the token
    const formatted = await command(CLI.mkfs, [...extraMkfsArgs, '--token', token, c.nodeDir(id), '1']);
    expect(formatted.code, formatted.stderr).toBe(0);
    expect(formatted.stdout).toContain(`kDFS node ${id}, serving at 127.0.0.1:0, root node 1 at ${c.rootAddress}`);
  } finally {
    fs.rmSync(token, { force: true });
  }
}

/** Formats and mounts node `id` into the running cluster (not yet added). */
async function join(c: Cluster, id: number, extraMkfsArgs: string[] = []): Promise<void> {
  fs.mkdirSync(c.nodeDir(id), { recursive: true });
  fs.mkdirSync(c.mnt(id), { recursive: true });
  await formatNode(c, id, extraMkfsArgs);
  await c.mount(id);
}

describe('a node added to a running cluster', () => {
  it('gets no data until added; kdfs rebalance then gives it its share while files are written and read', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3 }));
    const digests = writeFiles(c.path(2, 'data'), 48, 2 * MiB);
    await join(c, 4);
    // joined, not added: new files stay off it
    fs.writeFileSync(c.path(2, 'before-add'), randomBytes(4 * MiB));
    const before = await stripeOf(c, c.path(2, 'before-add'));
    expect(before.objects.flatMap((o) => o.replicas.map((r) => r.node))).not.toContain(4);
    const joined = JSON.parse((await c.kdfs(['status', '--json', '--dir', c.dir])).stdout) as { nodes: { id: number; admin: string; weight: number }[] };
    expect(joined.nodes.find((n) => n.id === 4)).toMatchObject({ admin: 'joined', weight: 0 });
    await c.admit([4]);

    const stop = path.join(c.dir, 'stop');
    const writing = writer(c.path(3, 'written'), stop);
    const reading = reader(c.path(2, 'data'), digests, stop);
    const rebalanced = await c.kdfs(['rebalance', 'start', '--dir', c.dir]);
    fs.writeFileSync(stop, '');
    const read = await reading.exit;
    expect(await writing.exit).toBe(0);
    expect(rebalanced.code, rebalanced.stderr).toBe(0);
    expect(rebalanced.stdout).toContain('rebalance done');
    const { reads, bad } = JSON.parse(read.out) as { reads: number; bad: string[] };
    expect(bad).toEqual([]);
    expect(reads).toBeGreaterThan(0);

    // each node's share of the stored bytes within 10% of a quarter
    const stored = [1, 2, 3, 4].map((id) => objectBytes(c.nodeDir(id)));
    const total = stored.reduce((a, b) => a + b, 0);
    for (const [i, bytes] of stored.entries()) expect(bytes / total, `node ${i + 1}'s share of ${stored.join(', ')}`).toBeGreaterThan(0.225);
    for (const [i, bytes] of stored.entries()) expect(bytes / total, `node ${i + 1}'s share of ${stored.join(', ')}`).toBeLessThan(0.275);
    // every file whole, through every node, and every object with its 2 good copies
    for (const id of [1, 2, 3, 4]) expect(mismatches(c.path(id, 'data'), digests), `through node ${id}`).toEqual([]);
    expect(mismatches(c.path(4, 'written'), writing.files())).toEqual([]);
    expect(writing.files().size).toBeGreaterThan(0);
    const scrubbed = await c.kdfs(['scrub', '--json', '--dir', c.dir]);
    expect(scrubbed.code, scrubbed.stdout + scrubbed.stderr).toBe(0);
  });
});

describe('a node drained with kdfs node remove', () => {
  it('ends holding nothing, with every file whole, though it was killed midway and files were written meanwhile', async () => {
    // moves at 4 MiB/s: the drain lasts long enough to kill the node in the middle of it
    const c = (cluster = await Cluster.start({ nodes: 3, rootMountArgs: ['-o', 'move_rate=4'] }));
    const digests = writeFiles(c.path(3, 'data'), 32, 2 * MiB);
    const stop = path.join(c.dir, 'stop');
    const writing = writer(c.path(3, 'written'), stop);
    const removing = spawn(CLI.kdfs, ['node', 'remove', '2', '--dir', c.dir], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(removing);
    let said = '';
    removing.stdout.on('data', (chunk: Buffer) => (said += chunk.toString()));
    removing.stderr.on('data', (chunk: Buffer) => (said += chunk.toString()));
    const removed = new Promise<number | null>((resolve) => removing.on('exit', (code) => resolve(code)));

    // midway: some copies moved, not all
    expect(await poll(async () => (await nodeStatus(c)).drain.objectsMoved > 0, MOVE_WAIT_MS, 250)).not.toBeNull();
    const midway = await nodeStatus(c);
    expect(midway.nodes.find((n) => n.id === 2)).toMatchObject({ admin: 'draining' });
    expect(midway.nodes.find((n) => n.id === 2)!.copies).toBeGreaterThan(0);
    // kdfs status tells the drain's progress too
    const statusMidway = JSON.parse((await c.kdfs(['status', '--json', '--dir', c.dir])).stdout) as { drain: { state: string; draining: number[]; objectsMoved: number } };
    expect(statusMidway.drain).toMatchObject({ state: 'running', draining: [2] });
    await c.kill9(2);
    await c.mount(2);
    expect(await removed, said).toBe(0);
    expect(said).toContain('drained and removed');
    fs.writeFileSync(stop, '');
    expect(await writing.exit).toBe(0);

    expect(copiesIn(c.nodeDir(2))).toEqual([]);
    const after = await nodeStatus(c);
    expect(after.nodes.find((n) => n.id === 2)).toMatchObject({ admin: 'removed', copies: 0, safeToStop: true });
    // with node 2 stopped: everything is there, with 2 good copies
    await c.unmount(2);
    for (const id of [1, 3]) expect(mismatches(c.path(id, 'data'), digests), `through node ${id}`).toEqual([]);
    expect(mismatches(c.path(1, 'written'), writing.files())).toEqual([]);
    expect(await degradedObjects(c)).toBe(0);
    const scrubbed = await c.kdfs(['scrub', '--json', '--dir', c.dir]);
    expect(scrubbed.code, scrubbed.stdout + scrubbed.stderr).toBe(0);
  });
});

describe('removing nodes that cannot drain', () => {
  it('refuses the root and a live node with --force; removes a dead node with --force, its copies made again', async () => {
    const c = (cluster = await Cluster.start({ nodes: 4 }));
    const digests = writeFiles(c.path(2, 'data'), 16, 2 * MiB);
    const root = await c.kdfs(['node', 'remove', '1', '--dir', c.dir]);
    expect(root.code).not.toBe(0);
    expect(root.stderr).toMatch(/node 1 is the root node/);
    expect(root.stderr.trim().split('\n')).toHaveLength(1);
    const live = await c.kdfs(['node', 'remove', '--force', '3', '--dir', c.dir]);
    expect(live.code).not.toBe(0);
    expect(live.stderr).toMatch(/node 3 is up/);
    const bad = await c.kdfs(['node', 'remove', 'x7', '--dir', c.dir]);
    expect(bad.code).toBe(2);
    expect((await nodeStatus(c)).nodes.map((n) => n.admin)).toEqual(['active', 'active', 'active', 'active']);

    await c.kill9(4);
    const forced = await c.kdfs(['node', 'remove', '--force', '4', '--dir', c.dir]);
    expect(forced.code, forced.stderr).toBe(0);
    expect(await poll(async () => (await degradedObjects(c)) === 0, MOVE_WAIT_MS, 500)).not.toBeNull();
    for (const id of [1, 2, 3]) expect(mismatches(c.path(id, 'data'), digests), `through node ${id}`).toEqual([]);
    for (const name of digests.keys()) {
      const nodes = (await stripeOf(c, c.path(1, 'data', name))).objects.flatMap((o) => o.replicas.map((r) => r.node));
      expect(nodes).not.toContain(4);
    }
  });
});

describe('a node whose directory was lost', () => {
  it('is refused with a new directory, and joins with mkfs.kdfs --replace: its copies are rebuilt onto it', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3 }));
    const digests = writeFiles(c.path(1, 'data'), 16, 2 * MiB);
    await c.kill9(3);
    await command('umount', ['-l', c.mnt(3)]);
    // the root takes it for gone: a directory may take its place
    expect(await poll(async () => (await nodeStates(c))[3] === 'down', MOVE_WAIT_MS, 250)).not.toBeNull();
    fs.rmSync(c.nodeDir(3), { recursive: true, force: true });
    fs.mkdirSync(c.nodeDir(3));
    // a new token for node 3 (the old one went with the directory)
    await formatNode(c, 3);
    await expect(c.mount(3)).rejects.toThrow(/already a member, with another directory.*--replace/);

    await join(c, 3, ['--force', '--replace']);
    expect(await poll(async () => (await degradedObjects(c)) === 0, MOVE_WAIT_MS, 500)).not.toBeNull();
    expect(copiesIn(c.nodeDir(3)).length).toBeGreaterThan(0);
    // node 2 stopped: what it held is read from nodes 1 and 3, the rebuilt copies among them
    await c.unmount(2);
    for (const id of [1, 3]) expect(mismatches(c.path(id, 'data'), digests), `through node ${id}`).toEqual([]);
  });
});

describe('a file held open and written while its copies move', () => {
  it('keeps every write: the drain moves it open, writes go to the old and the new copies until the switch', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3, rootMountArgs: ['-o', 'move_rate=8'] }));
    const digests = writeFiles(c.path(3, 'data'), 8, 2 * MiB);
    const file = c.path(3, 'open-all-along');
    const stop = path.join(c.dir, 'stop');
    // overwrites 64 KiB blocks of an 8 MiB file in place, fsyncs now and then, keeps a model of what it wrote
    const script = [
      'import os, hashlib, sys', `fd = os.open(${JSON.stringify(file)}, os.O_RDWR | os.O_CREAT, 0o644)`,
      'model = bytearray(8 << 20)', 'os.pwrite(fd, bytes(model), 0)', 'os.fsync(fd)', 'print("open", flush=True)', 'i = 0',
      `while not os.path.exists(${JSON.stringify(stop)}) or i < 200:`,
      '    block = bytes([(i * 7 + 1) % 251]) * 65536', '    at = ((i * 37) % 128) * 65536',
      '    os.pwrite(fd, block, at)', '    model[at:at + 65536] = block', '    i += 1',
      '    if i % 16 == 0: os.fsync(fd)',
      'os.close(fd)', 'print("closed", hashlib.sha256(model).hexdigest(), i, flush=True)',
    ].join('\n');
    const writerProc = spawn('python3', ['-c', script], { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(writerProc);
    let said = '';
    writerProc.stdout!.on('data', (chunk: Buffer) => (said += chunk.toString()));
    const writerExit = new Promise<number | null>((resolve) => writerProc.on('exit', (code) => resolve(code)));
    expect(await poll(async () => said.includes('open'), MOVE_WAIT_MS, 50)).not.toBeNull();
    expect((await stripeOf(c, file)).objects.flatMap((o) => o.replicas.map((r) => r.node))).toContain(2);

    const removed = await c.kdfs(['node', 'remove', '2', '--dir', c.dir]);
    expect(removed.code, removed.stderr).toBe(0);
    // moved while open: node 2 holds nothing, the writer still writes
    expect((await stripeOf(c, file)).objects.flatMap((o) => o.replicas.map((r) => r.node))).not.toContain(2);
    expect(said).not.toContain('closed');
    fs.writeFileSync(stop, '');
    expect(await writerExit).toBe(0);
    const [, digest, writes] = said.split('\n').find((l) => l.startsWith('closed'))!.split(' ');
    expect(Number(writes)).toBeGreaterThan(200);
    expect(copiesIn(c.nodeDir(2))).toEqual([]);
    await c.unmount(2);
    for (const id of [1, 3]) {
      expect(sha256(fs.readFileSync(c.path(id, 'open-all-along'))), `through node ${id}`).toBe(digest);
      expect(mismatches(c.path(id, 'data'), digests), `through node ${id}`).toEqual([]);
    }
    const scrubbed = await c.kdfs(['scrub', '--json', '--dir', c.dir]);
    expect(scrubbed.code, scrubbed.stdout + scrubbed.stderr).toBe(0);
  });
});
