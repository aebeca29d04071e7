// The workloads of the benchmark. Each returns one figure, higher is better.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { dropCaches } from './systems.js';

export interface Sizes {
  /** Sequential file (fio size syntax). */
  seq: string;
  /** Per writer, for the 4-writer workloads. */
  perWriter: string;
  /** Random I/O file, and how long random I/O runs (s). */
  randomFile: string;
  randomSeconds: number;
  /** Metadata: processes, and files per process. */
  mdProcesses: number;
  mdFiles: number;
  /** File written while the memory of the mount is watched (MiB). */
  memoryMiB: number;
  /** State of each checkpoint writer (MiB). */
  checkpointMiB: number;
}

export const FULL: Sizes = { seq: '2G', perWriter: '512M', randomFile: '512M', randomSeconds: 15, mdProcesses: 4, mdFiles: 2000, memoryMiB: 4096, checkpointMiB: 1024 };
export const QUICK: Sizes = { seq: '64M', perWriter: '16M', randomFile: '16M', randomSeconds: 2, mdProcesses: 2, mdFiles: 100, memoryMiB: 128, checkpointMiB: 32 };

export interface Workload {
  name: string;
  unit: 'MiB/s' | 'ops/s' | 'files/s';
  /** Runs once, in dir; returns the figure. */
  run(dir: string): Promise<number>;
}

interface FioJob { read: { bw: number; iops: number }; write: { bw: number; iops: number } }

function fio(dir: string, args: string[]): FioJob {
  const result = spawnSync('fio', [
    `--directory=${dir}`, '--ioengine=psync', '--fallocate=none', '--group_reporting', '--output-format=json', ...args,
  ], { encoding: 'utf8', timeout: 1_800_000 });
  if (result.status !== 0) throw new Error(`fio ${args.join(' ')}: ${(result.stderr || result.stdout).trim().split('\n').slice(-2).join(' / ')}`);
  // fio may print warnings before its JSON
  const json = JSON.parse(result.stdout.slice(result.stdout.indexOf('{'))) as { jobs: FioJob[] };
  return json.jobs[0];
}

const MiBps = (kibps: number) => kibps / 1024;

export function workloads(sizes: Sizes, tarball: { file: string; entries: number }): Workload[] {
  return [
    {
      name: `sequential write ${sizes.seq} (1 MiB, fsync at end)`,
      unit: 'MiB/s',
      run: async (dir) => {
        rmSync(path.join(dir, 'seq'), { force: true });
        dropCaches();
        return MiBps(fio(dir, ['--name=seqwrite', '--filename=seq', '--rw=write', '--bs=1M', `--size=${sizes.seq}`, '--end_fsync=1']).write.bw);
      },
    },
    {
      name: `sequential read ${sizes.seq} (1 MiB, cold)`,
      unit: 'MiB/s',
      run: async (dir) => {
        dropCaches();
        return MiBps(fio(dir, ['--name=seqread', '--filename=seq', '--rw=read', '--bs=1M', `--size=${sizes.seq}`]).read.bw);
      },
    },
    {
      name: `4 writers, a file each (N-N, ${sizes.perWriter} each)`,
      unit: 'MiB/s',
      run: async (dir) => {
        const sub = fresh(dir, 'nn');
        dropCaches();
        return MiBps(fio(sub, ['--name=nn', '--numjobs=4', '--rw=write', '--bs=1M', `--size=${sizes.perWriter}`, '--end_fsync=1']).write.bw);
      },
    },
    {
      name: `4 writers, one file, strided 1 MiB blocks (N-1, ${sizes.perWriter} each)`,
      unit: 'MiB/s',
      run: async (dir) => {
        const sub = fresh(dir, 'n1');
        dropCaches();
        return MiBps(fio(sub, [
          '--name=n1', '--filename=shared', '--numjobs=4', '--rw=write:3M', '--bs=1M', '--offset_increment=1M',
          `--io_size=${sizes.perWriter}`, `--size=${4 * parseSize(sizes.perWriter)}`, '--end_fsync=1',
        ]).write.bw);
      },
    },
    {
      name: `4 KiB random writes (${sizes.randomFile} file)`,
      unit: 'ops/s',
      run: async (dir) => {
        dropCaches();
        return fio(dir, ['--name=randwrite', '--filename=random', '--rw=randwrite', '--bs=4k', `--size=${sizes.randomFile}`,
          `--runtime=${sizes.randomSeconds}`, '--time_based', '--end_fsync=1']).write.iops;
      },
    },
    {
      name: `4 KiB random reads (${sizes.randomFile} file, cold)`,
      unit: 'ops/s',
      run: async (dir) => {
        dropCaches();
        return fio(dir, ['--name=randread', '--filename=random', '--rw=randread', '--bs=4k', `--size=${sizes.randomFile}`,
          `--runtime=${sizes.randomSeconds}`, '--time_based']).read.iops;
      },
    },
    {
      // mdtest's default create writes nothing; the rows after it write 100 bytes
      name: `metadata: create empty files, as mdtest (${sizes.mdProcesses} processes x ${sizes.mdFiles} files)`,
      unit: 'ops/s',
      run: (dir) => metadataPhase(dir, sizes, 'create-empty'),
    },
    ...(['create', 'stat', 'read', 'remove'] as const).map((phase): Workload => ({
      name: `metadata: ${phase} (${sizes.mdProcesses} processes x ${sizes.mdFiles} files)`,
      unit: 'ops/s',
      run: (dir) => metadataPhase(dir, sizes, phase),
    })),
    {
      name: `small files: unpack a tree (${tarball.entries} entries)`,
      unit: 'files/s',
      run: async (dir) => {
        const sub = fresh(dir, 'tree');
        dropCaches();
        const seconds = timed(() => run('tar', ['xf', tarball.file, '-C', sub]));
        return tarball.entries / seconds;
      },
    },
    {
      name: `small files: read the tree back (cold)`,
      unit: 'files/s',
      run: async (dir) => {
        dropCaches();
        const seconds = timed(() => run('sh', ['-c', `tar cf - -C ${JSON.stringify(path.join(dir, 'tree'))} . | wc -c`]));
        return tarball.entries / seconds;
      },
    },
  ];
}

/** The metadata workload: created fresh in its create phase, gone after remove;
 *  the empty files of create-empty in a tree of their own, gone once counted. */
async function metadataPhase(dir: string, sizes: Sizes, phase: 'create-empty' | 'create' | 'stat' | 'read' | 'remove'): Promise<number> {
  const base = path.join(dir, phase === 'create-empty' ? 'md-empty' : 'md');
  if (phase === 'create' || phase === 'create-empty') {
    // under dir: made through the mount being measured, as the files will be
    rmSync(base, { recursive: true, force: true });
    for (let p = 0; p < sizes.mdProcesses; p++) mkdirSync(path.join(base, `p${p}`), { recursive: true });
  }
  const worker = path.join(__dirname, 'mdWorker.js');
  const started = process.hrtime.bigint();
  await Promise.all(Array.from({ length: sizes.mdProcesses }, (_, p) => new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, [worker, path.join(base, `p${p}`), String(sizes.mdFiles), phase], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`metadata ${phase}: ${stderr.trim()}`))));
  })));
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (phase === 'remove' || phase === 'create-empty') rmSync(base, { recursive: true, force: true });
  return (sizes.mdProcesses * sizes.mdFiles) / seconds;
}

/** The peak resident memory of pids (MiB) while a file of `mib` MiB is written in dir. */
export async function peakMemoryWhileWriting(dir: string, mib: number, pids: number[]): Promise<number> {
  let peakKiB = 0;
  const sample = () => {
    for (const pid of pids) {
      const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (match) peakKiB = Math.max(peakKiB, Number(match[1]));
    }
  };
  const timer = setInterval(sample, 100);
  try {
    await new Promise<void>((resolve, reject) => {
      const dd = spawn('dd', ['if=/dev/zero', `of=${path.join(dir, 'memory')}`, 'bs=1M', `count=${mib}`, 'conv=fsync'], { stdio: 'ignore' });
      dd.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`dd exited with ${code}`))));
    });
  } finally {
    clearInterval(timer);
    sample();
    rmSync(path.join(dir, 'memory'), { force: true });
  }
  return peakKiB / 1024;
}

function fresh(dir: string, name: string): string {
  const sub = path.join(dir, name);
  rmSync(sub, { recursive: true, force: true });
  mkdirSync(sub, { recursive: true });
  return sub;
}

function run(file: string, args: string[]): void {
  const result = spawnSync(file, args, { encoding: 'utf8', timeout: 1_800_000 });
  if (result.status !== 0) throw new Error(`${file} ${args.join(' ')}: ${(result.stderr || '').trim().split('\n').slice(-2).join(' / ')}`);
}

function timed(work: () => void): number {
  const started = process.hrtime.bigint();
  work();
  return Number(process.hrtime.bigint() - started) / 1e9;
}

function parseSize(text: string): number {
  const match = /^(\d+)([KMG]?)$/.exec(text);
  if (!match) throw new Error(`bad size ${text}`);
  return Number(match[1]) * ({ '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 } as Record<string, number>)[match[2]];
}
