// The scheduler's control tree MOUNT/.kdfs/scheduler and placement policies
// (docs/scheduler.md): probes loaded through one node are seen and sampled on
// every other, attributes change at once everywhere, errors are configfs's,
// custom modules in MOUNT/.kdfs/modules load without a restart and cannot
// stall a mount, the configuration survives the root's restart, and
// `kdfs setstripe --policy` places new files where the policy says.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster } from '../harness/cluster.js';
import { MiB, stripeOf, timed, type StripeJson } from '../harness/faults.js';
import { poll } from '../harness/locker.js';
import { expectErrno } from '../harness/posix.js';

let cluster: Cluster;

beforeAll(async () => {
  cluster = await Cluster.start({ nodes: 3 });
});
afterAll(async () => {
  await cluster?.stop();
});

/** A path in node `id`'s control tree. */
const tree = (id: number, ...parts: string[]) => cluster.path(id, '.kdfs', 'scheduler', ...parts);
/** A path in node `id`'s modules directory. */
const moduleFile = (id: number, name: string) => cluster.path(id, '.kdfs', 'modules', `${name}.js`);
const read = (file: string) => fs.readFileSync(file, 'utf8').trim();
/** Runs a command line as nobody (uid and gid 65534, no groups), within 30 s. */
const asNobody = (line: string) => timed(`setpriv --reuid=65534 --regid=65534 --clear-groups ${line}`);

/** The result of a read that may fail for a while (null then). */
function tryRead(file: string): string | null {
  try {
    return read(file);
  } catch {
    return null;
  }
}

/** The mean time between two samples a node's probe takes, in ms, from its
 *  `samples` file: from the first increase seen to `intervals` more. */
async function sampleIntervalMs(samplesFile: string, intervals: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  const start = Number(read(samplesFile));
  let first: { atMs: number; count: number } | null = null;
  for (;;) {
    if (Date.now() > deadline) throw new Error(`${samplesFile}: not ${intervals} samples more within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
    const count = Number(read(samplesFile));
    const atMs = Date.now();
    if (first === null) {
      if (count !== start) first = { atMs, count };
    } else if (count >= first.count + intervals) {
      return (atMs - first.atMs) / (count - first.count);
    }
  }
}

/** kdfs getstripe --json of many files, a few at a time. */
async function layoutsOf(files: string[]): Promise<StripeJson[]> {
  const layouts: StripeJson[] = new Array(files.length);
  let next = 0;
  await Promise.all(Array.from({ length: 4 }, async () => {
    while (next < files.length) {
      const i = next++;
      layouts[i] = await stripeOf(cluster, files[i]);
    }
  }));
  return layouts;
}

/** Each object's copies sit on distinct nodes of the cluster, all good. */
function expectValid(layout: StripeJson, replicas = 2): void {
  expect(layout.objects.length).toBeGreaterThan(0);
  for (const object of layout.objects) {
    const nodes = object.replicas.map((r) => r.node);
    expect(nodes.length, JSON.stringify(layout)).toBe(replicas);
    expect(new Set(nodes).size, JSON.stringify(layout)).toBe(replicas);
    for (const node of nodes) expect([1, 2, 3]).toContain(node);
    for (const r of object.replicas) expect(r.state).toBe('good');
  }
}

/** Whether every object of the layout has its first copy on `node` and its other copies elsewhere. */
function firstOn(layout: StripeJson, node: number): boolean {
  return layout.objects.every((o) => o.replicas[0].node === node && o.replicas.slice(1).every((r) => r.node !== node));
}

describe('the control directory .kdfs', () => {
  it('is hidden from the root listing but reachable by name on every node, and cannot be removed or renamed', () => {
    fs.writeFileSync(cluster.path(1, 'visible'), 'a file of the root');
    for (const id of [1, 2, 3]) {
      const listing = fs.readdirSync(cluster.mnt(id));
      expect(listing).toContain('visible');
      expect(listing).not.toContain('.kdfs');
      expect(fs.readdirSync(cluster.path(id, '.kdfs')).sort()).toEqual(['modules', 'scheduler']);
      const st = fs.statSync(cluster.path(id, '.kdfs'));
      expect(st.isDirectory()).toBe(true);
      expect(st.uid).toBe(0);
      expect(fs.readdirSync(tree(id)).sort()).toEqual(['probes', 'schedulers']);
    }
    // modules/ is empty yet: only its protection keeps it
    expect(fs.readdirSync(cluster.path(2, '.kdfs', 'modules'))).toEqual([]);
    expectErrno(() => fs.rmdirSync(cluster.path(2, '.kdfs', 'modules')), 'EBUSY');
    expectErrno(() => fs.rmdirSync(cluster.path(3, '.kdfs', 'scheduler')), 'EBUSY');
    expectErrno(() => fs.renameSync(cluster.path(2, '.kdfs'), cluster.path(2, 'kdfs-moved')), 'EBUSY');
    expectErrno(() => fs.renameSync(cluster.path(1, '.kdfs', 'modules'), cluster.path(1, '.kdfs', 'mods')), 'EBUSY');
    for (const id of [1, 2, 3]) expect(fs.readdirSync(cluster.path(id, '.kdfs')).sort()).toEqual(['modules', 'scheduler']);
  }, 30_000);
});

describe('a probe loaded through one node', () => {
  it('is listed and sampled on another, its probe_period set anywhere takes effect everywhere, and rmdir unloads it everywhere', async () => {
    // node 3 looks first (no negative entry may stay cached), node 2 loads it
    expectErrno(() => fs.statSync(tree(3, 'probes', 'mem_probe')), 'ENOENT');
    fs.mkdirSync(tree(2, 'probes', 'mem_probe'));
    expect(fs.statSync(tree(3, 'probes', 'mem_probe')).isDirectory()).toBe(true);
    expect(fs.readdirSync(tree(3, 'probes'))).toEqual(['mem_probe']);
    expect(fs.readdirSync(tree(3, 'probes', 'mem_probe')).sort()).toEqual(['description', 'probe_period', 'ram_free', 'ram_total', 'samples']);
    expect(fs.readdirSync(tree(3, 'probes', 'mem_probe', 'ram_free')).sort()).toEqual(['nodes', 'value']);
    const ramTotal = Number(read(tree(3, 'probes', 'mem_probe', 'ram_total', 'value')));
    const ramFree = Number(read(tree(3, 'probes', 'mem_probe', 'ram_free', 'value')));
    expect(ramTotal).toBeGreaterThan(0);
    expect(ramTotal).toBeLessThanOrEqual(os.totalmem());
    expect(ramFree).toBeGreaterThan(0);
    expect(ramFree).toBeLessThanOrEqual(ramTotal);
    expect(read(tree(3, 'probes', 'mem_probe', 'probe_period'))).toBe('1000');
    // every node samples it and sends its values: nodes lists all three
    const everyNode = await poll(async () => {
      const lines = (tryRead(tree(3, 'probes', 'mem_probe', 'ram_free', 'nodes')) ?? '').split('\n');
      return lines.length === 3 && lines.every((line, i) => new RegExp(`^${i + 1} \\d+$`).test(line));
    }, 10_000, 100);
    expect(everyNode, read(tree(3, 'probes', 'mem_probe', 'ram_free', 'nodes'))).not.toBeNull();

    const samples = tree(3, 'probes', 'mem_probe', 'samples');
    const beforeMs = await sampleIntervalMs(samples, 3, 10_000);
    fs.writeFileSync(tree(2, 'probes', 'mem_probe', 'probe_period'), '500\n');
    expect(read(tree(3, 'probes', 'mem_probe', 'probe_period'))).toBe('500');
    expect(read(tree(1, 'probes', 'mem_probe', 'probe_period'))).toBe('500');
    const afterMs = await sampleIntervalMs(samples, 4, 10_000);
    // node 3 samples about twice as often (and never faster than the period)
    expect(beforeMs).toBeGreaterThan(900);
    expect(afterMs).toBeGreaterThan(400);
    expect(afterMs * 1.4, `${beforeMs} ms between samples before, ${afterMs} ms after`).toBeLessThanOrEqual(beforeMs);

    // values that are not integers in range are refused, and change nothing
    for (const bad of ['abc\n', '50\n', '3600001\n', '12.5\n', '\n']) {
      expectErrno(() => fs.writeFileSync(tree(2, 'probes', 'mem_probe', 'probe_period'), bad), 'EINVAL');
    }
    expectErrno(() => fs.writeFileSync(tree(3, 'probes', 'mem_probe', 'probe_period'), 'abc'), 'EINVAL');
    expect(read(tree(3, 'probes', 'mem_probe', 'probe_period'))).toBe('500');

    fs.rmdirSync(tree(2, 'probes', 'mem_probe'));
    expect(fs.readdirSync(tree(3, 'probes'))).toEqual([]);
    expectErrno(() => fs.statSync(tree(3, 'probes', 'mem_probe')), 'ENOENT');
    expectErrno(() => fs.readFileSync(tree(3, 'probes', 'mem_probe', 'ram_free', 'value')), 'ENOENT');
    expectErrno(() => fs.rmdirSync(tree(3, 'probes', 'mem_probe')), 'ENOENT');
  }, 60_000);
});

describe('the control tree refuses', () => {
  it('unknown modules, files, busy probes, unknown ports, non-empty schedulers and users other than root, with configfs errors', async () => {
    expectErrno(() => fs.mkdirSync(tree(2, 'probes', 'no_such_probe')), 'ENOENT');
    expectErrno(() => fs.mkdirSync(tree(2, 'schedulers', 'nosched', 'least-loaded')), 'ENOENT');
    // a built-in policy is not a probe
    expectErrno(() => fs.mkdirSync(tree(2, 'probes', 'least-loaded')), 'EINVAL');
    // files may not be made in the tree
    expectErrno(() => fs.writeFileSync(tree(2, 'probes', 'a-file'), 'x'), 'EPERM');
    expectErrno(() => fs.writeFileSync(tree(3, 'a-file'), 'x'), 'EPERM');
    expectErrno(() => fs.mkdirSync(tree(3, 'more')), 'EPERM');

    fs.mkdirSync(tree(2, 'probes', 'load_probe'));
    expectErrno(() => fs.mkdirSync(tree(3, 'probes', 'load_probe')), 'EEXIST');
    fs.mkdirSync(tree(2, 'schedulers', 's1'));
    fs.mkdirSync(tree(3, 'schedulers', 's1', 'least-loaded'));
    const policy = (id: number, ...parts: string[]) => tree(id, 'schedulers', 's1', 'least-loaded', ...parts);
    expect(fs.readdirSync(policy(2)).sort()).toEqual(['description', 'sharpness', 'weights']);
    fs.symlinkSync('../../../probes/load_probe/load_per_cpu', policy(2, 'port_load'));
    expect(fs.readlinkSync(policy(3, 'port_load'))).toBe('../../../probes/load_probe/load_per_cpu');
    expect(fs.readdirSync(policy(1)).sort()).toEqual(['description', 'port_load', 'sharpness', 'weights']);
    expectErrno(() => fs.writeFileSync(tree(2, 'schedulers', 's1', 'least-loaded', 'a-file'), 'x'), 'EPERM');

    // a linked probe is busy
    expectErrno(() => fs.rmdirSync(tree(3, 'probes', 'load_probe')), 'EBUSY');
    expect(fs.readdirSync(tree(1, 'probes'))).toContain('load_probe');
    // a port the policy lacks, a target that is no probe's value
    expectErrno(() => fs.symlinkSync('../../../probes/load_probe/load_1m', policy(2, 'port_nosuch')), 'EINVAL');
    expectErrno(() => fs.symlinkSync('/etc/passwd', policy(2, 'port_load2')), 'EINVAL');
    // a scheduler with a policy is not empty
    expectErrno(() => fs.rmdirSync(tree(3, 'schedulers', 's1')), 'ENOTEMPTY');
    expect(fs.readdirSync(tree(2, 'schedulers'))).toEqual(['s1']);

    // only root changes the tree (others may read it)
    const denied = await asNobody(`mkdir ${tree(2, 'probes', 'disk_probe')}`);
    expect(denied.code).not.toBe(0);
    expect(denied.stderr).toMatch(/Permission denied/);
    const echoed = await asNobody(`sh -c 'echo 4 > ${policy(2, 'sharpness')}'`);
    expect(echoed.code).not.toBe(0);
    expect(echoed.stderr).toMatch(/Permission denied/);
    const removed = await asNobody(`rmdir ${tree(2, 'schedulers', 's1', 'least-loaded')}`);
    expect(removed.code).not.toBe(0);
    expect(removed.stderr).toMatch(/Permission denied/);
    const module = await asNobody(`sh -c 'echo "module.exports = {}" > ${moduleFile(2, 'evil')}'`);
    expect(module.code).not.toBe(0);
    expect(module.stderr).toMatch(/Permission denied/);
    const readable = await asNobody(`cat ${policy(2, 'sharpness')}`);
    expect(readable.code, readable.stderr).toBe(0);
    expect(readable.stdout.trim()).toBe('2');
    expect(fs.readdirSync(tree(3, 'probes'))).toEqual(['load_probe']);
    expect(read(policy(3, 'sharpness'))).toBe('2');

    // and everything comes apart again, in order
    fs.unlinkSync(policy(3, 'port_load'));
    fs.rmdirSync(tree(2, 'probes', 'load_probe'));
    fs.rmdirSync(tree(2, 'schedulers', 's1', 'least-loaded'));
    fs.rmdirSync(tree(3, 'schedulers', 's1'));
    for (const id of [1, 2, 3]) {
      expect(fs.readdirSync(tree(id, 'probes'))).toEqual([]);
      expect(fs.readdirSync(tree(id, 'schedulers'))).toEqual([]);
    }
  }, 60_000);
});

const MY_PROBE = `
module.exports = {
  kind: 'probe',
  description: 'the answer, and the answer times a factor',
  values: ['answer', 'scaled'],
  attributes: { factor: { default: 3, min: 0, max: 1000 } },
  sample(context) {
    return { answer: 42, scaled: 42 * Number(context.attributes.factor) };
  },
};
`;

describe('a custom probe module', () => {
  it('written into .kdfs/modules through one node is loaded through another without a restart and read on a third; its attribute changes its value', async () => {
    fs.writeFileSync(moduleFile(1, 'my_probe'), MY_PROBE);
    fs.mkdirSync(tree(3, 'probes', 'my_probe'));
    expect(fs.readdirSync(tree(2, 'probes', 'my_probe')).sort()).toEqual(['answer', 'description', 'factor', 'probe_period', 'samples', 'scaled']);
    expect(read(tree(2, 'probes', 'my_probe', 'description'))).toBe('the answer, and the answer times a factor');
    expect(read(tree(2, 'probes', 'my_probe', 'answer', 'value'))).toBe('42');
    expect(read(tree(2, 'probes', 'my_probe', 'factor'))).toBe('3');
    expect(read(tree(2, 'probes', 'my_probe', 'scaled', 'value'))).toBe('126');
    fs.writeFileSync(tree(1, 'probes', 'my_probe', 'factor'), '10\n');
    expect(read(tree(2, 'probes', 'my_probe', 'factor'))).toBe('10');
    const changed = await poll(async () => tryRead(tree(2, 'probes', 'my_probe', 'scaled', 'value')) === '420', 10_000, 100);
    expect(changed, `scaled is ${tryRead(tree(2, 'probes', 'my_probe', 'scaled', 'value'))}`).not.toBeNull();
    // out of its declared range
    expectErrno(() => fs.writeFileSync(tree(2, 'probes', 'my_probe', 'factor'), '1001\n'), 'EINVAL');
    // every node runs it, with the new factor
    const everywhere = await poll(async () => tryRead(tree(1, 'probes', 'my_probe', 'scaled', 'nodes')) === '1 420\n2 420\n3 420', 10_000, 100);
    expect(everywhere, tryRead(tree(1, 'probes', 'my_probe', 'scaled', 'nodes')) ?? '').not.toBeNull();
  }, 60_000);

  it('with a syntax error, or not a probe, is refused with EINVAL; fixed, it loads', () => {
    fs.writeFileSync(moduleFile(1, 'broken_probe'), 'module.exports = { kind: "probe", values: [\n');
    expectErrno(() => fs.mkdirSync(tree(3, 'probes', 'broken_probe')), 'EINVAL');
    fs.writeFileSync(moduleFile(1, 'no_values'), 'module.exports = { kind: "probe", values: [], sample() { return {}; } };\n');
    expectErrno(() => fs.mkdirSync(tree(2, 'probes', 'no_values')), 'EINVAL');
    expect(fs.readdirSync(tree(2, 'probes'))).not.toContain('broken_probe');
    // the same name, now a valid module: read again, no restart
    fs.writeFileSync(moduleFile(2, 'broken_probe'), MY_PROBE.replace('the answer, and', 'mended: the answer, and'));
    fs.mkdirSync(tree(3, 'probes', 'broken_probe'));
    expect(read(tree(1, 'probes', 'broken_probe', 'description'))).toBe('mended: the answer, and the answer times a factor');
    expect(read(tree(1, 'probes', 'broken_probe', 'answer', 'value'))).toBe('42');
    fs.rmdirSync(tree(1, 'probes', 'broken_probe'));
  }, 30_000);

  it('whose sample() loops forever does not stall the mount: file calls go on, and its value gives EIO within a few seconds', async () => {
    fs.writeFileSync(moduleFile(1, 'loop_probe'), `
module.exports = { kind: 'probe', description: 'never returns', values: ['v'], attributes: {}, sample() { for (;;) {} } };
`);
    fs.mkdirSync(tree(3, 'probes', 'loop_probe'));
    try {
      const reading = timed(`cat ${tree(3, 'probes', 'loop_probe', 'v', 'value')}`);
      let readDone = false;
      void reading.then(() => (readDone = true));
      // node 3's mount meanwhile: every call answered at once, while the probe spins
      let calls = 0;
      let slowestMs = 0;
      const file = cluster.path(3, 'during-loop');
      const bound = <T>(work: Promise<T>) => Promise.race([work, new Promise<never>((_, reject) => setTimeout(() => reject(new Error('a file call took more than 5 s')), 5000))]);
      while (!readDone || calls < 3) {
        const started = Date.now();
        await bound(fs.promises.stat(cluster.mnt(3)));
        await bound(fs.promises.writeFile(file, `call ${calls}`));
        expect(await bound(fs.promises.readFile(file, 'utf8'))).toBe(`call ${calls}`);
        await bound(fs.promises.readdir(tree(3, 'probes')));
        slowestMs = Math.max(slowestMs, Date.now() - started);
        calls++;
      }
      expect(slowestMs, `the slowest of ${calls} rounds of file calls`).toBeLessThan(1500);
      const read1 = await reading;
      expect(read1.code).not.toBe(0);
      expect(read1.stderr).toMatch(/Input\/output error/);
      expect(read1.ms).toBeLessThan(6000);
      // and again: EIO, not a hang
      const read2 = await timed(`cat ${tree(2, 'probes', 'loop_probe', 'v', 'value')}`);
      expect(read2.code).not.toBe(0);
      expect(read2.stderr).toMatch(/Input\/output error/);
      expect(read2.ms).toBeLessThan(6000);
      // the other probes still sample
      expect(read(tree(2, 'probes', 'my_probe', 'answer', 'value'))).toBe('42');
    } finally {
      fs.rmdirSync(tree(2, 'probes', 'loop_probe'));
    }
    expect(fs.readdirSync(tree(3, 'probes'))).not.toContain('loop_probe');
  }, 60_000);
});

const ONLY_THREE = `
module.exports = {
  kind: 'policy',
  description: 'every new object on node 3',
  ports: [],
  attributes: {},
  weights(nodes) {
    return Object.fromEntries(nodes.map((node) => [node.id, node.id === 3 ? 1 : 0]));
  },
};
`;

describe('placement', () => {
  it('local-first puts the first copy of every object on the writing node, the second elsewhere, for a burst of creates too', async () => {
    fs.mkdirSync(cluster.path(1, 'local'));
    const set = await cluster.kdfs(['setstripe', '--policy', 'local-first', '--replicas', '2', cluster.path(1, 'local')]);
    expect(set.code, set.stderr).toBe(0);
    expect(await stripeOf(cluster, cluster.path(3, 'local'))).toMatchObject({ replicas: 2, placement: 'local-first' });
    fs.writeFileSync(cluster.path(2, 'local', 'by2'), randomBytes(3 * MiB));
    fs.writeFileSync(cluster.path(3, 'local', 'by3'), randomBytes(3 * MiB));
    const [by2, by3] = await layoutsOf([cluster.path(1, 'local', 'by2'), cluster.path(1, 'local', 'by3')]);
    for (const layout of [by2, by3]) {
      expectValid(layout);
      expect(layout.objects.length).toBe(3);
    }
    expect(firstOn(by2, 2), JSON.stringify(by2)).toBe(true);
    expect(firstOn(by3, 3), JSON.stringify(by3)).toBe(true);
    // the second copies are shared among the partners
    expect(new Set(by2.objects.map((o) => o.replicas[1].node))).toEqual(new Set([1, 3]));

    // a burst of creates (past the first, made under node 2's delegation of the
    // directory), small first, then grown out of inline storage
    fs.mkdirSync(cluster.path(2, 'local', 'burst'));
    const names = Array.from({ length: 50 }, (_, i) => `f${i}`);
    for (const name of names) fs.writeFileSync(cluster.path(2, 'local', 'burst', name), 'small');
    const content = randomBytes(MiB);
    for (const name of names) fs.writeFileSync(cluster.path(2, 'local', 'burst', name), content);
    const layouts = await layoutsOf(names.map((name) => cluster.path(3, 'local', 'burst', name)));
    layouts.forEach((layout) => expectValid(layout));
    const elsewhere = names.filter((_, i) => !firstOn(layouts[i], 2));
    expect(elsewhere, elsewhere.map((name) => `${name}: ${JSON.stringify(layouts[names.indexOf(name)])}`).join('\n')).toEqual([]);
    for (const name of names.slice(0, 5)) expect(fs.readFileSync(cluster.path(1, 'local', 'burst', name)).equals(content)).toBe(true);
  }, 90_000);

  it('follows a custom policy module loaded in a scheduler, and falls back to round-robin once it is unloaded', async () => {
    fs.writeFileSync(moduleFile(1, 'only_three'), ONLY_THREE);
    fs.mkdirSync(tree(2, 'schedulers', 'only3'));
    // a scheduler without a policy places nothing yet
    fs.mkdirSync(cluster.path(1, 'three'));
    const early = await cluster.kdfs(['setstripe', '--policy', 'only3', '--count', '1', cluster.path(1, 'three')]);
    expect(early.code).not.toBe(0);
    fs.mkdirSync(tree(2, 'schedulers', 'only3', 'only_three'));
    const weights = tree(3, 'schedulers', 'only3', 'only_three', 'weights');
    const weighed = await poll(async () => /^3 [1-9]/m.test(tryRead(weights) ?? ''), 10_000, 100);
    expect(weighed, tryRead(weights) ?? '').not.toBeNull();
    expect(read(weights)).toBe('1 0\n2 0\n3 1');
    const set = await cluster.kdfs(['setstripe', '--policy', 'only3', '--count', '1', cluster.path(1, 'three')]);
    expect(set.code, set.stderr).toBe(0);
    expect(await stripeOf(cluster, cluster.path(2, 'three'))).toMatchObject({ count: 1, placement: 'only3' });
    const names = Array.from({ length: 20 }, (_, i) => `f${i}`);
    for (const name of names) fs.writeFileSync(cluster.path(2, 'three', name), randomBytes(100 * 1024));
    const layouts = await layoutsOf(names.map((name) => cluster.path(1, 'three', name)));
    for (const layout of layouts) {
      expectValid(layout);
      expect(layout.objects.length).toBe(1);
    }
    expect(layouts.map((l) => l.objects[0].replicas[0].node)).toEqual(names.map(() => 3));

    // unloaded: new files are still made, by round-robin (no longer all on node 3)
    fs.rmdirSync(tree(3, 'schedulers', 'only3', 'only_three'));
    expect(fs.readdirSync(tree(1, 'schedulers', 'only3'))).toEqual([]);
    fs.mkdirSync(cluster.path(3, 'three', 'after'));
    let made = 0;
    let offThree = false;
    const deadline = Date.now() + 20_000;
    while (!offThree && Date.now() < deadline) {
      const file = cluster.path(3, 'three', 'after', `g${made++}`);
      fs.writeFileSync(file, randomBytes(100 * 1024));
      const layout = await stripeOf(cluster, file);
      expectValid(layout);
      offThree = layout.objects[0].replicas[0].node !== 3;
    }
    expect(offThree, `${made} files made after the policy was unloaded, all on node 3`).toBe(true);
    fs.writeFileSync(cluster.path(2, 'three', 'later'), 'inherits the policy, still made');
    expect(read(cluster.path(1, 'three', 'later'))).toBe('inherits the policy, still made');
    // a scheduler without policies is no placement
    const again = await cluster.kdfs(['setstripe', '--policy', 'only3', cluster.path(1, 'local')]);
    expect(again.code).not.toBe(0);
    fs.rmdirSync(tree(2, 'schedulers', 'only3'));
  }, 90_000);

  it('accepts the built-in free-space and least-loaded policies, and refuses an unknown one with a clear message', async () => {
    for (const policy of ['free-space', 'least-loaded']) {
      const dir = cluster.path(1, policy);
      fs.mkdirSync(dir);
      const set = await cluster.kdfs(['setstripe', '--policy', policy, dir]);
      expect(set.code, set.stderr).toBe(0);
      expect(await stripeOf(cluster, cluster.path(2, policy))).toMatchObject({ placement: policy });
      for (const id of [1, 2, 3]) fs.writeFileSync(cluster.path(id, policy, `by${id}`), randomBytes(3 * MiB));
      const layouts = await layoutsOf([1, 2, 3].map((id) => cluster.path(3, policy, `by${id}`)));
      for (const layout of layouts) {
        expectValid(layout);
        // three objects drawn on three nodes: each first copy on another node
        expect(layout.objects.length).toBe(3);
        expect(new Set(layout.objects.map((o) => o.replicas[0].node)).size, JSON.stringify(layout)).toBe(3);
      }
    }
    fs.mkdirSync(cluster.path(1, 'unknown'));
    const refused = await cluster.kdfs(['setstripe', '--policy', 'nosuch', cluster.path(1, 'unknown')]);
    expect(refused.code).not.toBe(0);
    expect(refused.stderr).toMatch(/no placement policy "nosuch"/);
    expect(refused.stderr).toMatch(/\.kdfs\/scheduler/);
    expect(await stripeOf(cluster, cluster.path(1, 'unknown'))).toMatchObject({ placement: 'round-robin' });
    const badName = await cluster.kdfs(['setstripe', '--policy', 'No Such', cluster.path(1, 'unknown')]);
    expect(badName.code).toBe(2);
  }, 90_000);
});

describe('the scheduler configuration', () => {
  it('survives the restart of the root node: probes and their attributes, seen from node 2 and node 1', async () => {
    fs.mkdirSync(tree(2, 'probes', 'disk_probe'));
    fs.writeFileSync(tree(3, 'probes', 'disk_probe', 'probe_period'), '2500\n');
    expect(read(tree(1, 'probes', 'disk_probe', 'probe_period'))).toBe('2500');
    const before = fs.readdirSync(tree(1, 'probes'));
    expect(before).toContain('disk_probe');

    await cluster.unmount(1);
    await cluster.mount(1);
    // node 2 finds the root again
    const back = await poll(async () => (tryRead(tree(2, 'probes', 'disk_probe', 'probe_period')) === '2500'), 30_000, 200);
    expect(back).not.toBeNull();
    for (const id of [2, 1]) {
      expect(fs.readdirSync(tree(id, 'probes'))).toEqual(before);
      expect(read(tree(id, 'probes', 'disk_probe', 'probe_period'))).toBe('2500');
      // loaded, with factor 10, by 'a custom probe module' above
      expect(read(tree(id, 'probes', 'my_probe', 'factor'))).toBe('10');
    }
    // and the root samples again
    const diskFree = Number(read(tree(1, 'probes', 'disk_probe', 'disk_free', 'value')));
    expect(diskFree).toBeGreaterThan(0);
    expect(diskFree).toBeLessThanOrEqual(Number(read(tree(1, 'probes', 'disk_probe', 'disk_total', 'value'))));
    expect(read(tree(1, 'probes', 'my_probe', 'scaled', 'value'))).toBe('420');
  }, 90_000);
});
