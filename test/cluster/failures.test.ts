// A node that dies, stops (SIGSTOP) or whose root stops: no call waits on it
// past the bound (PEER_BOUND_MS, 5 s; the tests allow twice that), what it holds
// fails with EIO and never reads as zeros, a write that could not be stored is
// never committed, new files are placed on the others, which go on, and kdfs
// status tells its state. These clusters keep one copy of every object
// (mkfs.kdfs --replicas 1): a node's data is unreadable while it is away (see
// replication.test.ts for two copies).
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster, command, testDir } from '../harness/cluster.js';
import { BOUND_ASSERTED_MS, MiB, nodeStates, sha256, stripeOf, timed } from '../harness/faults.js';
import { poll } from '../harness/locker.js';
import { readPorts } from '../../src/node/ports.js';
import { readRunFile } from '../../src/node/runfile.js';

let cluster: Cluster | null = null;
let stopped: number | null = null;

afterEach(async () => {
  if (stopped) process.kill(stopped, 'SIGCONT');
  stopped = null;
  await cluster?.stop();
  cluster = null;
});

/** sha256 of stripe unit `unit` (1 MiB units) of a file, read with O_DIRECT (no page cache). */
const unitDigest = (file: string, unit: number) => timed(`dd if=${file} bs=1M skip=${unit} count=1 iflag=direct status=none | sha256sum`);

/** Stripe object index -> node of its first copy. */
async function objectNodes(c: Cluster, file: string): Promise<number[]> {
  return (await stripeOf(c, file)).objects.map((o) => o.replicas[0].node);
}

/** A 12 MiB file written through node 1, striped over the three nodes (1 MiB units). */
async function stripedFile(c: Cluster): Promise<{ file: string; data: Buffer; nodes: number[] }> {
  const data = randomBytes(12 * MiB);
  fs.writeFileSync(c.path(1, 'striped'), data);
  const nodes = await objectNodes(c, c.path(1, 'striped'));
  expect(new Set(nodes)).toEqual(new Set([1, 2, 3]));
  return { file: c.path(2, 'striped'), data, nodes };
}

/** Expects the read of a unit that lives on an absent node to fail, within the bound. */
async function expectUnreadable(file: string, unit: number): Promise<void> {
  const read = await unitDigest(file, unit);
  expect(read.code, read.stdout).not.toBe(0);
  expect(read.stderr).toMatch(/Input\/output error/);
  expect(read.ms).toBeLessThan(BOUND_ASSERTED_MS);
}

describe('a node killed with kill -9', () => {
  it('makes reads of its objects fail with EIO within the bound, never zeros; the rest answers; back, it reads again', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3, replicas: 1 }));
    const { file, data, nodes } = await stripedFile(c);
    await c.kill9(3);

    const whole = await timed(`dd if=${file} of=/dev/null bs=1M iflag=direct status=none`);
    expect(whole.code).not.toBe(0);
    expect(whole.stderr).toMatch(/Input\/output error/);
    expect(whole.ms).toBeLessThan(BOUND_ASSERTED_MS);
    await expectUnreadable(file, nodes.indexOf(3));
    const { objects } = await stripeOf(c, c.path(2, 'striped'));
    expect(objects.map((o) => o.replicas[0].state)).toEqual(nodes.map((node) => (node === 3 ? 'missing' : 'good')));
    // what lives elsewhere reads right, and the namespace answers
    const kept = nodes.indexOf(2);
    expect((await unitDigest(file, kept)).stdout.split(' ')[0]).toBe(sha256(data.subarray(kept * MiB, (kept + 1) * MiB)));
    const listed = await timed(`ls -l ${path.dirname(file)} && stat ${file}`);
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.ms).toBeLessThan(BOUND_ASSERTED_MS);
    expect((await nodeStates(c))[3]).toBe('down');

    // its ports taken meanwhile (by this test), it comes back at others
    const oldDataPort = readPorts(c.nodeDir(3)).data;
    await c.mountElsewhere(3);
    expect(readPorts(c.nodeDir(3)).data).not.toBe(oldDataPort);
    expect(await poll(async () => (await nodeStates(c))[3] === 'up', BOUND_ASSERTED_MS)).not.toBeNull();
    // up again (at new ports): node 2 reads there at its first try, though its last call there failed
    const lostUnit = nodes.indexOf(3);
    const back = await unitDigest(file, lostUnit);
    expect(back.stderr).toBe('');
    expect(back.stdout.split(' ')[0]).toBe(sha256(data.subarray(lostUnit * MiB, (lostUnit + 1) * MiB)));
  });

  it('makes a write to its objects fail with EIO within the bound, and commits no size over what was not stored', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3, replicas: 1 }));
    // made while node 3 is up: it has an object there (new files leave out a node that is down)
    const target = c.path(2, 'written');
    fs.writeFileSync(target, '');
    await c.kill9(3);
    const data = randomBytes(12 * MiB);
    const source = path.join(testDir(), 'source');
    fs.writeFileSync(source, data);
    const written = await timed(`dd if=${source} of=${target} bs=1M conv=notrunc,fsync status=none`);
    expect(written.code).not.toBe(0);
    expect(written.stderr).toMatch(/Input\/output error/);
    expect(written.ms).toBeLessThan(BOUND_ASSERTED_MS);
    // a writer that goes on after the first error is told again at every fsync and at close
    const script = [
      'import os, sys', `fd = os.open(${JSON.stringify(target)}, os.O_WRONLY)`, 'said = []',
      `data = open(${JSON.stringify(source)}, "rb").read(4 << 20)`,
      'for step in (lambda: os.write(fd, data), lambda: os.fsync(fd), lambda: os.fsync(fd), lambda: os.close(fd)):',
      '    try:', '        step(); said.append("ok")', '    except OSError as e:', '        said.append(e.errno)',
      'print(said[1:])',
    ].join('\n');
    const again = await timed(`python3 -c '${script}'`);
    expect(again.stdout.trim()).toBe('[5, 5, 5]');

    await c.mount(3);
    const nodes = await objectNodes(c, c.path(1, 'written'));
    const firstOnNode3 = nodes.indexOf(3);
    expect(firstOnNode3).toBeGreaterThanOrEqual(0);
    // the size stops before the first byte that went nowhere: what it covers is what was written
    const stored = fs.readFileSync(c.path(1, 'written'));
    expect(stored.length).toBeLessThanOrEqual(firstOnNode3 * MiB);
    expect(stored.equals(data.subarray(0, stored.length))).toBe(true);
    fs.rmSync(source, { force: true });
  });
});

describe('a node restarted after kill -9', () => {
  it('listens where it did: a node that read from it before reads there again while the root is stopped (no address to ask)', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3, replicas: 1 }));
    const { file, data, nodes } = await stripedFile(c);
    const unit = nodes.indexOf(3);
    const expected = sha256(data.subarray(unit * MiB, (unit + 1) * MiB));
    // node 2 reads from node 3: it knows where node 3's agent listens
    expect((await unitDigest(file, unit)).stdout.split(' ')[0]).toBe(expected);
    const address = readRunFile(c.nodeDir(3))!.address;
    const ports = readPorts(c.nodeDir(3));
    expect(Object.keys(ports).sort()).toEqual(['data', 'rpc']);
    await c.kill9(3);
    await c.mount(3);
    expect(readRunFile(c.nodeDir(3))!.address).toBe(address);
    expect(readPorts(c.nodeDir(3))).toEqual(ports);
    // held open before the root stops: the read needs node 3 alone
    const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_DIRECT);
    try {
      stopped = c.pid(1)!;
      process.kill(stopped, 'SIGSTOP');
      const unitBytes = Buffer.alloc(MiB);
      expect(fs.readSync(fd, unitBytes, 0, MiB, unit * MiB)).toBe(MiB);
      expect(sha256(unitBytes)).toBe(expected);
    } finally {
      fs.closeSync(fd);
    }
  });
});

describe('a node that is down', () => {
  it('is left out of new files, which are written and read whole meanwhile', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3, replicas: 1 }));
    await c.kill9(3);
    const data = randomBytes(12 * MiB);
    const source = path.join(testDir(), 'source');
    fs.writeFileSync(source, data);
    const written = await timed(`dd if=${source} of=${c.path(2, 'new')} bs=1M conv=fsync status=none`);
    expect(written.code, written.stderr).toBe(0);
    expect(new Set(await objectNodes(c, c.path(1, 'new')))).toEqual(new Set([1, 2]));
    expect(fs.readFileSync(c.path(1, 'new')).equals(data)).toBe(true);
    // back, it takes new files again
    await c.mount(3);
    fs.writeFileSync(c.path(2, 'later'), data);
    expect(new Set(await objectNodes(c, c.path(1, 'later')))).toEqual(new Set([1, 2, 3]));
    fs.rmSync(source, { force: true });
  });
});

describe('a node whose disk is full', () => {
  it('is left out of new files, which are written whole on the others', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3, replicas: 1 }));
    // node 3's objects on a small disk of their own
    const objects = path.join(c.nodeDir(3), 'objects');
    expect((await command('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'kdfs-test-full', objects])).code).toBe(0);
    try {
      for (let b = 0; b < 256; b++) fs.mkdirSync(path.join(objects, b.toString(16).padStart(2, '0')));
      // the root probes the nodes' space every 2 s
      const probe = c.path(2, 'probe');
      expect(await poll(async () => {
        fs.rmSync(probe, { force: true });
        fs.writeFileSync(probe, '');
        return !(await objectNodes(c, c.path(1, 'probe'))).includes(3);
      }, BOUND_ASSERTED_MS)).not.toBeNull();
      // 48 MiB over three nodes would put 16 MiB on node 3: more than it has
      const data = randomBytes(48 * MiB);
      fs.writeFileSync(c.path(2, 'large'), data);
      expect(new Set(await objectNodes(c, c.path(1, 'large')))).toEqual(new Set([1, 2]));
      expect(fs.readFileSync(c.path(3, 'large')).equals(data)).toBe(true);
    } finally {
      await command('umount', ['-l', objects]);
    }
  });
});

describe('a node stopped with SIGSTOP', () => {
  it('never holds up stat and ls; reads of its objects fail within the bound, and read right once it runs again', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3, replicas: 1 }));
    const { file, data, nodes } = await stripedFile(c);
    stopped = c.pid(3)!;
    process.kill(stopped, 'SIGSTOP');

    const looked = await timed(`stat ${file} && ls -l ${path.dirname(file)} && stat ${c.path(3, '..')}`);
    expect(looked.code, looked.stderr).toBe(0);
    expect(looked.ms).toBeLessThan(BOUND_ASSERTED_MS);
    await expectUnreadable(file, nodes.indexOf(3));
    // its session and agent fall silent: suspect, then down
    expect(await poll(async () => (await nodeStates(c))[3] !== 'up', BOUND_ASSERTED_MS)).not.toBeNull();

    process.kill(stopped, 'SIGCONT');
    stopped = null;
    const unit = nodes.indexOf(3);
    const expected = sha256(data.subarray(unit * MiB, (unit + 1) * MiB));
    expect(await poll(async () => (await unitDigest(file, unit)).stdout.startsWith(expected), BOUND_ASSERTED_MS)).not.toBeNull();
    expect(await poll(async () => (await nodeStates(c))[3] === 'up', BOUND_ASSERTED_MS)).not.toBeNull();
  });
});

describe('a process waiting on a stopped root', () => {
  it('ends at once on a signal (FUSE INTERRUPT), before the bound', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3, replicas: 1 }));
    stopped = c.pid(1)!;
    process.kill(stopped, 'SIGSTOP');
    // a name node 2 never looked up: its lookup waits for the root
    const waiting = spawn('stat', [c.path(2, 'never-seen')], { stdio: 'ignore' });
    const exited = new Promise<void>((resolve) => waiting.on('exit', () => resolve()));
    try {
      // blocked in the kernel, waiting for the node process's answer
      const blocked = await poll(async () => fs.readFileSync(`/proc/${waiting.pid}/wchan`, 'utf8').includes('request_wait_answer'), BOUND_ASSERTED_MS, 20);
      expect(blocked).not.toBeNull();
      const signalledMs = Date.now();
      waiting.kill('SIGTERM');
      await exited;
      // the bound would have ended the call 5 s after it began; an interrupted
      // request is given up once it waited 1 s
      expect(Date.now() - signalledMs).toBeLessThan(3000);
    } finally {
      waiting.kill('SIGKILL');
    }
  });
});

describe('a root node stopped with SIGSTOP', () => {
  it('makes calls that need it fail with EIO within the bound on other nodes, which answer again once it runs', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3, replicas: 1 }));
    fs.mkdirSync(c.path(1, 'dir'));
    // each node keeps the members it heard of, for kdfs status without the root
    const members = path.join(c.nodeDir(2), 'members.json');
    const recorded = async () => fs.existsSync(members) && (JSON.parse(fs.readFileSync(members, 'utf8')) as unknown[]).length === 3;
    // refreshed every 5 s
    expect(await poll(recorded, 2 * BOUND_ASSERTED_MS)).not.toBeNull();
    stopped = c.pid(1)!;
    process.kill(stopped, 'SIGSTOP');
    // names node 2 never looked up: only the root can answer
    const looked = await timed(`stat ${c.path(2, 'dir', 'never-seen')}`);
    expect(looked.code).not.toBe(0);
    expect(looked.stderr).toMatch(/Input\/output error/);
    expect(looked.ms).toBeLessThan(BOUND_ASSERTED_MS);
    const status = await c.kdfs(['status', '--json', c.mnt(2)]);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stderr).toMatch(/root node does not answer/);
    const states = Object.fromEntries((JSON.parse(status.stdout) as { nodes: { id: number; state: string }[] }).nodes.map((n) => [n.id, n.state]));
    expect(states).toEqual({ 1: 'down', 2: 'up', 3: 'up' });

    process.kill(stopped, 'SIGCONT');
    stopped = null;
    expect(await poll(async () => (await timed(`touch ${c.path(2, 'dir', 'after')}`)).code === 0, BOUND_ASSERTED_MS)).not.toBeNull();
    expect(fs.existsSync(c.path(3, 'dir', 'after'))).toBe(true);
  });
});

describe('the root node\'s disk full', () => {
  it('still serves ls, stat and rm through kDFS; the space rm frees makes everything work again', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3, diskBytes: 96 * MiB }));
    const big = randomBytes(24 * MiB);
    fs.writeFileSync(c.path(1, 'big'), big);
    for (let i = 0; i < 20; i++) fs.writeFileSync(c.path(1, `small${i}`), `small ${i}`);
    // something else fills the disk (the cluster's nodes share this one)
    await command('dd', ['if=/dev/zero', `of=${path.join(c.dir, 'filler')}`, 'bs=1M']);
    const made = await timed(`for i in $(seq 1 3000); do echo x > ${c.mnt(2)}/m$i || exit 1; done`);
    expect(made.stderr).toMatch(/No space left on device/);

    const looked = await timed(`ls ${c.mnt(2)} >/dev/null && stat ${c.path(3, 'big')} && cat ${c.path(2, 'small7')}`);
    expect(looked.code, looked.stderr).toBe(0);
    expect(looked.stdout).toMatch(/small 7/);
    const removed = await timed(`rm ${c.path(2, 'big')} ${c.path(3, 'small1')}`);
    expect(removed.code, removed.stderr).toBe(0);
    expect(fs.existsSync(c.path(1, 'big'))).toBe(false);
    // the stripe objects of what was removed go: the metadata takes its reserve back
    expect(await poll(async () => (await timed(`echo after > ${c.path(2, 'after')}`)).code === 0, 20_000)).not.toBeNull();
    expect(fs.readFileSync(c.path(3, 'after'), 'utf8')).toBe('after\n');
    expect(fs.readFileSync(c.path(1, 'small7'), 'utf8')).toBe('small 7');
  });
});
