// fsx (test/tools/fsx.py, after fsx of xfstests and LTP) on node 2's mount: random
// reads, writes, mmap reads and writes, truncations, fsyncs, close/reopen and
// copy_file_range (within the file and from another file) of up to 1 MiB on a
// file of up to 16 MiB, every read checked against fsx's model of the file.
// After each seed, node 3 must read exactly what the model holds.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, ROOT } from '../harness/cluster.js';

const FSX = path.join(ROOT, 'test', 'tools', 'fsx.py');
const SEEDS = Array.from({ length: 13 }, (_, i) => i + 1);
/** Operations per seed: about 6 s a seed on this machine, 80 s for the 13 seeds. */
const OPS = Number(process.env.KDFS_FSX_OPS ?? 900);

let cluster: Cluster;
let local: string;

function fsx(args: string[], timeoutMs: number): Promise<{ code: number | string; stdout: string; stderr: string; ms: number }> {
  const started = Date.now();
  return new Promise((resolve) => {
    execFile('python3', [FSX, ...args], { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      const e = err as { code?: number | string; killed?: boolean } | null;
      resolve({ code: e ? (e.killed ? 'timeout' : e.code ?? 1) : 0, stdout, stderr, ms: Date.now() - started });
    });
  });
}

beforeAll(async () => {
  cluster = await Cluster.start({ nodes: 3 });
  local = fs.mkdtempSync(path.join(os.tmpdir(), 'kdfs-fsx-'));
});
afterAll(async () => {
  await cluster?.stop();
  if (local) fs.rmSync(local, { recursive: true, force: true });
});

describe('fsx on node 2, 1 MiB operations, copy_file_range, mmap', () => {
  for (const seed of SEEDS) {
    it(`seed ${seed}: ${OPS} operations pass, and node 3 reads what the model holds`, async () => {
      const file = `fsx-${seed}`;
      const model = path.join(local, `model-${seed}`);
      const run = await fsx(['-N', String(OPS), '-S', String(seed), '-o', '1m', '-l', '16m', '-c', '20',
        '--copy-range', '--model-out', model, cluster.path(2, file)], 90_000);
      console.log(`fsx seed ${seed}: ${run.ms} ms: ${run.stdout.trim().split('\n').slice(-1)[0]}`);
      if (run.code !== 0) console.log(run.stdout, run.stderr);
      expect({ code: run.code, stderr: run.stderr }).toEqual({ code: 0, stderr: '' });
      expect(run.stdout).toContain(`All ${OPS} operations completed A-OK!`);
      const want = fs.readFileSync(model);
      const got = fs.readFileSync(cluster.path(3, file));
      expect(got.length).toBe(want.length);
      if (!got.equals(want)) {
        const first = got.findIndex((b, i) => b !== want[i]);
        throw new Error(`node 3 reads other bytes than the model of seed ${seed} from offset ${first} (0x${first.toString(16)})`);
      }
    }, 100_000);
  }
});
