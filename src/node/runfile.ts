// DIR/kdfs.run: which process serves the node directory, and where it is mounted.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { nodePaths } from '../format/paths.js';

export interface RunInfo {
  pid: number;
  /** When the process started (clock ticks since boot): with the pid, its identity. */
  startTicks: number;
  mountPoint: string;
  address: string;
}

/** Field 22 of /proc/PID/stat, or null if there is no such process. */
export function startTicks(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
  } catch {
    return null;
  }
}

/** The run file of dir if the process it names is alive and is the one that
 *  wrote it (after a crash, its pid may belong to another process by now). */
export function runningNode(dir: string): RunInfo | null {
  const info = readRunFile(dir);
  if (!info || !isAlive(info.pid) || startTicks(info.pid) !== info.startTicks) return null;
  return info;
}

export function readRunFile(dir: string): RunInfo | null {
  try {
    const info = JSON.parse(readFileSync(nodePaths(dir).run, 'utf8')) as RunInfo;
    return Number.isInteger(info.pid) ? info : null;
  } catch {
    return null;
  }
}

export function writeRunFile(dir: string, info: RunInfo): void {
  writeFileSync(nodePaths(dir).run, JSON.stringify(info) + '\n');
}

export function removeRunFile(dir: string): void {
  rmSync(nodePaths(dir).run, { force: true });
}

/** True while the process runs. A zombie has exited: it only waits to be reaped
 *  (by an init that may take seconds to do it). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}
