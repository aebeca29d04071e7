// DIR/kdfs.run: which process serves the node directory, and where it is mounted.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { nodePaths } from '../format/paths.js';

export interface RunInfo { pid: number; mountPoint: string; address: string }

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

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
