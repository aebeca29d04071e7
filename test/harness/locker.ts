// Lock-taking processes for tests: test/tools/locker.py driven one JSON command
// a line, and small helpers to wait for events with a deadline.
import { type ChildProcess, spawn } from 'node:child_process';
import path from 'node:path';
import fs from 'node:fs';
import readline from 'node:readline';
import { afterAll, beforeAll } from 'vitest';
import { Cluster, ROOT } from './cluster.js';

export const LOCKER = path.join(ROOT, 'test', 'tools', 'locker.py');

export type Answer = { [key: string]: unknown };

/** A locker.py process; requests are answered in order. */
export class Locker {
  private readonly waiting: ((answer: Answer) => void)[] = [];
  private exited: Answer | null = null;
  readonly gone: Promise<number | null>;

  private constructor(readonly label: string, readonly proc: ChildProcess) {
    readline.createInterface({ input: proc.stdout! }).on('line', (line) => this.waiting.shift()?.(JSON.parse(line) as Answer));
    this.gone = new Promise((resolve) => proc.on('exit', (code) => {
      this.exited = { exited: code };
      for (const resolveAnswer of this.waiting.splice(0)) resolveAnswer(this.exited);
      resolve(code);
    }));
  }

  static async start(label: string): Promise<Locker> {
    const proc = spawn('python3', [LOCKER], { stdio: ['pipe', 'pipe', 'inherit'] });
    const locker = new Locker(label, proc);
    lockers.push(locker);
    const ready = await within(locker.answer(), 10_000);
    if (ready === PENDING || !(ready as Answer).ready) throw new Error(`locker ${label} did not start: ${JSON.stringify(ready)}`);
    return locker;
  }

  private answer(): Promise<Answer> {
    if (this.exited) return Promise.resolve(this.exited);
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  /** Sends a command; the promise is its answer (which may never come: use within). */
  send(cmd: Answer): Promise<Answer> {
    const answer = this.answer();
    this.proc.stdin!.write(JSON.stringify(cmd) + '\n');
    return answer;
  }

  /** Sends a command that must be answered within timeoutMs. */
  async ask(cmd: Answer, timeoutMs = 15_000): Promise<Answer> {
    const answer = await within(this.send(cmd), timeoutMs);
    if (answer === PENDING) throw new Error(`${this.label}: no answer to ${JSON.stringify(cmd)} within ${timeoutMs} ms`);
    return answer;
  }

  async open(file: string, mode = 'rw'): Promise<number> {
    const answer = await this.ask({ op: 'open', path: file, mode });
    if (typeof answer.fd !== 'number') throw new Error(`${this.label}: open ${file}: ${JSON.stringify(answer)}`);
    return answer.fd;
  }

  /** Non-blocking lock: 'ok' or the errno name. */
  async lock(fd: number, type: 'r' | 'w' | 'u', start: number, len: number, extra: Answer = {}): Promise<string> {
    return result(await this.ask({ op: 'lock', fd, type, start, len, ...extra }));
  }

  async flock(fd: number, type: 'sh' | 'ex' | 'un', extra: Answer = {}): Promise<string> {
    return result(await this.ask({ op: 'flock', fd, type, ...extra }));
  }

  kill(): void {
    if (!this.exited) this.proc.kill('SIGKILL');
  }
}

export const result = (answer: Answer) => (answer.ok ? 'ok' : String(answer.errno ?? JSON.stringify(answer)));

export const PENDING = Symbol('pending');
/** The value of promise if it settles within ms, else PENDING. */
export async function within<T>(promise: Promise<T>, ms: number): Promise<T | typeof PENDING> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<typeof PENDING>((resolve) => { timer = setTimeout(() => resolve(PENDING), ms); });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Calls attempt until it returns true or timeoutMs passed; returns the ms it took, or null. */
export async function poll(attempt: () => Promise<boolean>, timeoutMs: number, stepMs = 200): Promise<number | null> {
  const started = Date.now();
  for (;;) {
    if (await attempt()) return Date.now() - started;
    if (Date.now() - started > timeoutMs) return null;
    await new Promise((resolve) => setTimeout(resolve, stepMs));
  }
}

/** A child process with its exit as a promise. */
export function child(file: string, args: string[]): { proc: ChildProcess; stdout: () => string; exit: Promise<number | null> } {
  const proc = spawn(file, args, { stdio: ['pipe', 'pipe', 'inherit'] });
  children.push(proc);
  let out = '';
  proc.stdout!.on('data', (chunk: Buffer) => { out += chunk.toString(); });
  const exit = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return { proc, stdout: () => out, exit };
}

/** Every locker and child started, for killAll. */
const lockers: Locker[] = [];
const children: ChildProcess[] = [];

/** Kills (SIGKILL) every locker and child process started here, and waits for the lockers. */
export async function killAll(): Promise<void> {
  for (const locker of lockers) locker.kill();
  for (const proc of children) if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  await Promise.all(lockers.map((locker) => within(locker.gone, 5000)));
}

/** The 3-node cluster of a test file of locks: started before its tests (handed
 *  to `started`), stopped with every locker after them. Returns the maker of
 *  fresh files (made through node 1), which gives their names. */
export function lockTestCluster(started: (cluster: Cluster) => void): (prefix?: string) => string {
  let cluster: Cluster | undefined;
  let n = 0;
  beforeAll(async () => {
    cluster = await Cluster.start({ nodes: 3 });
    started(cluster);
  });
  afterAll(async () => {
    await killAll();
    await cluster?.stop();
  });
  return (prefix = 'l') => {
    const name = `${prefix}${++n}`;
    fs.writeFileSync(cluster!.path(1, name), '');
    return name;
  };
}
