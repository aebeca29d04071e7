// The program side of the checkpoint protocol (docs/checkpoint.md): the C
// library through examples/count, and sdk/node/checkpoint.js, with real
// processes. A plain temporary directory stands in for the application's
// directory, and the test plays `checkpoint` (request, FIFO, SIGUSR2, answers)
// and `restart` (task_<PID>_v<SN>.bin, files moved up as a commit would).
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { h64, initHash } from '../../src/common/hash.js';

const ROOT = path.resolve(__dirname, '..', '..');
const COUNT = path.join(ROOT, 'examples', 'count');
const SDK = path.join(ROOT, 'sdk', 'node', 'checkpoint.js');
const STEPS = '30000000'; // about 9 s: long enough to be caught midway

// A Node program of the application: counts ticks, saves "ticks=N" when asked;
// with `print`, restores and prints what it got.
const NODE_PROGRAM = `
const ckpt = require(${JSON.stringify(SDK)});
if (process.argv[2] === 'print') {
  const state = ckpt.restore();
  console.log(state === null ? 'none' : 'restored ' + state.toString());
  process.exit(0);
}
let ticks = 0;
ckpt.onCheckpoint(() => Buffer.from('ticks=' + ticks));
setInterval(() => ticks++, 1);
`;

let tmp: string;
const children: ChildProcess[] = [];

interface Exit { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }
interface Started { child: ChildProcess; pid: number; exited: Promise<Exit>; stderr: () => string }

/** The environment without any KDFS_CKPT_* the test itself may have been given. */
function envWith(vars: Record<string, string>): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('KDFS_CKPT_')) delete env[k];
  return { ...env, ...vars };
}

function start(cmd: string, args: string[], vars: Record<string, string> = {}): Started {
  const child = spawn(cmd, args, { env: envWith(vars), stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const exited = new Promise<Exit>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, pid: child.pid!, exited, stderr: () => stderr };
}

const run = (cmd: string, args: string[], vars: Record<string, string> = {}) => start(cmd, args, vars).exited;

/** Polls until check() holds; bounded, and fails as soon as `p` has exited. */
async function until(what: string, check: () => boolean, p?: Started, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (p && p.child.exitCode !== null) throw new Error(`${what}: the program exited (${p.child.exitCode}): ${p.stderr()}`);
    if (Date.now() > deadline) throw new Error(`${what}: not after ${ms} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** A new application directory. */
function appDir(name: string): string {
  const app = path.join(tmp, name);
  fs.mkdirSync(app);
  return app;
}

/** The FIFO a `checkpoint` reads answers from, open before any signal (the
 *  libraries never block on a FIFO nobody reads). O_RDWR: no EOF between writers. */
function openFifo(file: string) {
  execFileSync('mkfifo', [file]);
  const sock = new net.Socket({ fd: fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_NONBLOCK), readable: true, writable: false });
  const lines: string[] = [];
  let buf = '';
  sock.on('data', (d) => {
    buf += d;
    for (let nl; (nl = buf.indexOf('\n')) >= 0; buf = buf.slice(nl + 1)) lines.push(buf.slice(0, nl));
  });
  return {
    lines,
    async next(n: number, ms = 20_000): Promise<string[]> {
      await until(`${n} answers on ${file}`, () => lines.length >= n, undefined, ms);
      return lines.slice(0, n);
    },
    close: () => sock.destroy(),
  };
}

/** What `checkpoint` does before signalling: .v<SN>/request naming the FIFO. */
function request(app: string, sn: number, fifo: string): string {
  const dir = path.join(app, `.v${sn}`);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'request'), `fifo=${fifo}\n`);
  return dir;
}

/** What `checkpoint` and its commit do after the answers: the task file, then
 *  everything moved up into the application's directory. */
function commit(app: string, sn: number, pid: number, rank: number, node: number): void {
  const dir = path.join(app, `.v${sn}`);
  const bytes = fs.statSync(path.join(dir, `task_mm_${pid}_v${sn}.bin`)).size;
  fs.writeFileSync(path.join(dir, `task_${pid}_v${sn}.bin`), `pid=${pid}\nrank=${rank}\nstate_bytes=${bytes}\nnode=${node}\n`, { mode: 0o600 });
  for (const name of [`task_mm_${pid}_v${sn}.bin`, `task_${pid}_v${sn}.bin`]) fs.renameSync(path.join(dir, name), path.join(app, name));
  fs.rmSync(dir, { recursive: true });
}

beforeAll(() => {
  execFileSync('make', ['-s', '-C', path.join(ROOT, 'examples')], { stdio: 'inherit', timeout: 120_000 });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kdfs-ckpt-sdk-'));
}, 150_000);

afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});

afterAll(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('examples/count and the C library', () => {
  it('answers a checkpoint, and restarted from it prints the line of a run left alone', async () => {
    const whole = run(COUNT, [STEPS]); // at the same time: two cores
    const app = appDir('count');
    const fifo = openFifo(path.join(tmp, 'count.fifo'));
    try {
      const v1 = request(app, 1, path.join(tmp, 'count.fifo'));
      const p = start(COUNT, [STEPS], { KDFS_CKPT_APP: app, KDFS_CKPT_NODE: '3' });
      await until('registration', () => fs.existsSync(path.join(app, 'procs', `3.${p.pid}`)), p);
      p.child.kill('SIGUSR2');
      const [line] = await fifo.next(1);
      // the C library reports the xxhash64 of the state it wrote: the manifest's
      const answered = new RegExp(`^done ${p.pid} 0 24 ([0-9a-f]{16})$`).exec(line);
      expect(answered, line).not.toBeNull();

      const mm = path.join(v1, `task_mm_${p.pid}_v1.bin`);
      await initHash();
      expect(h64(fs.readFileSync(mm)).toString(16).padStart(16, '0')).toBe(answered![1]);
      const st = fs.statSync(mm);
      expect(st.size).toBe(24);
      expect(st.mode & 0o777).toBe(0o600);
      expect(fs.existsSync(path.join(v1, `done_${p.pid}`))).toBe(true);
      const state = fs.readFileSync(mm); // {next step, accumulator, STEPS}, native order
      const u64 = (at: number) => (os.endianness() === 'LE' ? state.readBigUInt64LE(at) : state.readBigUInt64BE(at));
      expect(u64(0)).toBeGreaterThan(0n);
      expect(u64(0)).toBeLessThan(BigInt(STEPS));
      expect(u64(16)).toBe(BigInt(STEPS));

      p.child.kill('SIGKILL');
      expect((await p.exited).signal).toBe('SIGKILL');
      commit(app, 1, p.pid, 0, 3);

      const again = await run(COUNT, [STEPS], { KDFS_CKPT_APP: app, KDFS_CKPT_NODE: '3', KDFS_CKPT_RESTART_SN: '1' });
      const alone = await whole;
      expect(alone).toMatchObject({ code: 0, stderr: '' });
      expect(alone.stdout).toMatch(new RegExp(`^count ${STEPS} steps: 0x[0-9a-f]{16}\n$`));
      expect(again).toMatchObject({ code: 0, stderr: '', stdout: alone.stdout });

      // the same checkpoint is not one of `count 1000`
      const other = await run(COUNT, ['1000'], { KDFS_CKPT_APP: app, KDFS_CKPT_NODE: '3', KDFS_CKPT_RESTART_SN: '1' });
      expect(other.code).toBe(1);
      expect(other.stdout).toBe('');
      expect(other.stderr).toMatch(/not `count 1000`/);
    } finally {
      fifo.close();
    }
  }, 90_000);

  it('answers `fail` when it cannot write its state, and goes on counting', async () => {
    const app = appDir('fail');
    const fifo = openFifo(path.join(tmp, 'fail.fifo'));
    try {
      const v1 = request(app, 1, path.join(tmp, 'fail.fifo'));
      const p = start(COUNT, [STEPS], { KDFS_CKPT_APP: app, KDFS_CKPT_NODE: '1' });
      await until('registration', () => fs.existsSync(path.join(app, 'procs', `1.${p.pid}`)), p);
      fs.mkdirSync(path.join(v1, `task_mm_${p.pid}_v1.bin`)); // a directory in the way (root ignores modes)
      p.child.kill('SIGUSR2');
      const [line] = await fifo.next(1);
      expect(line).toMatch(new RegExp(`^fail ${p.pid} 0 write .*task_mm_${p.pid}_v1\\.bin: Is a directory$`));
      await until('the warning', () => /count: checkpoint at step \d+: Is a directory/.test(p.stderr()), p);
      expect(fs.existsSync(path.join(v1, `done_${p.pid}`))).toBe(true);
      expect(p.child.exitCode).toBe(null);
    } finally {
      fifo.close();
    }
  }, 30_000);

  it('does not wait for a `checkpoint` that stopped reading its FIFO', async () => {
    const app = appDir('gone');
    const file = path.join(tmp, 'gone.fifo');
    execFileSync('mkfifo', [file]); // nobody reads it
    request(app, 1, file);
    const p = start(COUNT, [STEPS], { KDFS_CKPT_APP: app, KDFS_CKPT_NODE: '1' });
    await until('registration', () => fs.existsSync(path.join(app, 'procs', `1.${p.pid}`)), p);
    p.child.kill('SIGUSR2');
    await until('the warning', () => /count: checkpoint at step \d+: No such device or address/.test(p.stderr()), p);
    expect(p.child.exitCode).toBe(null);
  }, 30_000);

  it('a restart goes on from the state it finds, not from the start', async () => {
    const app = appDir('given');
    const state = (next: bigint, acc: bigint) => {
      const b = Buffer.alloc(24);
      for (const [at, v] of [[0, next], [8, acc], [16, 1000n]] as const) {
        if (os.endianness() === 'LE') b.writeBigUInt64LE(v, at);
        else b.writeBigUInt64BE(v, at);
      }
      return b;
    };
    fs.writeFileSync(path.join(app, 'task_11_v1.bin'), 'pid=11\nrank=0\nstate_bytes=24\nnode=1\n');
    fs.writeFileSync(path.join(app, 'task_mm_11_v1.bin'), state(1000n, 0x1234n)); // nothing left to do
    fs.writeFileSync(path.join(app, 'task_12_v2.bin'), 'node=1\nrank=0\npid=12\n');
    fs.writeFileSync(path.join(app, 'task_mm_12_v2.bin'), state(999n, 0x1234n));
    const vars = { KDFS_CKPT_APP: app, KDFS_CKPT_NODE: '1' };
    const done = await run(COUNT, ['1000'], { ...vars, KDFS_CKPT_RESTART_SN: '1' });
    expect(done).toMatchObject({ code: 0, stdout: 'count 1000 steps: 0x0000000000001234\n' });
    const last = await run(COUNT, ['1000'], { ...vars, KDFS_CKPT_RESTART_SN: '2' });
    const fresh = await run(COUNT, ['1000'], vars);
    expect(last.code).toBe(0);
    expect(last.stdout).not.toBe(done.stdout);
    expect(last.stdout).not.toBe(fresh.stdout);
  }, 30_000);

  it('a restart whose state file is missing fails, without a line', async () => {
    const app = appDir('missing');
    fs.writeFileSync(path.join(app, 'task_4242_v1.bin'), 'pid=4242\nrank=0\nstate_bytes=24\nnode=1\n');
    const vars = { KDFS_CKPT_APP: app, KDFS_CKPT_NODE: '1', KDFS_CKPT_RESTART_SN: '1' };
    for (const extra of [{}, { KDFS_CKPT_RANK: '1' }, { KDFS_CKPT_RESTART_SN: '2' }] as Record<string, string>[]) {
      const r = await run(COUNT, ['1000'], { ...vars, ...extra });
      expect(r).toMatchObject({ code: 1, stdout: '' });
      expect(r.stderr).toMatch(/^count: restore: No such file or directory\n$/);
    }
    const node = path.join(tmp, 'missing.js');
    fs.writeFileSync(node, NODE_PROGRAM);
    const r = await run(process.execPath, [node, 'print'], vars);
    expect(r.code).not.toBe(0);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(/ENOENT/);
  }, 30_000);

  it('bad arguments are a usage error, exit 2', async () => {
    for (const args of [[], [''], ['x'], ['-1'], ['+1'], ['12abc'], ['18446744073709551616'], ['1', '2']]) {
      const r = await run(COUNT, args);
      expect(r, JSON.stringify(args)).toMatchObject({ code: 2, stdout: '' });
      expect(r.stderr).toMatch(/^usage: count STEPS[^\n]*\n$/);
    }
  }, 30_000);

  it('prints the same line outside `kdfs run` and registered in it', async () => {
    const app = appDir('plain');
    const [outside, inside] = await Promise.all([run(COUNT, ['100000']), run(COUNT, ['100000'], { KDFS_CKPT_APP: app, KDFS_CKPT_NODE: '7' })]);
    expect(outside).toMatchObject({ code: 0, stderr: '' });
    expect(inside).toMatchObject({ code: 0, stderr: '', stdout: outside.stdout });
    expect(fs.readdirSync(path.join(app, 'procs'))).toHaveLength(1);
    // a node that is not a number is refused, not taken as 0
    const bad = await run(COUNT, ['1000'], { KDFS_CKPT_APP: app, KDFS_CKPT_NODE: 'one' });
    expect(bad).toMatchObject({ code: 1, stdout: '' });
  }, 30_000);
});

describe('sdk/node/checkpoint.js', () => {
  it('answers every waiting checkpoint in order of SN, once, and restores by rank', async () => {
    const app = appDir('node');
    const prog = path.join(tmp, 'prog.js');
    fs.writeFileSync(prog, NODE_PROGRAM);
    const file = path.join(tmp, 'node.fifo');
    const fifo = openFifo(file);
    try {
      const vars = { KDFS_CKPT_APP: app, KDFS_CKPT_NODE: '2', KDFS_CKPT_RANK: '5' };
      const p = start(process.execPath, [prog], vars);
      await until('registration', () => fs.existsSync(path.join(app, 'procs', `2.${p.pid}`)), p);
      fs.writeFileSync(path.join(request(app, 1, file), `done_${p.pid}`), ''); // answered already
      request(app, 10, file); // numerically after 9, not before it
      request(app, 9, file);
      p.child.kill('SIGUSR2');
      const answers = await fifo.next(2);
      const states = [9, 10].map((sn) => fs.readFileSync(path.join(app, `.v${sn}`, `task_mm_${p.pid}_v${sn}.bin`)));
      expect(answers).toEqual(states.map((s) => `done ${p.pid} 5 ${s.length}`));
      expect(states[0].toString()).toMatch(/^ticks=\d+$/);
      expect(fs.existsSync(path.join(app, '.v1', `task_mm_${p.pid}_v1.bin`))).toBe(false);
      expect(fs.statSync(path.join(app, '.v9', `task_mm_${p.pid}_v9.bin`)).mode & 0o777).toBe(0o600);

      // a new request is answered at the next signal, the old ones not again
      request(app, 11, file);
      p.child.kill('SIGUSR2');
      const third = (await fifo.next(3))[2];
      expect(third).toMatch(new RegExp(`^done ${p.pid} 5 \\d+$`));
      [9, 10].forEach((sn, i) => expect(fs.readFileSync(path.join(app, `.v${sn}`, `task_mm_${p.pid}_v${sn}.bin`))).toEqual(states[i]));
      p.child.kill('SIGKILL');
      await p.exited;
      expect(fifo.lines).toHaveLength(3);

      commit(app, 10, p.pid, 5, 2);
      const restored = await run(process.execPath, [prog, 'print'], { ...vars, KDFS_CKPT_RESTART_SN: '10' });
      expect(restored).toMatchObject({ code: 0, stdout: `restored ${states[1].toString()}\n` });
      // rank 0 has no state in SN 10
      const other = await run(process.execPath, [prog, 'print'], { ...vars, KDFS_CKPT_RANK: '0', KDFS_CKPT_RESTART_SN: '10' });
      expect(other.code).not.toBe(0);
      expect(other.stdout).toBe('');
      const plain = await run(process.execPath, [prog, 'print']);
      expect(plain).toMatchObject({ code: 0, stdout: 'none\n' });
    } finally {
      fifo.close();
    }
  }, 30_000);
});
