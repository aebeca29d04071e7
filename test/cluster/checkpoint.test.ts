// Checkpoint/restart on a real 3-node cluster (docs/checkpoint.md): programs
// started with `kdfs run` on node 1 are checkpointed with `checkpoint PID`,
// killed, and brought back with `restart` through another node's mount; a set
// is visible whole or not at all (a `checkpoint` killed midway leaves the SN
// before it the newest), every file is checked at restart (a flipped byte is
// named, and the set before it is used), concurrent checkpoints get distinct
// SNs, `--keep` prunes, and bad requests fail with the documented exit status.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CLI, Cluster, ROOT } from '../harness/cluster.js';
import { poll } from '../harness/locker.js';

const CHECKPOINT = path.join(ROOT, 'cli', 'checkpoint');
const RESTART = path.join(ROOT, 'cli', 'restart');
const COUNT = path.join(ROOT, 'examples', 'count');
const SDK = path.join(ROOT, 'sdk', 'node', 'checkpoint.js');
/** About 9 s of examples/count: long enough for three checkpoints while it runs. */
const STEPS = 30_000_000;
/** Bound on anything that should take a second or two (a checkpoint, a restart of the Node program). */
const COMMAND_MS = 30_000;
/** A user who owns none of the applications. */
const NOBODY = ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups'];

// A checkpointable Node program: counts ticks, saves "ticks=N" when asked
// (unless the file argv[2] exists: then it leaves the request unanswered);
// restarted, it prints the state it got and exits. It ends by itself after
// two minutes, should the test's clean-up never come.
const PROGRAM = `
const fs = require('node:fs');
const ckpt = require(${JSON.stringify(SDK)});
const restored = ckpt.restore();
if (restored !== null) {
  console.log('restored ' + restored.toString());
  process.exit(0);
}
ckpt.init();
const stall = process.argv[2];
let ticks = 0;
setInterval(() => {
  ticks++;
  if (ckpt.pending() && !(stall && fs.existsSync(stall))) {
    try {
      ckpt.save(Buffer.from('ticks=' + ticks));
    } catch (err) {
      console.error('save: ' + err.message);
    }
  }
}, 5);
setTimeout(() => process.exit(3), 120_000).unref();
`;

let cluster: Cluster;
let program: string;
const children: ChildProcess[] = [];

interface Exit { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }
interface Started { child: ChildProcess; pid: number; exited: Promise<Exit>; stderr: () => string }

/** The environment without any KDFS_* the test itself may have been given. */
function envWith(vars: Record<string, string>): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (k.startsWith('KDFS_CKPT_') || k === 'KDFS_CHKPT_DIR') delete env[k];
  return { ...env, ...vars };
}

/** A child, killed by afterEach if still running. */
function start(file: string, args: string[], vars: Record<string, string> = {}): Started {
  const child = spawn(file, args, { env: envWith(vars), stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<Exit>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return { child, pid: child.pid!, exited, stderr: () => stderr };
}

/** Runs a command to its end; SIGKILLed (and failing the test) past `ms`. */
async function run(file: string, args: string[], vars: Record<string, string> = {}, ms = COMMAND_MS): Promise<Exit> {
  const p = start(file, args, vars);
  const timer = setTimeout(() => p.child.kill('SIGKILL'), ms);
  const exit = await p.exited;
  clearTimeout(timer);
  if (exit.signal === 'SIGKILL') throw new Error(`${path.basename(file)} ${args.join(' ')}: not done after ${ms} ms: ${exit.stderr}`);
  return exit;
}

/** The checkpoint directory, through node `node`'s mount. */
const chkpt = (node: number) => cluster.path(node, 'chkpt');
/** The directory of the application started with `pid` on node 1, through node `node`'s mount. */
const appDir = (pid: number, node = 1) => path.join(chkpt(node), `${pid}@node1`);
const through = (node: number) => ({ KDFS_CHKPT_DIR: chkpt(node) });

/** `kdfs run ARGV` with the checkpoint directory of node 1; resolves once the
 *  program has registered (procs/1.<PID>), when `checkpoint` may signal it. */
async function launch(argv: string[]): Promise<Started> {
  const p = start(CLI.kdfs, ['run', ...argv], through(1));
  const registration = path.join(appDir(p.pid), 'procs', `1.${p.pid}`);
  const waited = await poll(async () => fs.existsSync(registration) || p.child.exitCode !== null, COMMAND_MS, 20);
  expect(waited, `registration of ${p.pid}`).not.toBeNull();
  expect(p.child.exitCode, `kdfs run ${argv.join(' ')}: ${p.stderr()}`).toBeNull();
  return p;
}

const launchProgram = (...args: string[]) => launch([process.execPath, program, ...args]);

/** `checkpoint ARGS` on node 1: the SN it printed (the exit status and its output checked). */
async function checkpoint(...args: string[]): Promise<number> {
  const r = await run(CHECKPOINT, args, through(1));
  expect(r.code, r.stderr).toBe(0);
  const match = /^checkpoint (\d+) of \d+@node1: .* in \S+\n$/.exec(r.stdout);
  expect(match, r.stdout).not.toBeNull();
  return Number(match![1]);
}

interface Listed { app: string; command: string[]; sets: { sn: number; state: string; timeSec: number; sizeBytes: number; problem: string | null }[] }

/** `kdfs checkpoint list PID --json`, through node 1 (where the checkpoints ran). */
async function list(pid: number): Promise<Listed> {
  const r = await run(CLI.kdfs, ['checkpoint', 'list', String(pid), '--json'], through(1));
  expect(r.code, r.stderr).toBe(0);
  const apps = JSON.parse(r.stdout) as Listed[];
  expect(apps.map((a) => a.app)).toEqual([`${pid}@node1`]);
  return apps[0];
}

/** The files of SN in an application's directory. */
function filesOf(dir: string, sn: number): string[] {
  return fs.readdirSync(dir).filter((n) => new RegExp(`_v${sn}\\.(txt|bin)$`).test(n) || n === `.v${sn}`).sort();
}

/** Every process whose environment names an application under this cluster's
 *  directory: the programs, and those `restart` started (not our children). */
function applicationProcesses(): number[] {
  const found: number[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const environ = fs.readFileSync(`/proc/${name}/environ`, 'latin1').split('\0');
      if (environ.some((e) => e.startsWith(`KDFS_CKPT_APP=${cluster.dir}/`))) found.push(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

beforeAll(async () => {
  cluster = await Cluster.start({ nodes: 3, replicas: 2 });
  fs.mkdirSync(chkpt(1));
  fs.chmodSync(chkpt(1), 0o1777);
  program = path.join(cluster.dir, 'program.js');
  fs.writeFileSync(program, PROGRAM);
}, 120_000);

afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  if (cluster) for (const pid of applicationProcesses()) process.kill(pid, 'SIGKILL');
});

afterAll(async () => {
  await cluster?.stop();
}, 60_000);

describe('checkpoint and restart of programs started with kdfs run', () => {
  it('examples/count checkpointed 3 times on node 1, killed, restarted from SN 2 on node 3, prints the line of a run left alone', async () => {
    const app = await launch([COUNT, String(STEPS)]);
    const dir = appDir(app.pid);
    for (const sn of [1, 2, 3]) expect(await checkpoint(String(app.pid))).toBe(sn);
    // it was still counting: every checkpoint caught it midway
    expect(app.child.exitCode).toBeNull();
    app.child.kill('SIGKILL');
    expect((await app.exited).signal).toBe('SIGKILL');

    for (const sn of [1, 2, 3]) {
      const names = [`description_v${sn}.txt`, `global_v${sn}.bin`, `node_1_v${sn}.bin`, `task_${app.pid}_v${sn}.bin`, `task_mm_${app.pid}_v${sn}.bin`];
      expect(filesOf(dir, sn)).toEqual([...names].sort());
      for (const name of names) expect(fs.statSync(path.join(dir, name)).mode & 0o777, name).toBe(0o600);
      expect(fs.readFileSync(path.join(dir, `task_${app.pid}_v${sn}.bin`), 'utf8')).toBe(`pid=${app.pid}\nrank=0\nstate_bytes=24\nnode=1\n`);
    }
    expect(fs.readdirSync(dir).filter((n) => n.startsWith('.v'))).toEqual([]);
    // {next step, accumulator, STEPS}, little-endian: SN 2 is midway, after SN 1
    const state = (sn: number) => {
      const b = fs.readFileSync(path.join(dir, `task_mm_${app.pid}_v${sn}.bin`));
      expect(b.length).toBe(24);
      return { next: b.readBigUInt64LE(0), steps: b.readBigUInt64LE(16) };
    };
    expect(os.endianness()).toBe('LE');
    const [s1, s2, s3] = [state(1), state(2), state(3)];
    expect(s2.steps).toBe(BigInt(STEPS));
    expect(s1.next).toBeGreaterThan(0n);
    expect(s2.next).toBeGreaterThan(s1.next);
    expect(s3.next).toBeGreaterThan(s2.next);
    expect(s3.next).toBeLessThan(BigInt(STEPS));

    // the restart and a run left alone (not through kDFS) at once: two cores
    const [restarted, alone] = await Promise.all([run(RESTART, [String(app.pid), '2'], through(3), 90_000), run(COUNT, [String(STEPS)], {}, 90_000)]);
    expect(alone).toMatchObject({ code: 0, stderr: '' });
    expect(alone.stdout).toMatch(new RegExp(`^count ${STEPS} steps: 0x[0-9a-f]{16}\n$`));
    expect(restarted, restarted.stderr).toMatchObject({ code: 0, stdout: alone.stdout });
    // it ran as node 3's: it registered there
    expect(fs.readdirSync(path.join(dir, 'procs')).some((n) => /^3\.\d+$/.test(n))).toBe(true);
  }, 120_000);

  it('kdfs checkpoint list PID --json lists the SNs newest first, complete, with their sizes', async () => {
    const app = await launchProgram();
    for (const sn of [1, 2, 3]) expect(await checkpoint(String(app.pid))).toBe(sn);
    const listed = await list(app.pid);
    expect(listed.command).toEqual([process.execPath, program]);
    expect(listed.sets.map((s) => [s.sn, s.state])).toEqual([[3, 'complete'], [2, 'complete'], [1, 'complete']]);
    const dir = appDir(app.pid);
    for (const set of listed.sets) {
      const bytes = filesOf(dir, set.sn).filter((n) => !n.startsWith('description_')).reduce((sum, n) => sum + fs.statSync(path.join(dir, n)).size, 0);
      expect(set.sizeBytes, `SN ${set.sn}`).toBe(bytes);
      expect(set.sizeBytes).toBeGreaterThan(0);
      expect(set.timeSec).toBeGreaterThan(0);
      expect(set.problem).toBeNull();
    }
    // the text form too
    const text = await run(CLI.kdfs, ['checkpoint', 'list', String(app.pid)], through(2));
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout.split('\n').filter((l) => /^\s+SN \d+ .* complete$/.test(l))).toHaveLength(3);
  }, 60_000);

  it('a checkpoint killed midway leaves the SN before it the newest; restart takes that one; the next checkpoint clears it and takes a higher SN', async () => {
    const stall = path.join(cluster.dir, 'stall');
    const app = await launchProgram(stall);
    const dir = appDir(app.pid);
    expect(await checkpoint(String(app.pid))).toBe(1);
    const first = fs.readFileSync(path.join(dir, `task_mm_${app.pid}_v1.bin`), 'utf8');
    expect(first).toMatch(/^ticks=\d+$/);

    // the program leaves SN 2 unanswered: past --timeout the checkpoint gives up, removing it
    fs.writeFileSync(stall, '');
    const timedOut = await run(CHECKPOINT, ['--timeout', '1', String(app.pid)], through(1));
    expect(timedOut.code).toBe(1);
    expect(timedOut.stdout).toBe('');
    expect(timedOut.stderr).toMatch(new RegExp(`^checkpoint: checkpoint 2 of ${app.pid}@node1 failed: processes ${app.pid} did not answer within 1 s\n$`));
    expect(filesOf(dir, 2)).toEqual([]);

    // again, and that checkpoint is killed while it waits
    const killed = start(CHECKPOINT, ['--timeout', '60', String(app.pid)], through(1));
    const fifo = path.join(os.tmpdir(), `kdfs-ckpt-${killed.pid}-2.fifo`);
    try {
      expect(await poll(async () => fs.existsSync(path.join(dir, '.v2', 'request')) || killed.child.exitCode !== null, COMMAND_MS, 20)).not.toBeNull();
      expect(killed.child.exitCode, killed.stderr()).toBeNull();
      killed.child.kill('SIGKILL');
      expect((await killed.exited).signal).toBe('SIGKILL');
    } finally {
      fs.rmSync(fifo, { force: true }); // the FIFO of the killed command, left in the local /tmp
    }
    expect(fs.existsSync(path.join(dir, '.v2'))).toBe(true);
    expect(fs.existsSync(path.join(dir, 'description_v2.txt'))).toBe(false);
    expect((await list(app.pid)).sets.map((s) => [s.sn, s.state])).toEqual([[2, 'abandoned'], [1, 'complete']]);

    // restart without SN: SN 1, through node 2
    const restarted = await run(RESTART, [String(app.pid)], through(2));
    expect(restarted, restarted.stderr).toMatchObject({ code: 0, stdout: `restored ${first}\n` });
    // SN 2 does not exist for restart
    const two = await run(RESTART, [String(app.pid), '2'], through(2));
    expect(two.code).toBe(1);
    expect(two.stdout).toBe('');
    expect(two.stderr).toMatch(/checkpoint 2 does not exist/);

    fs.rmSync(stall);
    expect(await checkpoint(String(app.pid))).toBe(3);
    expect(filesOf(dir, 2)).toEqual([]);
    expect((await list(app.pid)).sets.map((s) => [s.sn, s.state])).toEqual([[3, 'complete'], [1, 'complete']]);
    expect(app.child.exitCode).toBeNull();
  }, 60_000);

  it('a byte flipped in a checkpoint file is caught: restart PID SN names the file, restart PID falls back to the SN before', async () => {
    const app = await launchProgram();
    const dir = appDir(app.pid);
    expect(await checkpoint(String(app.pid))).toBe(1);
    expect(await checkpoint(String(app.pid))).toBe(2);
    const first = fs.readFileSync(path.join(dir, `task_mm_${app.pid}_v1.bin`), 'utf8');
    const damaged = `task_mm_${app.pid}_v2.bin`;
    const file = path.join(dir, damaged);
    const size = fs.statSync(file).size;
    const fd = fs.openSync(file, 'r+');
    try {
      const byte = Buffer.alloc(1);
      fs.readSync(fd, byte, 0, 1, 0);
      fs.writeSync(fd, Buffer.from([byte[0] ^ 0x20]), 0, 1, 0);
    } finally {
      fs.closeSync(fd);
    }
    expect(fs.statSync(file).size).toBe(size);

    const explicit = await run(RESTART, [String(app.pid), '2'], through(3));
    expect(explicit.code).toBe(1);
    expect(explicit.stdout).toBe('');
    expect(explicit.stderr).toContain(damaged);
    expect(explicit.stderr).toMatch(/damaged/);

    const fallback = await run(RESTART, [String(app.pid)], through(3));
    expect(fallback, fallback.stderr).toMatchObject({ code: 0, stdout: `restored ${first}\n` });
    expect(fallback.stderr).toMatch(new RegExp(`checkpoint 2 of ${app.pid}@node1 is damaged \\(${damaged}: .*\\): trying an older one`));
  }, 60_000);

  it('concurrent checkpoints get distinct SNs and all succeed: two of one application, and two applications at once', async () => {
    const a = await launchProgram();
    const b = await launchProgram();
    const twice = await Promise.all([checkpoint(String(a.pid)), checkpoint(String(a.pid))]);
    expect([...twice].sort()).toEqual([1, 2]);
    const both = await Promise.all([checkpoint(String(a.pid)), checkpoint(String(b.pid)), checkpoint(String(b.pid))]);
    expect(both[0]).toBe(3);
    expect([both[1], both[2]].sort()).toEqual([1, 2]);
    expect((await list(a.pid)).sets.map((s) => [s.sn, s.state])).toEqual([[3, 'complete'], [2, 'complete'], [1, 'complete']]);
    expect((await list(b.pid)).sets.map((s) => [s.sn, s.state])).toEqual([[2, 'complete'], [1, 'complete']]);
    // each set holds its own answer, the application's own
    for (const [p, sns] of [[a.pid, [1, 2, 3]], [b.pid, [1, 2]]] as const) {
      for (const sn of sns) expect(fs.readFileSync(path.join(appDir(p), `task_mm_${p}_v${sn}.bin`), 'utf8')).toMatch(/^ticks=\d+$/);
    }
  }, 60_000);

  it('refuses what it cannot do: one line and exit 1, or exit 2 for a bad command line', async () => {
    // not started with kdfs run, and no CRIU to dump it
    const plain = start('sleep', ['60']);
    const notRun = await run(CHECKPOINT, [String(plain.pid)], through(1));
    expect(notRun.code).toBe(1);
    expect(notRun.stdout).toBe('');
    expect(notRun.stderr).toMatch(new RegExp(`^checkpoint: process ${plain.pid} was not started with kdfs run, and CRIU cannot capture it here \\([^\\n]*\\)\\n$`));
    expect(fs.readdirSync(chkpt(1)).filter((n) => n.startsWith(`${plain.pid}@`))).toEqual([]);

    const pidMax = Number(fs.readFileSync('/proc/sys/kernel/pid_max', 'utf8'));
    const noProcess = await run(CHECKPOINT, [String(pidMax + 1)], through(1));
    expect(noProcess).toMatchObject({ code: 1, stdout: '', stderr: `checkpoint: no process ${pidMax + 1}\n` });

    const unknown = await run(RESTART, [String(pidMax + 1)], through(3));
    expect(unknown.code).toBe(1);
    expect(unknown.stdout).toBe('');
    expect(unknown.stderr).toMatch(/^restart: no checkpoints of an application with PID \d+ in \S+\n$/);

    for (const args of [[], ['x'], ['1', '2'], ['--keep', '0', '1'], ['--keep'], ['--timeout', '0', '1'], ['--bogus', '1'], ['-1']]) {
      const r = await run(CHECKPOINT, args, through(1));
      expect(r, `checkpoint ${args.join(' ')}`).toMatchObject({ code: 2, stdout: '' });
      expect(r.stderr.trim().split('\n'), `checkpoint ${args.join(' ')}`).toHaveLength(1);
    }
    for (const args of [[], ['1', '2', '3'], ['1', 'x'], ['x'], ['--node', 'y', '1'], ['--bogus', '1']]) {
      const r = await run(RESTART, args, through(3));
      expect(r, `restart ${args.join(' ')}`).toMatchObject({ code: 2, stdout: '' });
      expect(r.stderr.trim().split('\n'), `restart ${args.join(' ')}`).toHaveLength(1);
    }

    // a root-owned program: nobody may not checkpoint it, nor restart it
    const app = await launchProgram();
    const denied = await run(NOBODY[0], [...NOBODY.slice(1), CHECKPOINT, String(app.pid)], through(1));
    expect(denied.code, denied.stderr).toBe(1);
    expect(denied.stdout).toBe('');
    expect(denied.stderr).toMatch(/^checkpoint: permission denied[^\n]*\n$/);
    expect(fs.readdirSync(appDir(app.pid)).filter((n) => n.startsWith('.v') || n.startsWith('description_'))).toEqual([]);
    const restartDenied = await run(NOBODY[0], [...NOBODY.slice(1), RESTART, String(app.pid)], through(3));
    expect(restartDenied.code, restartDenied.stderr).toBe(1);
    expect(restartDenied.stdout).toBe('');
    expect(await checkpoint(String(app.pid))).toBe(1);
    expect(app.child.exitCode).toBeNull();
  }, 60_000);

  it('--keep 2 leaves only the 2 newest sets', async () => {
    const app = await launchProgram();
    const dir = appDir(app.pid);
    expect(await checkpoint(String(app.pid))).toBe(1);
    expect(await checkpoint('--keep', '2', String(app.pid))).toBe(2);
    expect(filesOf(dir, 1)).toHaveLength(5);
    expect(await checkpoint('--keep', '2', String(app.pid))).toBe(3);
    expect(await checkpoint('--keep=2', String(app.pid))).toBe(4);
    for (const sn of [1, 2]) expect(filesOf(dir, sn), `SN ${sn}`).toEqual([]);
    for (const sn of [3, 4]) expect(filesOf(dir, sn), `SN ${sn}`).toHaveLength(5);
    expect((await list(app.pid)).sets.map((s) => [s.sn, s.state])).toEqual([[4, 'complete'], [3, 'complete']]);
    // and restart finds the newest
    const restarted = await run(RESTART, [String(app.pid)], through(2));
    expect(restarted, restarted.stderr).toMatchObject({ code: 0, stdout: `restored ${fs.readFileSync(path.join(dir, `task_mm_${app.pid}_v4.bin`), 'utf8')}\n` });
  }, 60_000);
});
