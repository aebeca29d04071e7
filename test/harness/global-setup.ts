// Before and after the whole run: stop whatever this run's crashed test workers,
// or earlier runs that are gone, left behind (node processes, FUSE mounts, files).
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { TEST_DIR_PREFIX, sweep } from './cluster.js';
import { sweepNetworks } from './netns.js';

function runnerAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function sweepLeftovers(): Promise<void> {
  const parent = path.dirname(TEST_DIR_PREFIX);
  const prefix = path.basename(TEST_DIR_PREFIX);
  for (const name of readdirSync(parent)) {
    if (!name.startsWith(prefix)) continue;
    const runner = Number(name.slice(prefix.length).split('-')[0]);
    if (runner === process.pid || !runnerAlive(runner)) await sweep(path.join(parent, name));
  }
  sweepNetworks((runner) => runner === process.pid || !runnerAlive(runner));
}

export default async function setup(): Promise<() => Promise<void>> {
  // the test workers name their directories after this process
  process.env.KDFS_TEST_RUN = String(process.pid);
  await sweepLeftovers();
  return sweepLeftovers;
}
