// Test side of memfs.cjs (a tiny file system on kdfs-fuse in a child process)
// and of locker.py (a process taking file locks): start, talk to, and stop
// them, every wait bounded in time.
import { type ChildProcess, fork, spawn } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { sweep, testDir } from '../harness/cluster.js';

const MEMFS = path.join(__dirname, 'memfs.cjs');
const LOCKER = path.join(__dirname, 'locker.py');
export const WAIT_MS = 10_000;

export interface Message {
  ev: string;
  id?: number;
  op?: string;
  slot?: number;
  args?: number[];
  s1?: string | null;
  s2?: string | null;
  [key: string]: unknown;
}

interface Waiter {
  after: number;
  pred: (m: Message) => boolean;
  resolve: (m: Message) => void;
  reject: (err: Error) => void;
}

/** Resolves when child exits, or false after timeoutMs. */
function exited(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
}

export class MemFs {
  readonly messages: Message[] = [];
  private waiters: Waiter[] = [];
  private ids = 0;
  private gone: Error | null = null;

  private constructor(readonly dir: string, readonly mnt: string, readonly child: ChildProcess) {
    child.on('message', (m: Message) => {
      this.messages.push(m);
      const at = this.messages.length - 1;
      for (const w of [...this.waiters]) {
        if (at >= w.after && w.pred(m)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(m);
        }
      }
    });
    child.on('exit', (code, signal) => {
      this.gone = new Error(`memfs exited (${code ?? signal})`);
      for (const w of this.waiters.splice(0)) w.reject(this.gone);
    });
  }

  /** Mounts a fresh memfs under a testDir() (the sweep clears it after a crash). */
  static async start(extraOptions: string[] = [], env: NodeJS.ProcessEnv = {}): Promise<MemFs> {
    const dir = testDir();
    const mnt = path.join(dir, 'mnt');
    mkdirSync(mnt);
    const options = ['fsname=memfs-test', 'subtype=memfs', 'default_permissions', 'allow_other', ...extraOptions];
    const child = fork(MEMFS, [mnt, `-o${options.join(',')}`], {
      execArgv: [], env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    const fs = new MemFs(dir, mnt, child);
    try {
      const ready = await fs.waitFor((m) => m.ev === 'ready');
      // as a node's run file: the global sweep kills the process after a crash
      mkdirSync(path.join(dir, 'node1'));
      writeFileSync(path.join(dir, 'node1', 'kdfs.run'), JSON.stringify({ pid: ready.pid }));
    } catch (err) {
      await fs.stop();
      throw err;
    }
    return fs;
  }

  path(...parts: string[]): string {
    return path.join(this.mnt, ...parts);
  }

  get pid(): number {
    return this.child.pid!;
  }

  /** Where the log is, once it holds every request sent so far: for
   *  waitFor(..., mark) and ops(..., mark) to see only what follows. */
  async mark(): Promise<number> {
    await this.sync();
    return this.messages.length;
  }

  /** The first message at or after index `after` that matches. */
  waitFor(pred: (m: Message) => boolean, after = 0, timeoutMs = WAIT_MS): Promise<Message> {
    const found = this.messages.slice(after).find(pred);
    if (found) return Promise.resolve(found);
    if (this.gone) return Promise.reject(this.gone);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`timed out waiting for a message matching ${pred.toString()}`));
      }, timeoutMs);
      const waiter: Waiter = {
        after, pred,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m);
        },
        reject: (err) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      this.waiters.push(waiter);
    });
  }

  /** The requests of one operation logged at or after `after`. */
  ops(op: string, after = 0): Message[] {
    return this.messages.slice(after).filter((m) => m.ev === 'op' && m.op === op);
  }

  waitForOp(op: string, pred: (m: Message) => boolean = () => true, after = 0): Promise<Message> {
    return this.waitFor((m) => m.ev === 'op' && m.op === op && pred(m), after);
  }

  /** Sends a command; resolves with its first answer. */
  command(cmd: Record<string, unknown>): Promise<Message> & { id: number } {
    const id = ++this.ids;
    const answer = this.waitFor((m) => m.id === id && m.ev !== 'notified');
    this.child.send({ ...cmd, id });
    return Object.assign(answer, { id });
  }

  /** Once it resolves, the log holds every request the kernel sent before the
   *  call (the process reports a request before answering it; IPC keeps order). */
  async sync(): Promise<void> {
    await this.command({ cmd: 'ping' });
  }

  /** Queues a notification; resolves with what ll.notify* returned, and its result once done. */
  async notify(cmd: Record<string, unknown>): Promise<{ queued: number; done: Promise<number> }> {
    const sent = this.command(cmd);
    const done = this.waitFor((m) => m.ev === 'notified' && m.id === sent.id).then((m) => m.result as number);
    done.catch(() => {}); // awaited by the caller, or not at all
    return { queued: (await sent).queued as number, done };
  }

  /** Threads of the process other than the main one that sleep in the kernel uninterruptibly. */
  blockedThreads(): number {
    let count = 0;
    for (const tid of readdirSync(`/proc/${this.pid}/task`)) {
      if (Number(tid) === this.pid) continue;
      try {
        const stat = readFileSync(`/proc/${this.pid}/task/${tid}/stat`, 'utf8');
        if (stat.slice(stat.lastIndexOf(')') + 2)[0] === 'D') count++;
      } catch {
        // the thread is gone
      }
    }
    return count;
  }

  /** Unmounts (or kills), waits for the process, and removes the directory. */
  async stop(): Promise<void> {
    if (!this.gone && this.child.connected) {
      this.child.send({ cmd: 'unmount' });
      if (!(await exited(this.child, WAIT_MS))) this.child.kill('SIGKILL');
    } else if (!this.gone) {
      this.child.kill('SIGKILL');
    }
    await exited(this.child, WAIT_MS);
    await sweep(this.dir);
  }
}

/** A locker.py process: one JSON command, one JSON answer. */
export class Locker {
  private answers: ((value: Record<string, unknown>) => void)[] = [];
  private lines: Record<string, unknown>[] = [];

  private constructor(readonly proc: ChildProcess) {
    createInterface({ input: proc.stdout! }).on('line', (line) => {
      const value = JSON.parse(line) as Record<string, unknown>;
      const answer = this.answers.shift();
      if (answer) answer(value);
      else this.lines.push(value);
    });
  }

  static async start(user?: { uid: number; gid: number }): Promise<Locker> {
    const proc = spawn('python3', [LOCKER], { stdio: ['pipe', 'pipe', 'inherit'], ...user });
    const locker = new Locker(proc);
    await locker.next();
    return locker;
  }

  get pid(): number {
    return this.proc.pid!;
  }

  private next(timeoutMs = WAIT_MS): Promise<Record<string, unknown>> {
    const line = this.lines.shift();
    if (line) return Promise.resolve(line);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('locker: no answer')), timeoutMs);
      this.answers.push((value) => {
        clearTimeout(timer);
        resolve(value);
      });
    });
  }

  /** Sends a command; the answer may come much later (a lock waited for). */
  request(cmd: Record<string, unknown>): Promise<Record<string, unknown>> {
    this.proc.stdin!.write(JSON.stringify(cmd) + '\n');
    return this.next();
  }

  async kill(): Promise<void> {
    if (this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGKILL');
      await exited(this.proc, WAIT_MS);
    }
  }
}
