// The checkpoint workload: 3 writers at once, each committing a checkpoint of
// its own STATE-byte task (ckptWriter.ts), the way SCR/VeloC applications
// checkpoint; aggregate MiB/s from the first start to the last commit. On
// kDFS the writers run on nodes 1, 2 and 3 (one each, through its own mount),
// in directories placed local-first (1 and 2 copies) and round-robin (2
// copies, the default); on the local disk and GlusterFS, in one directory.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { dropCaches } from './systems.js';

export const WRITERS = 3;
/** The checkpoint systems: where each of the 3 writers writes. */
export interface CheckpointTarget { name: string; label: string; dirs: string[] }

/** kDFS targets made in the cluster whose node mounts are mnt, mnt2, mnt3 under clusterDir. */
export function kdfsCheckpointTargets(clusterDir: string, kdfsCommand: string): CheckpointTarget[] {
  const mounts = [1, 2, 3].map((id) => path.join(clusterDir, id === 1 ? 'mnt' : `mnt${id}`));
  const made = (sub: string, args: string[]) => {
    mkdirSync(path.join(mounts[0], sub), { recursive: true });
    const result = spawnSync(kdfsCommand, ['setstripe', ...args, path.join(mounts[0], sub)], { encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`kdfs setstripe ${args.join(' ')}: ${result.stderr.trim()}`);
    return mounts.map((m) => path.join(m, sub));
  };
  return [
    { name: 'kdfs-lf1', label: 'kdfs local-first 1 copy', dirs: made('ckpt-lf1', ['--policy', 'local-first', '--replicas', '1']) },
    { name: 'kdfs-lf2', label: 'kdfs local-first 2 copies', dirs: made('ckpt-lf2', ['--policy', 'local-first', '--replicas', '2']) },
    { name: 'kdfs-rr2', label: 'kdfs round-robin 2 copies', dirs: made('ckpt-rr2', ['--policy', 'round-robin', '--replicas', '2']) },
  ];
}

/** One run on a target: the aggregate MiB/s of 3 concurrent checkpoints of stateBytes each. */
export async function runCheckpoint(target: CheckpointTarget, stateBytes: number, run: number): Promise<number> {
  for (const dir of target.dirs) rmSync(path.join(dir, `run${run}`), { recursive: true, force: true });
  dropCaches();
  const writer = path.join(__dirname, 'ckptWriter.js');
  const started = process.hrtime.bigint();
  await Promise.all(Array.from({ length: WRITERS }, (_, i) => new Promise<void>((resolve, reject) => {
    const appDir = path.join(target.dirs[i % target.dirs.length], `run${run}`, `app${i + 1}`);
    const child = spawn(process.execPath, [writer, appDir, String(stateBytes)], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`writer ${i + 1}: ${stderr.trim() || `exit ${code}`}`))));
  })));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  for (const dir of target.dirs) rmSync(path.join(dir, `run${run}`), { recursive: true, force: true });
  return (WRITERS * stateBytes) / 2 ** 20 / seconds;
}
