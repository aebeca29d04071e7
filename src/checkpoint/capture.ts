// The two ways of capturing an application's processes, behind one interface:
// programs started with `kdfs run` write their own state when asked (the
// protocol in docs/checkpoint.md), and CRIU dumps any process tree.
import { execFile, spawn } from 'node:child_process';
import { chmod, chown, readdir, rm, writeFile } from 'node:fs/promises';
import { constants, openSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { isAlive } from '../node/runfile.js';
import { environOf, type CommandRecord } from './app.js';
import { PROCS_DIR, REQUEST_FILE, criuDirName, parseAppDirName, parseProcName, taskMmName } from './names.js';
import type { Owner, Staging } from './sets.js';

const run = promisify(execFile);
const CHECKPOINT_SIGNAL = 'SIGUSR2';
/** How often processes being waited for are checked for having died. */
const LIVENESS_CHECK_MS = 250;
/** A line on the FIFO longer than this is not the protocol's. */
const FIFO_LINE_MAX_BYTES = 4096;

/** xxh64: the hash of the state its process reported (the C library does), null if it did not. */
export interface Task { pid: number; rank: number; nodeId: number; stateBytes: number; xxh64: string | null }

export interface Taken {
  tasks: Task[];
  /** Names, relative to the staging directory, of what the capture wrote there. */
  files: string[];
}

export interface Capture {
  readonly name: CommandRecord['capture'];
  take(appDir: string, staging: Staging, nodeId: number, owner: Owner, timeoutMs: number): Promise<Taken>;
}

/** Checkpointable programs: each registered process of the application on this
 *  node is signalled, writes its state into the staging directory, and answers
 *  on a FIFO. */
export class ProgramCapture implements Capture {
  readonly name = 'program' as const;

  async take(appDir: string, staging: Staging, nodeId: number, owner: Owner, timeoutMs: number): Promise<Taken> {
    const pids = await this.processes(appDir, nodeId);
    if (pids.length === 0) throw new Error('no process of the application runs on this node');
    await removeDeadFifos();
    const fifo = path.join(os.tmpdir(), `${FIFO_PREFIX}${process.pid}-${staging.sn}.fifo`);
    await run('mkfifo', ['-m', '0600', fifo]);
    if (process.getuid?.() === 0) await chown(fifo, owner.uid, owner.gid);
    try {
      // a plain descriptor, owned by the socket (which closes it): a FileHandle
      // would close it again when collected, maybe someone else's by then
      const socket = new net.Socket({ fd: openSync(fifo, constants.O_RDWR | constants.O_NONBLOCK), readable: true, writable: false });
      try {
        await writeFile(path.join(staging.dir, REQUEST_FILE), `fifo=${fifo}\n`, { mode: 0o600 });
        if (process.getuid?.() === 0) await chown(path.join(staging.dir, REQUEST_FILE), owner.uid, owner.gid);
        const answers = this.answers(socket, pids, timeoutMs);
        for (const pid of pids) process.kill(pid, CHECKPOINT_SIGNAL);
        const tasks = (await answers).map((a) => ({ ...a, nodeId }));
        return { tasks, files: tasks.map((t) => taskMmName(t.pid, staging.sn)) };
      } finally {
        socket.destroy();
      }
    } finally {
      await rm(fifo, { force: true });
    }
  }

  /** The live processes registered in procs/ for this node: the ones whose
   *  environment names this application (a PID reused by another process is not). */
  private async processes(appDir: string, nodeId: number): Promise<number[]> {
    const names = await readdir(path.join(appDir, PROCS_DIR)).catch(() => [] as string[]);
    const pids: number[] = [];
    for (const name of names) {
      const proc = parseProcName(name);
      if (!proc || proc.nodeId !== nodeId || !isAlive(proc.pid)) continue;
      const app = environOf(proc.pid, 'KDFS_CKPT_APP');
      if (app !== null && path.basename(app) === path.basename(appDir)) pids.push(proc.pid);
    }
    return pids.sort((a, b) => a - b);
  }

  /** Waits for a `done` line from every pid; a `fail`, a death or the timeout rejects. */
  private answers(socket: net.Socket, pids: number[], timeoutMs: number): Promise<Omit<Task, 'nodeId'>[]> {
    return new Promise((resolve, reject) => {
      const waiting = new Set(pids);
      const done: Omit<Task, 'nodeId'>[] = [];
      let pending = '';
      const finish = (err: Error | null) => {
        clearInterval(liveness);
        clearTimeout(timer);
        socket.removeAllListeners('data');
        if (err) reject(err);
        else resolve(done.sort((a, b) => a.rank - b.rank));
      };
      const timer = setTimeout(() => finish(new Error(`processes ${[...waiting].join(', ')} did not answer within ${timeoutMs / 1000} s`)), timeoutMs);
      const liveness = setInterval(() => {
        const dead = [...waiting].filter((pid) => !isAlive(pid));
        if (dead.length > 0) finish(new Error(`process ${dead.join(', ')} exited before it wrote its state`));
      }, LIVENESS_CHECK_MS);
      socket.on('data', (chunk: Buffer) => {
        pending += chunk.toString('utf8');
        if (pending.length > FIFO_LINE_MAX_BYTES && !pending.includes('\n')) return finish(new Error('a line on the checkpoint FIFO is too long'));
        let newline: number;
        while ((newline = pending.indexOf('\n')) >= 0) {
          const line = pending.slice(0, newline);
          pending = pending.slice(newline + 1);
          const ok = /^done (\d+) (\d+) (\d+)(?: ([0-9a-f]{16}))?$/.exec(line);
          const failed = /^fail (\d+) (\d+) (.*)$/.exec(line);
          if (failed) return finish(new Error(`process ${failed[1]} could not write its state: ${failed[3]}`));
          if (!ok || !waiting.has(Number(ok[1]))) continue;
          waiting.delete(Number(ok[1]));
          done.push({ pid: Number(ok[1]), rank: Number(ok[2]), stateBytes: Number(ok[3]), xxh64: ok[4] ?? null });
          if (waiting.size === 0) return finish(null);
        }
      });
    });
  }
}

const FIFO_PREFIX = 'kdfs-ckpt-';

/** FIFOs of checkpoint commands that were killed (their pid is gone). */
async function removeDeadFifos(): Promise<void> {
  for (const name of await readdir(os.tmpdir()).catch(() => [] as string[])) {
    const match = new RegExp(`^${FIFO_PREFIX}(\\d+)-\\d+\\.fifo$`).exec(name);
    if (match && !isAlive(Number(match[1]))) await rm(path.join(os.tmpdir(), name), { force: true });
  }
}

/** CRIU: dumps the process tree of the application into the staging directory,
 *  leaving it running. Only where `criu check` passes (see criuAvailable). */
export class CriuCapture implements Capture {
  readonly name = 'criu' as const;

  async take(appDir: string, staging: Staging, nodeId: number, owner: Owner, timeoutMs: number): Promise<Taken> {
    const rootPid = parseAppDirName(path.basename(appDir))?.pid ?? 0;
    const images = criuDirName(staging.sn);
    const dir = path.join(staging.dir, images);
    await run('mkdir', ['-m', '0700', dir]);
    await run('criu', ['dump', '-t', String(rootPid), '-D', dir, '--shell-job', '--leave-running', '--file-locks'], { timeout: timeoutMs });
    const files = (await readdir(dir)).map((name) => path.join(images, name));
    for (const file of files) {
      await chmod(path.join(staging.dir, file), 0o600);
      if (process.getuid?.() === 0) await chown(path.join(staging.dir, file), owner.uid, owner.gid);
    }
    return { tasks: [{ pid: rootPid, rank: 0, nodeId, stateBytes: 0, xxh64: null }], files };
  }
}

/** Null when CRIU can checkpoint here, else why not (the first line `criu check` printed). */
export async function criuUnavailable(): Promise<string | null> {
  try {
    await run('criu', ['check'], { timeout: 30_000 });
    return null;
  } catch (err) {
    const e = err as { code?: string; stderr?: string; stdout?: string; message: string };
    if (e.code === 'ENOENT') return 'criu is not installed';
    const line = `${e.stderr ?? ''}${e.stdout ?? ''}`.split('\n').find((l) => l.trim()) ?? e.message;
    return `criu check fails: ${line.trim()}`;
  }
}

/** Restores a CRIU checkpoint in the foreground; resolves with criu's exit status. */
export function criuRestore(imagesDir: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn('criu', ['restore', '-D', imagesDir, '--shell-job', '--file-locks'], { stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve(code ?? 128 + (os.constants.signals[signal as NodeJS.Signals] ?? 0)));
  });
}
