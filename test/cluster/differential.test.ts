// The same random sequence of operations on a kDFS mount and on a local
// directory: after every step, the outcome of the operation (success or errno)
// and the whole tree (names, types, modes, sizes, link counts, contents) must
// be the same. KDFS_TEST_SEED replays a sequence; the seed is in every failure.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster } from '../harness/cluster.js';

const SEED = Number(process.env.KDFS_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31));
const STEPS = Number(process.env.KDFS_TEST_STEPS ?? 400);
const KiB = 1024;
const FALLOC = path.join(__dirname, '..', 'tools', 'falloc.py');

/** mulberry32: a small, seedable generator. */
function generator(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const DIRS = ['', 'a', 'b', 'a/c'];
const NAMES = ['f', 'g', 'h', 'c'];

type Op =
  | { kind: 'write'; path: string; offset: number; size: number; fill: number }
  | { kind: 'truncate'; path: string; size: number }
  | { kind: 'fallocate'; path: string; mode: number; offset: number; size: number }
  | { kind: 'rename' | 'link'; from: string; to: string }
  | { kind: 'unlink' | 'mkdir' | 'rmdir'; path: string };

function randomOp(random: () => number): Op {
  const pick = <T>(items: T[]) => items[Math.floor(random() * items.length)];
  const anyPath = () => [pick(DIRS), pick(NAMES)].filter(Boolean).join('/');
  const entry = () => (random() < 0.3 ? pick(DIRS.slice(1)) : anyPath());
  const r = random();
  // preallocation (growing the file or not), punched holes, zeroed ranges
  if (r < 0.05) return { kind: 'fallocate', path: anyPath(), mode: pick([0, 1, 3, 0x10, 0x11]), offset: Math.floor(random() * 300 * KiB), size: 1 + Math.floor(random() * 150 * KiB) };
  if (r < 0.35) return { kind: 'write', path: anyPath(), offset: Math.floor(random() * 300 * KiB), size: 1 + Math.floor(random() * 150 * KiB), fill: Math.floor(random() * 256) };
  if (r < 0.45) return { kind: 'truncate', path: anyPath(), size: Math.floor(random() * 400 * KiB) };
  if (r < 0.6) return { kind: 'rename', from: entry(), to: entry() };
  if (r < 0.7) return { kind: 'link', from: anyPath(), to: anyPath() };
  if (r < 0.8) return { kind: 'unlink', path: entry() };
  if (r < 0.9) return { kind: 'mkdir', path: pick(DIRS.slice(1)) };
  return { kind: 'rmdir', path: pick(DIRS.slice(1)) };
}

/** Applies an operation under root; returns 'ok' or the errno code. */
function apply(root: string, op: Op): string {
  const at = (p: string) => path.join(root, p);
  try {
    switch (op.kind) {
      case 'write': {
        const fd = fs.openSync(at(op.path), fs.constants.O_RDWR | fs.constants.O_CREAT, 0o644);
        try {
          // a pattern that depends on the position, so that misplaced bytes show
          const data = Buffer.alloc(op.size);
          for (let i = 0; i < op.size; i++) data[i] = (op.fill + ((op.offset + i) >> 9)) & 0xff;
          fs.writeSync(fd, data, 0, data.length, op.offset);
        } finally {
          fs.closeSync(fd);
        }
        break;
      }
      case 'truncate':
        fs.truncateSync(at(op.path), op.size);
        break;
      case 'fallocate': {
        // (node:fs has no fallocate)
        const run = spawnSync('python3', [FALLOC, at(op.path), String(op.mode), String(op.offset), String(op.size)], { encoding: 'utf8', timeout: 30_000 });
        if (run.status !== 0) throw new Error(`falloc.py: ${run.stderr || run.signal}`);
        return run.stdout.trim();
      }
      case 'rename':
        fs.renameSync(at(op.from), at(op.to));
        break;
      case 'link':
        fs.linkSync(at(op.from), at(op.to));
        break;
      case 'unlink':
        fs.unlinkSync(at(op.path));
        break;
      case 'mkdir':
        fs.mkdirSync(at(op.path), 0o755);
        break;
      case 'rmdir':
        fs.rmdirSync(at(op.path));
        break;
    }
    return 'ok';
  } catch (err) {
    return (err as NodeJS.ErrnoException).code ?? String(err);
  }
}

/** Everything the comparison looks at, one line per entry, in name order. */
function describeTree(root: string): string[] {
  const lines: string[] = [];
  const walk = (dir: string) => {
    for (const name of fs.readdirSync(dir).sort()) {
      const file = path.join(dir, name);
      const st = fs.lstatSync(file);
      const rel = path.relative(root, file);
      if (st.isDirectory()) {
        lines.push(`${rel}/ mode=${(st.mode & 0o7777).toString(8)} nlink=${st.nlink}`);
        walk(file);
      } else {
        const sha = createHash('sha256').update(fs.readFileSync(file)).digest('hex').slice(0, 16);
        lines.push(`${rel} mode=${(st.mode & 0o7777).toString(8)} nlink=${st.nlink} size=${st.size} sha=${sha}`);
      }
    }
  };
  walk(root);
  lines.push(`. nlink=${fs.statSync(root).nlink}`);
  return lines;
}

/** One step: op made on the local directory and through node `doer`'s mount;
 *  the outcomes must be the same, and the tree as node `viewer` sees it. */
function compareStep(local: string, remote: (node: number) => string, op: Op, doer: number, viewer: number, step: number, history: string[]): void {
  const expected = apply(local, op);
  const got = apply(remote(doer), op);
  history.push(`${step}: node ${doer}: ${JSON.stringify(op)} -> ${expected}`);
  const context = `seed ${SEED}, step ${step}, seen from node ${viewer}\n${history.slice(-8).join('\n')}`;
  expect(got, context).toBe(expected);
  expect(describeTree(remote(viewer)), context).toEqual(describeTree(local));
}

/** steps random operations from seed; before a step in events, node `node` is
 *  killed (kill -9) or mounted again; pick names who makes each step and who
 *  looks, knowing whether that node is up. */
async function stepsWithEvents(
  cluster: Cluster, local: string, remote: (node: number) => string, seed: number, steps: number,
  node: number, events: Map<number, 'kill' | 'mount'>, pick: (step: number, nodeUp: boolean) => [doer: number, viewer: number],
): Promise<void> {
  const random = generator(seed);
  const history: string[] = [];
  let nodeUp = true;
  for (let step = 0; step < steps; step++) {
    const event = events.get(step);
    if (event === 'kill') await cluster.kill9(node);
    if (event === 'mount') await cluster.mount(node);
    if (event) {
      nodeUp = event === 'mount';
      history.push(`${step}: node ${node}: ${event}`);
    }
    const [doer, viewer] = pick(step, nodeUp);
    compareStep(local, remote, randomOp(random), doer, viewer, step, history);
  }
}

/** A 3-node cluster and a local directory, made before the tests of a describe
 *  and removed after: `cluster()` and `local()` once made; `remote(node)` is the
 *  directory compared, as that node mounts it. */
function clusterAndLocal(options: { etcd?: boolean } = {}): { cluster: () => Cluster; local: () => string; remote: (node: number) => string } {
  let cluster: Cluster | null = null;
  let local = '';
  const remote = (node: number) => cluster!.path(node, 'diff');
  beforeAll(async () => {
    cluster = await Cluster.start({ nodes: 3, ...options });
    local = fs.mkdtempSync(path.join(os.tmpdir(), 'kdfs-diff-local-'));
    fs.mkdirSync(remote(1));
    // small stripe units: every file spans objects on all three nodes
    const stripe = await cluster.kdfs(['setstripe', '--unit', '64K', '--count', '3', remote(1)]);
    expect(stripe.code).toBe(0);
  });
  afterAll(async () => {
    await cluster?.stop();
    if (local) fs.rmSync(local, { recursive: true, force: true });
  });
  return { cluster: () => cluster!, local: () => local, remote };
}

describe(`differential test against a local directory (seed ${SEED})`, () => {
  const { cluster, local, remote } = clusterAndLocal();

  it(`gives the same outcomes and trees for ${STEPS} random operations made on nodes 2, 3 and 1, seen from another node`, () => {
    console.log(`differential test: seed ${SEED} (replay with KDFS_TEST_SEED=${SEED})`);
    const random = generator(SEED);
    const history: string[] = [];
    for (let step = 0; step < STEPS; step++) {
      const op = randomOp(random);
      // as users work: through the nodes that are not the root, each seeing at
      // once what the other did (and now and then through the root)
      const doer = step % 5 === 4 ? 1 : 2 + (step % 2);
      const viewer = doer === 2 ? 3 : 2;
      compareStep(local(), remote, op, doer, viewer, step, history);
    }
  });
});

describe(`differential test with a node killed and brought back between steps (seed ${SEED})`, () => {
  const { cluster, local, remote } = clusterAndLocal();
  /** Steps at which node 3, which holds copies but is not used, is killed, and mounted again. */
  const KILLS = new Map<number, 'kill' | 'mount'>([[40, 'kill'], [90, 'mount'], [120, 'kill'], [170, 'mount']]);
  const KILL_STEPS = Math.min(STEPS, 200);

  it(`gives the same outcomes and trees through nodes 2 and 1 while node 3 dies and returns, then on node 3 once repaired`, async () => {
    await stepsWithEvents(cluster(), local(), remote, SEED ^ 0x5bd1e995, KILL_STEPS, 3, KILLS, (step) => (step % 4 === 3 ? [1, 2] : [2, 1]));
    // node 3 back for good: its copies are brought up to date, and it reads the same
    const degraded = async () => JSON.parse((await cluster().kdfs(['status', '--json', cluster().mnt(2)])).stdout).degradedObjects as number;
    const deadline = Date.now() + 60_000;
    while ((await degraded()) !== 0 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 500));
    const left = await cluster().kdfs(['status', '--degraded', cluster().mnt(2)]);
    const stripes = await Promise.all([...left.stdout.matchAll(/^  (\/.+)$/gm)].map(async (m) => (await cluster().kdfs(['getstripe', m[1]])).stdout));
    expect(await degraded(), `${left.stdout}\n${stripes.join('\n')}`).toBe(0);
    // every copy the same as the first good one, and node 3 reading what the others read
    const scrub = await cluster().kdfs(['scrub', remote(1)]);
    expect(scrub.code, scrub.stdout + scrub.stderr).toBe(0);
    expect(describeTree(remote(3))).toEqual(describeTree(local()));
  }, 300_000);
});

describe(`differential test with the metadata in etcd and its leader killed between steps (seed ${SEED})`, () => {
  const { cluster, local, remote } = clusterAndLocal({ etcd: true });
  /** Node 1 leads at first: killed at step 40 (another takes over), mounted again at 90 (it stands by). */
  const EVENTS = new Map<number, 'kill' | 'mount'>([[40, 'kill'], [90, 'mount']]);
  const LEADER_STEPS = Math.min(STEPS, 150);

  it('gives the same outcomes and trees through nodes 2 and 3 across the failover, and through node 1 once back', async () => {
    await stepsWithEvents(cluster(), local(), remote, SEED ^ 0x2545f491, LEADER_STEPS, 1, EVENTS, (step, nodeOneUp) => {
      const doer = nodeOneUp && step % 5 === 4 ? 1 : 2 + (step % 2);
      return [doer, doer === 2 ? 3 : 2];
    });
    const status = JSON.parse((await cluster().kdfs(['status', '--json', cluster().mnt(2)])).stdout) as { metaLeader: number };
    expect([2, 3]).toContain(status.metaLeader);
    expect(describeTree(remote(1))).toEqual(describeTree(local()));
  }, 300_000);
});
