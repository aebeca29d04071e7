// Two copies of every object (the default): a node killed while files are
// written or read costs the applications nothing, its copies are brought up to
// date when it returns or made again elsewhere past the grace period, and a
// copy damaged on disk is never returned, is found by kdfs scrub and repaired.
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { RemoteAgent } from '../../src/agent/remote.js';
import { metaClientFor } from '../../src/cli/common.js';
import { E } from '../../src/common/errno.js';
import { PEER_BOUND_MS } from '../../src/common/limits.js';
import { readSuperblock } from '../../src/format/superblock.js';
import { Cluster, command, objectBytes, testDir } from '../harness/cluster.js';
import { BOUND_ASSERTED_MS, MiB, sha256, stripeOf, timed } from '../harness/faults.js';
import { poll } from '../harness/locker.js';
import { HoldingRelay } from '../harness/relay.js';

let cluster: Cluster | null = null;
let stopped: number | null = null;

afterEach(async () => {
  if (stopped) process.kill(stopped, 'SIGCONT');
  stopped = null;
  await cluster?.stop();
  cluster = null;
});

/** How long repair may take to bring every copy back in these tests. */
const REPAIR_WAIT_MS = 60_000;

/** sha256 of a whole file read with O_DIRECT (no page cache), within the bound or not. */
const fileDigest = (file: string) => timed(`dd if=${file} bs=1M iflag=direct status=none | sha256sum`);

interface StatusJson { nodes: { id: number; state: string }[]; degradedObjects: number | null; repairingObjects: number | null; checksumErrors: number }

async function status(c: Cluster): Promise<StatusJson> {
  const result = await c.kdfs(['status', '--json', c.mnt(2)]);
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as StatusJson;
}

/** The file of copy `replica` of object `index` of `file` on its node's disk. */
function copyPath(c: Cluster, file: string, node: number, index: number, replica: number): string {
  const ino = fs.statSync(file, { bigint: true }).ino;
  const bucket = Number(ino % 256n).toString(16).padStart(2, '0');
  const name = `${ino.toString(16).padStart(16, '0')}.${index}${replica ? `.r${replica}` : ''}`;
  return path.join(c.nodeDir(node), 'objects', bucket, name);
}

/** Flips bits of the byte at `offset` of copy `replica` of object `index` of
 *  `file`, on its node's disk (`data` is the file's content, object at `fileOffset`
 *  there); returns that copy's path. */
async function damageCopy(c: Cluster, file: string, index: number, replica: number, offset: number, fileOffset: number, data: Buffer, bits: number): Promise<{ copy: string; node: number }> {
  const { node } = (await stripeOf(c, file)).objects[index].replicas[replica];
  const copy = copyPath(c, file, node, index, replica);
  const fd = fs.openSync(copy, 'r+');
  fs.writeSync(fd, Buffer.from([data[fileOffset] ^ bits]), 0, 1, offset);
  fs.closeSync(fd);
  return { copy, node };
}

/** A new 3 MiB file written through node 2, and one of its copies on node 3:
 *  its object, replica and path there. */
async function fileWithCopyOnNode3(c: Cluster, name: string) {
  const file = c.path(2, name);
  fs.writeFileSync(file, randomBytes(3 * MiB));
  const { index, replicas } = (await stripeOf(c, file)).objects.find((o) => o.replicas.some((r) => r.node === 3))!;
  const replica = replicas.findIndex((r) => r.node === 3);
  return { file, index, replica, replicaCount: replicas.length, copy: copyPath(c, file, 3, index, replica) };
}

/** Node 3's addresses, as kdfs status tells them. */
async function node3Addresses(c: Cluster): Promise<{ address: string; dataAddress: string }> {
  return (JSON.parse((await c.kdfs(['status', '--json', c.mnt(2)])).stdout) as { nodes: { id: number; address: string; dataAddress: string }[] }).nodes.find((n) => n.id === 3)!;
}

/** Whether every object of the file has two good copies (on nodes other than `without`). */
async function whole(c: Cluster, file: string, without?: number): Promise<boolean> {
  const { objects } = await stripeOf(c, file);
  return objects.every((o) => o.replicas.length === 2 && o.replicas.every((r) => r.state === 'good' && r.node !== without));
}

describe('failure domains', () => {
  it('keep the two copies of every object apart, and kdfs status tells them', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3, domains: ['rack-a', 'rack-a', 'rack-b'] }));
    const domains: Record<number, string> = { 1: 'rack-a', 2: 'rack-a', 3: 'rack-b' };
    for (const name of ['x', 'y', 'z']) {
      fs.writeFileSync(c.path(2, name), randomBytes(3 * MiB));
      for (const object of (await stripeOf(c, c.path(1, name))).objects) {
        expect(new Set(object.replicas.map((r) => domains[r.node])).size).toBe(2);
      }
    }
    const nodes = (await status(c)).nodes as { id: number; domain?: string }[];
    expect(Object.fromEntries(nodes.map((n) => [n.id, n.domain]))).toEqual(domains);
  });
});

describe('a node killed with kill -9, two copies', () => {
  it('costs a writer with fsync nothing; the file reads back whole meanwhile, and on the node once it is back and repaired', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3 }));
    const data = randomBytes(256 * MiB);
    const source = path.join(testDir(), 'source');
    fs.writeFileSync(source, data);
    const target = c.path(1, 'written');
    const dd = spawn('timeout', ['-k', '2', '120', 'dd', `if=${source}`, `of=${target}`, 'bs=1M', 'conv=fsync', 'status=none'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let ddErrors = '';
    dd.stderr.on('data', (chunk: Buffer) => (ddErrors += chunk.toString()));
    const ddExit = new Promise<number | null>((resolve) => dd.on('exit', (code) => resolve(code)));
    // once dd is under way (its writes show in the size node 1 reports)
    expect(await poll(async () => (fs.statSync(target, { throwIfNoEntry: false })?.size ?? 0) >= 32 * MiB, 30_000, 5)).not.toBeNull();
    await c.kill9(3);
    // the kill came while dd was writing
    expect(dd.exitCode).toBeNull();
    expect(await ddExit, ddErrors).toBe(0);
    const expected = sha256(data);
    expect((await fileDigest(c.path(2, 'written'))).stdout.split(' ')[0]).toBe(expected);
    // node 3's copies missed writes: degraded until it is back
    expect((await status(c)).degradedObjects).toBeGreaterThan(0);

    await c.mount(3);
    expect(await poll(async () => (await status(c)).degradedObjects === 0, REPAIR_WAIT_MS, 500)).not.toBeNull();
    expect(await whole(c, c.path(1, 'written'))).toBe(true);
    expect((await fileDigest(c.path(3, 'written'))).stdout.split(' ')[0]).toBe(expected);
    fs.rmSync(source, { force: true });
  });

  it('costs a reader nothing: a whole read through another node is right', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3 }));
    const data = randomBytes(64 * MiB);
    fs.writeFileSync(c.path(1, 'read'), data);
    const reader = timed(`dd if=${c.path(1, 'read')} bs=1M iflag=direct status=none | sha256sum`);
    await c.kill9(2);
    const read = await reader;
    expect(read.code, read.stderr).toBe(0);
    expect(read.stdout.split(' ')[0]).toBe(sha256(data));
    expect(read.ms).toBeLessThan(BOUND_ASSERTED_MS);
  });

  it('costs an overwrite (O_TRUNC) of files with copies on it one bound at most: the next ones do not wait for it again', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3 }));
    const files = Array.from({ length: 9 }, (_, i) => c.path(2, `over${i}`));
    for (const file of files) fs.writeFileSync(file, randomBytes(3 * MiB));
    for (const file of files) expect((await stripeOf(c, file)).objects.some((o) => o.replicas.some((r) => r.node === 3))).toBe(true);
    await c.kill9(3);
    const overwrite = (file: string) => {
      const startMs = Date.now();
      fs.writeFileSync(file, `new ${file}`);
      return Date.now() - startMs;
    };
    expect(overwrite(files[0])).toBeLessThan(BOUND_ASSERTED_MS);
    // the first found node 3 down: together, the others take less than one bound
    let restMs = 0;
    for (const file of files.slice(1)) restMs += overwrite(file);
    expect(restMs).toBeLessThan(PEER_BOUND_MS);
    for (const file of files) expect(fs.readFileSync(c.path(1, path.basename(file)), 'utf8')).toBe(`new ${file}`);
  });
});

describe('the root node killed with kill -9, two copies', () => {
  it('fails an fsync on another node within one bound, not one per wait (its data, then its commit)', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3 }));
    const target = c.path(2, 'synced');
    // made while every node is up: copies of it are on the root
    fs.writeFileSync(target, randomBytes(6 * MiB));
    expect((await stripeOf(c, c.path(1, 'synced'))).objects.some((o) => o.replicas.some((r) => r.node === 1))).toBe(true);
    // opened before the kill (an open may need the root); the fsync is what is timed
    const script = [
      'import os, time', `fd = os.open(${JSON.stringify(target)}, os.O_WRONLY)`,
      `os.kill(${c.pid(1)!}, 9)`, 'os.write(fd, os.urandom(6 << 20))', 'started = time.monotonic()',
      'try:', '    os.fsync(fd); said = "ok"', 'except OSError as e:', '    said = e.errno',
      'print(said, int((time.monotonic() - started) * 1000))',
    ].join('\n');
    const run = await timed(`python3 -c '${script}'`);
    expect(run.code, run.stderr).toBe(0);
    const [said, msText] = run.stdout.trim().split(' ');
    // the other copies took the data, but only the root commits it
    expect(said).toBe('5');
    // the writes waited for the root's copies up to the bound: the commit then fails
    // at once instead of waiting a bound of its own (it took ~10 s)
    expect(Number(msText)).toBeLessThan(1.5 * PEER_BOUND_MS);
  });
});

describe('a copy that missed writes while another node holds the file open', () => {
  it('is not read by that node once the writer has committed', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3 }));
    const old = randomBytes(6 * MiB);
    fs.writeFileSync(c.path(1, 'shared'), old);
    const { objects } = await stripeOf(c, c.path(1, 'shared'));
    expect(objects.some((o) => o.replicas[0].node === 3)).toBe(true);
    // node 2 holds the file open, reading it later with O_DIRECT (no page cache)
    const script = [
      'import os, mmap, sys, hashlib', `fd = os.open(${JSON.stringify(c.path(2, 'shared'))}, os.O_RDONLY | os.O_DIRECT)`,
      'print("open", flush=True)', 'sys.stdin.readline()', 'buf = mmap.mmap(-1, 1 << 20)', 'h = hashlib.sha256()', 'off = 0',
      'while True:', '    n = os.preadv(fd, [buf], off)', '    if n == 0: break', '    h.update(buf[:n]); off += n', 'print(h.hexdigest(), flush=True)',
    ].join('\n');
    const reader = spawn('timeout', ['-k', '2', '90', 'python3', '-c', script], { stdio: ['pipe', 'pipe', 'inherit'] });
    let said = '';
    reader.stdout.on('data', (chunk: Buffer) => (said += chunk.toString()));
    try {
      expect(await poll(async () => said.includes('open'), BOUND_ASSERTED_MS, 50)).not.toBeNull();
      // node 3's copies miss the new content, and are marked stale by the fsync
      await c.kill9(3);
      const fresh = randomBytes(6 * MiB);
      const source = path.join(testDir(), 'fresh');
      fs.writeFileSync(source, fresh);
      const written = await timed(`dd if=${source} of=${c.path(1, 'shared')} bs=1M conv=notrunc,fsync status=none`);
      expect(written.code, written.stderr).toBe(0);
      // back, with its old bytes (no repair while the file is open)
      await c.mount(3);
      reader.stdin.write('\n');
      expect(await poll(async () => /[0-9a-f]{64}/.test(said), 30_000, 50)).not.toBeNull();
      expect(said.match(/[0-9a-f]{64}/)![0]).toBe(sha256(fresh));
      fs.rmSync(source, { force: true });
    } finally {
      reader.kill('SIGKILL');
    }
  });
});

describe('a writer whose node dies in the middle of overwriting a file', () => {
  it('leaves copies that read the same everywhere once its node is back', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3 }));
    fs.writeFileSync(c.path(1, 'overwritten'), randomBytes(16 * MiB));
    // overwrites the file in place, 1 MiB at a time, until its node dies under it
    const script = [
      'import os', `fd = os.open(${JSON.stringify(c.path(2, 'overwritten'))}, os.O_WRONLY)`, 'i = 0',
      'while True:', '    os.pwrite(fd, os.urandom(1 << 20), (i % 16) << 20)', '    i += 1',
    ].join('\n');
    const writer = spawn('timeout', ['-k', '2', '60', 'python3', '-c', script], { stdio: 'ignore' });
    const exited = new Promise<void>((resolve) => writer.on('exit', () => resolve()));
    try {
      await new Promise((resolve) => setTimeout(resolve, 1500));
      expect(writer.exitCode).toBeNull();
      await c.kill9(2);
      await exited;
    } finally {
      writer.kill('SIGKILL');
    }
    await c.mount(2);
    // every copy is compared with the first good one: all the same once repaired
    let scrubbed = '';
    const clean = await poll(async () => {
      const scrub = await c.kdfs(['scrub', '--json', c.path(1, 'overwritten')]);
      scrubbed = scrub.stdout + scrub.stderr;
      return scrub.code === 0;
    }, REPAIR_WAIT_MS, 500);
    // (once seen failing in CI, not reproduced since: what the root did, if it does again)
    const rootSaid = () => fs.readFileSync(path.join(c.nodeDir(1), 'kdfs.log'), 'utf8').split('\n').filter((line) => /repair|reconcil|stale/i.test(line)).slice(-30).join('\n');
    // which copy, on which node: the scrub's words and the layout
    const described = async () => `${(await c.kdfs(['scrub', c.path(1, 'overwritten')])).stdout}\n${(await c.kdfs(['getstripe', '--json', c.path(1, 'overwritten')])).stdout}`;
    expect(clean, `last scrub: ${scrubbed}\n${clean === null ? await described() : ''}\nthe root's log:\n${clean === null ? rootSaid() : ''}`).not.toBeNull();
    expect(await whole(c, c.path(1, 'overwritten'))).toBe(true);
    const digests = await Promise.all([1, 2, 3].map(async (id) => (await fileDigest(c.path(id, 'overwritten'))).stdout));
    expect(new Set(digests).size).toBe(1);
  });
});

describe('a writer killed with its writes past the committed size', () => {
  it('leaves nothing that comes back when the file is extended: zeros are read there', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3 }));
    const kept = randomBytes(4 * MiB);
    fs.writeFileSync(c.path(1, 'grown'), kept);
    const stored = () => [1, 2, 3].reduce((sum, id) => sum + objectBytes(c.nodeDir(id)), 0);
    const before = stored();
    // node 2 writes 4 MiB more, never fsynced nor closed: whole units go to the copies at once
    const script = [
      'import os, sys', `fd = os.open(${JSON.stringify(c.path(2, 'grown'))}, os.O_WRONLY)`,
      'os.pwrite(fd, b"\\xab" * (4 << 20), 4 << 20)', 'print("written", flush=True)', 'sys.stdin.readline()',
    ].join('\n');
    const writer = spawn('timeout', ['-k', '2', '60', 'python3', '-c', script], { stdio: ['pipe', 'pipe', 'inherit'] });
    let said = '';
    writer.stdout.on('data', (chunk: Buffer) => (said += chunk.toString()));
    try {
      expect(await poll(async () => said.includes('written'), BOUND_ASSERTED_MS, 50)).not.toBeNull();
      // both copies of the 4 MiB reached the disks
      expect(await poll(async () => stored() >= before + 8 * MiB, BOUND_ASSERTED_MS, 50)).not.toBeNull();
      await c.kill9(2);
    } finally {
      writer.kill('SIGKILL');
    }
    expect(fs.statSync(c.path(1, 'grown')).size).toBe(4 * MiB);
    await c.mount(2);
    // extended by another node: the dead writer's bytes are not the file's
    fs.truncateSync(c.path(1, 'grown'), 8 * MiB);
    for (const id of [1, 2, 3]) {
      const content = (await timed(`dd if=${c.path(id, 'grown')} bs=1M iflag=direct status=none | sha256sum`)).stdout.split(' ')[0];
      expect(content, `read through node ${id}`).toBe(sha256(Buffer.concat([kept, Buffer.alloc(4 * MiB)])));
    }
  });
});

describe('a truncation of a copy on a dead node, given up by its caller', () => {
  // The caller took it as failed (the copy marked stale, then repaired); sent
  // later to the node back at new addresses, it would cut a good copy (found by
  // the differential test with kills: a repaired copy cut short afterwards).
  it('never reaches the node once it is back at new addresses', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3 }));
    const { file, index, replica, copy } = await fileWithCopyOnNode3(c, 'kept');
    const held = fs.statSync(copy).size;
    expect(held).toBeGreaterThan(0);
    const before = await node3Addresses(c);
    const { fsid } = await readSuperblock(c.nodeDir(2));
    // as node 2 would: its credentials, the data key the service gives members
    const meta = await metaClientFor(c.nodeDir(2));
    const agent = new RemoteAgent(before.address, before.dataAddress, fsid);
    try {
      await c.kill9(3);
      const key = { ino: Number(fs.statSync(file).ino), index, replica };
      await expect(agent.truncate(key, 0)).rejects.toMatchObject({ errno: E.EIO });
      await c.mountElsewhere(3);
      const after = await node3Addresses(c);
      expect(after.address).not.toBe(before.address);
      agent.moveTo(after.address, after.dataAddress);
      // the agent answers at its new address (what the truncation would have waited for)...
      expect((await agent.sums(key, 0, 0)).length).toBe(held);
      // ...and the truncation never comes: gRPC sent a call it waited for again
      // within a second of its channel closing (RETRY_MAX_MS)
      expect(await poll(async () => fs.statSync(copy).size !== held, 3000, 50)).toBeNull();
    } finally {
      agent.close();
      meta.disconnect();
    }
  }, 60_000);
});

describe('a write of a copy given up by its caller, delivered late', () => {
  // Its caller took it as failed (the copy marked stale, then repaired from the
  // other copy): bytes still on their way (a stopped node, a cut link) must not
  // change the repaired copy when they arrive.
  it('is refused by the copy once a repair has fenced it: the copies stay equal', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3 }));
    const { file, index, replica, replicaCount, copy } = await fileWithCopyOnNode3(c, 'repaired');
    const node3 = await node3Addresses(c);
    const { fsid } = await readSuperblock(c.nodeDir(2));
    // as node 2 would: its credentials, the data key the service gives members
    const meta = await metaClientFor(c.nodeDir(2));
    const relay = await HoldingRelay.start(node3.dataAddress);
    const agent = new RemoteAgent(node3.address, relay.address, fsid);
    try {
      const ino = Number(fs.statSync(file).ino);
      const key = { ino, index, replica };
      expect((await agent.sums(key, 0, 0)).length).toBeGreaterThan(0);
      await agent.read(key, 0, 1);
      // the link is cut: the write waits in it, and its caller gives up
      relay.hold();
      await expect(agent.write(key, 0, Buffer.alloc(64 * 1024, 0xee))).rejects.toMatchObject({ errno: E.EIO });
      // as the writer's close would: the copy is stale, and repaired
      await meta.markStale(ino, [index * replicaCount + replica]);
      expect(await poll(() => whole(c, file), REPAIR_WAIT_MS, 200)).not.toBeNull();
      const repaired = fs.readFileSync(copy);
      // the link is back: the write arrives, and is answered
      await relay.release(10_000);
      expect(fs.readFileSync(copy).equals(repaired)).toBe(true);
      const scrub = await c.kdfs(['scrub', c.mnt(1)]);
      expect(scrub.code, scrub.stdout + scrub.stderr).toBe(0);
      // emptied, the file is given a new layout: its copies, fenced, take its writes
      // (a new layout's generation goes on from the old one's)
      fs.truncateSync(file, 0);
      const stripe = await stripeOf(c, file);
      expect(stripe.generation).toBeGreaterThan(0);
      const set = await c.kdfs(['setstripe', '--unit', String(stripe.unitBytes), '--count', String(stripe.count), file]);
      expect(set.code, set.stderr).toBe(0);
      expect((await stripeOf(c, file)).generation).toBeGreaterThan(stripe.generation);
      const again = randomBytes(3 * MiB);
      fs.writeFileSync(file, again);
      expect(await whole(c, file)).toBe(true);
      expect(fs.readFileSync(c.path(1, 'repaired')).equals(again)).toBe(true);
    } finally {
      agent.close();
      relay.close();
      meta.disconnect();
    }
  }, 90_000);
});

describe('a node stopped with SIGSTOP, two copies', () => {
  it('holds up neither stat and ls nor a whole read of a file striped over it', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3 }));
    const data = randomBytes(24 * MiB);
    fs.writeFileSync(c.path(1, 'striped'), data);
    const nodes = new Set((await stripeOf(c, c.path(1, 'striped'))).objects.flatMap((o) => o.replicas.map((r) => r.node)));
    expect(nodes.has(3)).toBe(true);
    stopped = c.pid(3)!;
    process.kill(stopped, 'SIGSTOP');
    const looked = await timed(`stat ${c.path(2, 'striped')} && ls -l ${c.mnt(2)}`);
    expect(looked.code, looked.stderr).toBe(0);
    expect(looked.ms).toBeLessThan(BOUND_ASSERTED_MS);
    const read = await fileDigest(c.path(2, 'striped'));
    expect(read.code, read.stderr).toBe(0);
    expect(read.stdout.split(' ')[0]).toBe(sha256(data));
    expect(read.ms).toBeLessThan(BOUND_ASSERTED_MS);
  });
});

describe('a node down past the grace period', () => {
  it('has its copies made again on the other nodes, and the ones it had removed once it is back', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3, rootMountArgs: ['-o', 'repair_grace=2'] }));
    const data = randomBytes(12 * MiB);
    fs.writeFileSync(c.path(1, 'kept'), data);
    const onNode3 = (await stripeOf(c, c.path(1, 'kept'))).objects.flatMap((o, index) =>
      o.replicas.flatMap((r, replica) => (r.node === 3 ? [copyPath(c, c.path(1, 'kept'), 3, index, replica)] : [])));
    expect(onNode3.length).toBeGreaterThan(0);
    await c.kill9(3);
    expect(await poll(() => whole(c, c.path(1, 'kept'), 3), REPAIR_WAIT_MS, 500)).not.toBeNull();
    expect((await fileDigest(c.path(2, 'kept'))).stdout.split(' ')[0]).toBe(sha256(data));
    expect((await status(c)).degradedObjects).toBe(0);
    // the copies node 3 had are still on its disk; once it is back, they go
    expect(onNode3.filter((copy) => fs.existsSync(copy))).toEqual(onNode3);
    await c.mount(3);
    expect(await poll(async () => onNode3.every((copy) => !fs.existsSync(copy)), REPAIR_WAIT_MS, 500)).not.toBeNull();
    expect(await whole(c, c.path(3, 'kept'), 3)).toBe(true);
    expect((await fileDigest(c.path(3, 'kept'))).stdout.split(' ')[0]).toBe(sha256(data));
  });
});

describe('a stale copy whose node has no room', () => {
  it('is tried again later and later, not at every round, and brought up to date once there is room', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3 }));
    // node 3's objects on a small disk of their own
    const objects = path.join(c.nodeDir(3), 'objects');
    expect((await command('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'kdfs-test-full', objects])).code).toBe(0);
    try {
      for (let b = 0; b < 256; b++) fs.mkdirSync(path.join(objects, b.toString(16).padStart(2, '0')));
      const { file, index, replica } = await fileWithCopyOnNode3(c, 'grown');
      const ino = fs.statSync(file).ino;
      await c.kill9(3);
      // grown while node 3 is away: its copies are stale, and need more room once brought up to date
      fs.appendFileSync(file, randomBytes(6 * MiB));
      const filler = path.join(objects, 'filler');
      expect((await command('dd', ['if=/dev/zero', `of=${filler}`, 'bs=64K', 'status=none'])).stderr).toMatch(/No space left/);
      await c.mount(3);
      const copyFailed = new RegExp(`repair of inode ${ino} object ${index}, copy ${replica} on node 3`, 'g');
      const attempts = () => fs.readFileSync(path.join(c.nodeDir(1), 'kdfs.log'), 'utf8').match(copyFailed)?.length ?? 0;
      expect(await poll(async () => attempts() > 0, REPAIR_WAIT_MS)).not.toBeNull();
      const first = attempts();
      // a window of 12 s, in which a retry at every round (1 s) would make 12
      await new Promise((resolve) => setTimeout(resolve, 12_000));
      expect(attempts() - first).toBeLessThanOrEqual(4);
      fs.rmSync(filler);
      // tried again once the room is seen, not at the end of the file's backoff (16 s by now)
      const triedAgain = /repair: room was freed on a node: the \d+ files whose copies could not be made are tried again now/;
      expect(await poll(async () => triedAgain.test(fs.readFileSync(path.join(c.nodeDir(1), 'kdfs.log'), 'utf8')), REPAIR_WAIT_MS, 200)).not.toBeNull();
      expect(await poll(async () => (await status(c)).degradedObjects === 0, REPAIR_WAIT_MS, 500)).not.toBeNull();
      expect(await whole(c, c.path(3, 'grown'))).toBe(true);
    } finally {
      await command('umount', ['-l', objects]);
    }
  });
});

describe('a byte flipped in a copy on disk', () => {
  it('is found by kdfs scrub, which exits 1; kdfs scrub --repair mends it and exits 0; the file reads back whole', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3 }));
    const data = randomBytes(6 * MiB);
    fs.writeFileSync(c.path(1, 'flipped'), data);
    const { copy } = await damageCopy(c, c.path(1, 'flipped'), 0, 0, 1000, 1000, data, 0xff);

    const found = await c.kdfs(['scrub', '--json', c.path(2, 'flipped')]);
    expect(found.code, found.stderr).toBe(1);
    expect(JSON.parse(found.stdout)).toMatchObject({ checked: 3, corrupt: 1 });
    const repaired = await c.kdfs(['scrub', '--repair', '--json', c.path(2, 'flipped')]);
    expect(repaired.code, repaired.stderr).toBe(0);
    expect(JSON.parse(repaired.stdout)).toMatchObject({ repaired: 1 });
    // object 0 holds units 0 and 3 of the file
    expect(fs.readFileSync(copy).subarray(0, MiB).equals(data.subarray(0, MiB))).toBe(true);
    expect((await fileDigest(c.path(3, 'flipped'))).stdout.split(' ')[0]).toBe(sha256(data));
    expect((await c.kdfs(['scrub', '--json', c.path(2, 'flipped')])).code).toBe(0);
  });

  it('is found by the background scrub by itself, and repaired', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3, rootMountArgs: ['-o', 'scrub_interval=1,scrub_rate=64'] }));
    const data = randomBytes(6 * MiB);
    fs.writeFileSync(c.path(1, 'scrubbed'), data);
    const { copy } = await damageCopy(c, c.path(1, 'scrubbed'), 2, 1, 5, 2 * MiB + 5, data, 0x80);
    // nobody reads the file: the scrub finds the bad block, and repair mends it
    expect(await poll(async () => fs.readFileSync(copy)[5] === data[2 * MiB + 5], REPAIR_WAIT_MS, 500)).not.toBeNull();
    expect(await poll(() => whole(c, c.path(1, 'scrubbed')), REPAIR_WAIT_MS, 500)).not.toBeNull();
    expect((await status(c)).checksumErrors).toBeGreaterThan(0);
  });

  it('is never returned to a reader, which gets the other copy; the bad copy is repaired and counted', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3 }));
    const data = randomBytes(6 * MiB);
    fs.writeFileSync(c.path(1, 'read'), data);
    const first = await damageCopy(c, c.path(1, 'read'), 1, 0, 77, MiB + 77, data, 0x01);
    const { copy } = first;
    // node `first.node` reads its own copy first: it meets the bad block
    const read = await fileDigest(c.path(first.node, 'read'));
    expect(read.code, read.stderr).toBe(0);
    expect(read.stdout.split(' ')[0]).toBe(sha256(data));
    expect(await poll(async () => (await status(c)).checksumErrors > 0, BOUND_ASSERTED_MS, 500)).not.toBeNull();
    expect(await poll(() => whole(c, c.path(1, 'read')), REPAIR_WAIT_MS, 500)).not.toBeNull();
    expect(fs.readFileSync(copy).subarray(0, 1024).equals(data.subarray(MiB, MiB + 1024))).toBe(true);
  });
});

describe('a node cut off by a network partition', () => {
  it('leaves the others going on, gives its own clients EIO within the bound, and heals when the link is back', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3, network: true }));
    const net = c.network!;
    const before = randomBytes(12 * MiB);
    fs.writeFileSync(c.path(1, 'before'), before);
    net.cut(3);
    try {
      // the others: the namespace answers, files read whole and new ones are written
      const looked = await timed(`ls -l ${c.mnt(2)} && stat ${c.path(2, 'before')}`);
      expect(looked.code, looked.stderr).toBe(0);
      expect(looked.ms).toBeLessThan(BOUND_ASSERTED_MS);
      const read = await fileDigest(c.path(2, 'before'));
      expect(read.stdout.split(' ')[0]).toBe(sha256(before));
      expect(read.ms).toBeLessThan(BOUND_ASSERTED_MS);
      const during = randomBytes(12 * MiB);
      const source = path.join(testDir(), 'during');
      fs.writeFileSync(source, during);
      const written = await timed(`dd if=${source} of=${c.path(1, 'during')} bs=1M conv=fsync status=none`);
      expect(written.code, written.stderr).toBe(0);
      expect(written.ms).toBeLessThan(BOUND_ASSERTED_MS);
      // the node cut off: what needs the root fails within the bound
      const cutOff = await timed(`stat ${c.path(3, 'never-seen')}`);
      expect(cutOff.code).not.toBe(0);
      expect(cutOff.stderr).toMatch(/Input\/output error/);
      expect(cutOff.ms).toBeLessThan(BOUND_ASSERTED_MS);
      expect(await poll(async () => (await status(c)).nodes.find((n) => n.id === 3)?.state === 'down', BOUND_ASSERTED_MS, 500)).not.toBeNull();

      net.heal(3);
      expect(await poll(async () => (await status(c)).nodes.every((n) => n.state === 'up'), REPAIR_WAIT_MS, 500)).not.toBeNull();
      expect(await poll(async () => (await status(c)).degradedObjects === 0, REPAIR_WAIT_MS, 500)).not.toBeNull();
      expect((await fileDigest(c.path(3, 'during'))).stdout.split(' ')[0]).toBe(sha256(during));
      expect((await fileDigest(c.path(3, 'before'))).stdout.split(' ')[0]).toBe(sha256(before));
      fs.rmSync(source, { force: true });
    } finally {
      net.heal(3);
    }
  });
});
