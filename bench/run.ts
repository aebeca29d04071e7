// npm run bench: the same workloads, in one invocation, on a local directory, a
// 3-node kDFS cluster with two copies of each object (through node 1's mount,
// the root node's, and through node 2's, whose metadata goes over the network;
// and through node 1's in a directory of one-copy files), the metadata
// workloads on a cluster whose metadata is in etcd (through node 2), and a 3-brick
// GlusterFS volume on this machine, with the FUSE ceiling beside them. Medians of repeated runs, one
// table, JSON and SVG under bench/results/.
//   node dist/bench/run.js [--runs N] [--quick] [--no-glusterfs] [--no-ceiling] [--only WORDS] [--out DIR]
// --only runs the workloads whose names contain one of the comma-separated
// words (and the memory measure only if one of them is "memory").
import { spawnSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { LABELS, SYSTEMS, chart, median, table, type CheckpointResults, type Figure, type Results, type Row } from './report.js';
import { KDFS, ROOT, ensurePackages, etcdSystem, fuseCeiling, glusterSystem, kdfsSystems, localSystem, protectionSystems, type System } from './systems.js';
import { WRITERS, kdfsCheckpointTargets, runCheckpoint, type CheckpointTarget } from './checkpoint.js';
import { FULL, QUICK, peakMemoryWhileWriting, workloads } from './workloads.js';

interface Options { runs: number; quick: boolean; glusterfs: boolean; ceiling: boolean; only: string[] | null; out: string }

const USAGE = 'usage: run.js [--runs N] [--quick] [--no-glusterfs] [--no-ceiling] [--only WORDS] [--out DIR]';

function parseOptions(argv: string[]): Options {
  const options: Options = { runs: 3, quick: false, glusterfs: true, ceiling: true, only: null, out: path.join(ROOT, 'bench', 'results') };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--quick') options.quick = true;
    else if (arg === '--no-glusterfs') options.glusterfs = false;
    else if (arg === '--no-ceiling') options.ceiling = false;
    else if (arg === '--runs') options.runs = Number(argv[++i]);
    else if (arg === '--out' && i + 1 < argv.length) options.out = path.resolve(argv[++i]);
    else if (arg === '--only' && i + 1 < argv.length) options.only = argv[++i].toLowerCase().split(',').filter(Boolean);
    else throw new Error(`unknown option ${arg}; ${USAGE}`);
  }
  if (!Number.isInteger(options.runs) || options.runs < 1) throw new Error('--runs must be a positive integer');
  if (options.quick && !argv.includes('--runs')) options.runs = 1;
  return options;
}

/** The small-file tree: this project's own node_modules, packed once. */
function packTree(scratch: string): { file: string; entries: number } {
  const file = path.join(scratch, 'tree.tar');
  const result = spawnSync('tar', ['cf', file, '-C', ROOT, 'node_modules'], { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`tar: ${result.stderr}`);
  const entries = spawnSync('tar', ['tf', file], { encoding: 'utf8', maxBuffer: 256 << 20 }).stdout.split('\n').filter(Boolean).length;
  return { file, entries };
}

async function main(): Promise<void> {
  const options = parseOptions(process.argv.slice(2));
  const sizes = options.quick ? QUICK : FULL;
  ensurePackages(['fio']);
  // the disk the project lives on, outside any mount
  const scratch = path.join(os.tmpdir(), `kdfs-bench-${process.pid}`);
  rmSync(scratch, { recursive: true, force: true });
  mkdirSync(scratch, { recursive: true });
  const results: Results = {
    date: new Date().toISOString(),
    machine: { cpus: os.cpus().length, memoryGiB: Math.round(os.totalmem() / 2 ** 30), kernel: os.release() },
    runs: options.runs,
    quick: options.quick,
    systems: {},
    fuseCeiling: 'not measured (--no-ceiling)',
    rows: [],
    memory: '--only left it out',
    checkpoint: '--only left it out',
  };
  const systems: System[] = [];
  try {
    const tarball = packTree(scratch);
    systems.push(localSystem(scratch));
    results.systems.local = 'ok';
    systems.push(...(await kdfsSystems(scratch)));
    results.systems.kdfs = 'ok';
    results.systems.kdfs2 = 'ok';
    results.systems.kdfs1r = 'ok';
    systems.push(...(await protectionSystems(scratch)));
    results.systems.kdfsprot = 'ok';
    results.systems.kdfsopen = 'ok';
    systems.push(await etcdSystem(scratch));
    results.systems.kdfsetcd2 = 'ok';
    if (options.glusterfs) {
      try {
        systems.push(await glusterSystem(scratch));
        results.systems.glusterfs = 'ok';
      } catch (err) {
        results.systems.glusterfs = `unavailable: ${(err as Error).message}`;
        console.log(`bench: GlusterFS cannot run here, going on without it (${(err as Error).message})`);
      }
    } else {
      results.systems.glusterfs = 'not run (--no-glusterfs)';
    }
    const selected = (name: string) => options.only === null || options.only.some((word) => name.toLowerCase().includes(word));
    const list = workloads(sizes, tarball).filter((workload) => selected(workload.name));
    const figures = list.map(() => new Map<string, number[]>(systems.map((s) => [s.name, []])));
    const errors = list.map(() => new Map<string, string>());
    // runs interleave the systems (kDFS node 1 and node 2 among them), so that the machine's
    // moods fall on all of them alike
    for (let run = 1; run <= options.runs; run++) {
      for (const [w, workload] of list.entries()) {
        for (const system of systems) {
          if (errors[w].has(system.name) || (system.only && !system.only.test(workload.name))) continue;
          process.stdout.write(`bench: run ${run}/${options.runs}, ${workload.name}, ${LABELS[system.name] ?? system.name}... `);
          try {
            const figure = await workload.run(system.dir);
            figures[w].get(system.name)!.push(figure);
            console.log(`${figure.toFixed(1)} ${workload.unit}`);
          } catch (err) {
            errors[w].set(system.name, (err as Error).message);
            console.log(`failed: ${(err as Error).message}`);
          }
        }
      }
    }
    results.rows = list.map((workload, w): Row => {
      const byName: Record<string, Figure> = {};
      for (const system of SYSTEMS) {
        const runs = figures[w].get(system) ?? [];
        byName[system] = { median: median(runs), runs, ...(errors[w].has(system) ? { error: errors[w].get(system) } : {}) };
      }
      const over = (a: string, b: string) => {
        const [x, y] = [byName[a].median, byName[b].median];
        return x !== null && y ? x / y : null;
      };
      return {
        workload: workload.name,
        unit: workload.unit,
        figures: byName,
        ratios: { local: over('kdfs', 'local'), glusterfs: over('kdfs', 'glusterfs'), node2ToNode1: over('kdfs2', 'kdfs'), node2ToGlusterfs: over('kdfs2', 'glusterfs'), replicas2To1: over('kdfs', 'kdfs1r'), protectedToUnprotected: over('kdfsprot', 'kdfsopen'),
          etcdToLevel: over('kdfsetcd2', 'kdfs2'), etcdToGlusterfs: over('kdfsetcd2', 'glusterfs') },
      };
    });
    if (selected('checkpoint')) results.checkpoint = await checkpoints(systems, sizes.checkpointMiB, options.runs);
    // the memory measure: node 1's process, which also serves the metadata
    const kdfs = systems.find((s) => s.name === 'kdfs')!;
    if (selected('memory')) {
      try {
        results.memory = { writtenMiB: sizes.memoryMiB, peakRssMiB: await peakMemoryWhileWriting(kdfs.dir, sizes.memoryMiB, kdfs.pids()) };
      } catch (err) {
        results.memory = (err as Error).message;
      }
    }
  } finally {
    for (const system of systems.reverse()) await system.stop().catch(() => {});
    rmSync(scratch, { recursive: true, force: true });
  }
  if (options.ceiling) {
    console.log('bench: measuring the FUSE ceiling');
    results.fuseCeiling = fuseCeiling(options.quick ? '256M' : '2G');
  }
  mkdirSync(options.out, { recursive: true });
  const stamp = results.date.replace(/[:.]/g, '-');
  for (const name of [stamp, 'latest']) {
    writeFileSync(path.join(options.out, `${name}.json`), JSON.stringify(results, null, 2) + '\n');
    writeFileSync(path.join(options.out, `${name}.svg`), chart(results) + '\n');
  }
  console.log('\n' + table(results));
  console.log(`\nresults: ${path.join(options.out, `${stamp}.json`)} and .svg (also latest.json, latest.svg)`);
}

/** The checkpoint workload on the local disk, kDFS (local-first with 1 and 2
 *  copies, round-robin with 2; writers on nodes 1, 2, 3) and GlusterFS, interleaved. */
async function checkpoints(systems: System[], stateMiB: number, runs: number): Promise<CheckpointResults> {
  const byName = (name: string) => systems.find((s) => s.name === name);
  const targets: CheckpointTarget[] = [{ name: 'local', label: 'local', dirs: [path.join(byName('local')!.dir, 'ckpt')] }];
  targets.push(...kdfsCheckpointTargets(path.dirname(path.dirname(byName('kdfs')!.dir)), KDFS));
  const gluster = byName('glusterfs');
  if (gluster) targets.push({ name: 'glusterfs', label: 'glusterfs', dirs: [path.join(gluster.dir, 'ckpt')] });
  const figures: Record<string, Figure> = {};
  for (const target of targets) figures[target.name] = { median: null, runs: [] };
  for (let run = 1; run <= runs; run++) {
    for (const target of targets) {
      if (figures[target.name].error) continue;
      process.stdout.write(`bench: run ${run}/${runs}, checkpoint ${WRITERS} x ${stateMiB} MiB, ${target.label}... `);
      try {
        const figure = await runCheckpoint(target, stateMiB * 2 ** 20, run);
        figures[target.name].runs.push(figure);
        console.log(`${figure.toFixed(1)} MiB/s`);
      } catch (err) {
        figures[target.name].error = (err as Error).message;
        console.log(`failed: ${(err as Error).message}`);
      }
    }
  }
  for (const figure of Object.values(figures)) figure.median = median(figure.runs);
  const over = (a: string, b: string) => {
    const [x, y] = [figures[a]?.median ?? null, figures[b]?.median ?? null];
    return x !== null && y ? x / y : null;
  };
  return {
    writers: WRITERS, stateMiB, labels: Object.fromEntries(targets.map((t) => [t.name, t.label])), figures,
    ratios: { localFirst1ToLocal: over('kdfs-lf1', 'local'), localFirst2ToLocal: over('kdfs-lf2', 'local'), roundRobin2ToLocal: over('kdfs-rr2', 'local'), localFirst1ToGlusterfs: over('kdfs-lf1', 'glusterfs') },
  };
}

main().catch((err) => {
  console.error(`bench: ${(err as Error).message}`);
  process.exitCode = 1;
});
