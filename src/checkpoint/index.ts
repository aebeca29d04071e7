// Checkpoint/restart (docs/checkpoint.md): the one entry point the commands
// use. `kdfs run` prepares an application, `checkpoint` takes a set with the
// application's capture, `restart` verifies a set and brings the application
// back, `kdfs checkpoint list` shows the sets.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readdir, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { CliError } from '../cli/common.js';
import { checkpointDir, environOf, nodeIdOf, oneAppDir, ownerOf, pathInFs, readCommand, type CommandRecord } from './app.js';
import { CriuCapture, ProgramCapture, criuRestore, criuUnavailable, type Capture } from './capture.js';
import { describeFile, verifyManifest, type Manifest } from './manifest.js';
import { COMMAND_FILE, PROCS_DIR, appDirName, criuDirName, globalName, nodeName, parseAppDirName, taskMmName, taskName } from './names.js';
import { abandon, allocate, chownIfRoot, cleanAbandoned, commit, listSets, prune, readManifest, setLocalNode, writeSetFile, type Owner, type SetInfo } from './sets.js';

/** Applications that started with one PID on one node (PIDs are reused). */
const GENERATIONS_MAX = 1000;
export const CHECKPOINT_TIMEOUT_DEFAULT_MS = 300_000;

/** `kdfs run`: makes the application's directory for the shell `pid` that is
 *  about to exec argv; returns what the launcher exports. */
export async function prepareRun(pid: number, argv: string[]): Promise<{ appDir: string; nodeId: number }> {
  if (argv.length === 0) throw new CliError('usage: kdfs run [--] CMD ARGS...', 2);
  const where = checkpointDir();
  const nodeId = await nodeIdOf(where.mountPoint);
  const uid = process.getuid?.() ?? 0;
  const gid = process.getgid?.() ?? 0;
  let appDir = '';
  for (let generation = 1; generation <= GENERATIONS_MAX && !appDir; generation++) {
    const candidate = path.join(where.dir, appDirName(pid, nodeId, generation));
    try {
      await mkdir(candidate, { mode: 0o700 });
      appDir = candidate;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new CliError(`cannot create ${candidate}: ${(err as Error).message}`);
    }
  }
  if (!appDir) throw new CliError(`${GENERATIONS_MAX} applications already started with PID ${pid} on node ${nodeId}`);
  await mkdir(path.join(appDir, PROCS_DIR), { mode: 0o700 });
  const exe = argv[0].includes('/') ? path.resolve(argv[0]) : argv[0];
  const record: CommandRecord = {
    argv: [exe, ...argv.slice(1)], cwd: process.cwd(), cwdInFs: pathInFs(process.cwd()), exeInFs: exe.includes('/') ? pathInFs(exe) : null,
    uid, gid, nodeId, pid, startedSec: Math.floor(Date.now() / 1000), capture: 'program',
  };
  await writeFile(path.join(appDir, COMMAND_FILE), JSON.stringify(record, null, 1) + '\n', { mode: 0o600 });
  return { appDir, nodeId };
}

export interface CheckpointOptions { keep: number | null; timeoutMs: number; warn: (message: string) => void }

/** `checkpoint PID`: the next SN of PID's application, committed; returns it. */
export async function takeCheckpoint(pid: number, options: CheckpointOptions): Promise<{ appDir: string; sn: number; sizeBytes: number }> {
  const { warn } = options;
  const owner = ownerOf(pid);
  if (!owner) throw new CliError(`no process ${pid}`);
  const callerUid = process.getuid?.() ?? 0;
  if (callerUid !== 0 && callerUid !== owner.uid) throw new CliError(`permission denied: process ${pid} belongs to uid ${owner.uid}`);
  const where = checkpointDir();
  const nodeId = await nodeIdOf(where.mountPoint);
  setLocalNode(nodeId);
  const { appDir, capture, command } = await applicationOf(pid, where.dir, nodeId, owner);
  const staging = await allocate(appDir, nodeId, owner);
  let committed = false;
  try {
    const taken = await capture.take(appDir, staging, nodeId, owner, options.timeoutMs);
    const global = {
      application: path.basename(appDir), sn: staging.sn, nodes: [nodeId], capture: capture.name,
      argv: command.argv, cwd: command.cwd, timeSec: Math.floor(Date.now() / 1000),
    };
    const own: string[] = [globalName(staging.sn), nodeName(nodeId, staging.sn)];
    await writeSetFile(staging, own[0], JSON.stringify(global) + '\n', owner);
    await writeSetFile(staging, own[1], JSON.stringify({ node: nodeId, tasks: taken.tasks }) + '\n', owner);
    for (const task of taken.tasks) {
      const name = taskName(task.pid, staging.sn);
      own.push(name);
      await writeSetFile(staging, name, `pid=${task.pid}\nrank=${task.rank}\nstate_bytes=${task.stateBytes}\nnode=${task.nodeId}\n`, owner);
    }
    // a state whose hash its process reported is not read back (its size is checked)
    const reported = new Map(taken.tasks.filter((t) => t.xxh64 !== null).map((t) => [taskMmName(t.pid, staging.sn), t]));
    const files = [];
    for (const name of [...own, ...taken.files]) {
      const task = reported.get(name);
      if (task) {
        const sizeBytes = (await stat(path.join(staging.dir, name))).size;
        if (sizeBytes !== task.stateBytes) throw new Error(`${name} has ${sizeBytes} bytes, its process reported ${task.stateBytes}`);
        files.push({ name, sizeBytes, xxh64: task.xxh64! });
      } else {
        files.push({ ...(await describeFile(path.join(staging.dir, name))), name });
      }
    }
    const manifest: Manifest = { app: path.basename(appDir), sn: staging.sn, timeSec: global.timeSec, capture: capture.name, command: command.argv, files };
    await commit(staging, manifest, owner);
    committed = true;
    // SN is committed: what follows may fail without failing the checkpoint
    await cleanAbandoned(appDir).catch((err: Error) => warn(`cleaning what killed checkpoints left: ${err.message}`));
    if (options.keep !== null) await prune(appDir, options.keep).catch((err: Error) => warn(`removing old checkpoints (--keep): ${err.message}`));
    return { appDir, sn: staging.sn, sizeBytes: files.reduce((sum, f) => sum + f.sizeBytes, 0) };
  } catch (err) {
    if (committed) throw err;
    await abandon(staging).catch(() => {});
    throw new CliError(`checkpoint ${staging.sn} of ${path.basename(appDir)} failed: ${(err as Error).message}`);
  }
}

/** The application of a process: a program started with `kdfs run` (its
 *  environment names its directory), else a process tree CRIU can dump. */
async function applicationOf(pid: number, chkptDir: string, nodeId: number, owner: Owner): Promise<{ appDir: string; capture: Capture; command: CommandRecord }> {
  const named = environOf(pid, 'KDFS_CKPT_APP');
  if (named !== null) {
    const appDir = path.join(chkptDir, path.basename(named));
    if (!parseAppDirName(path.basename(named)) || !existsSync(appDir)) {
      throw new CliError(`process ${pid} was started with kdfs run into ${named}, which is not in the checkpoint directory ${chkptDir}`);
    }
    return { appDir, capture: new ProgramCapture(), command: await readCommand(appDir) };
  }
  const why = await criuUnavailable();
  if (why) throw new CliError(`process ${pid} was not started with kdfs run, and CRIU cannot capture it here (${why})`);
  const appDir = path.join(chkptDir, appDirName(pid, nodeId));
  if (!existsSync(appDir)) {
    await mkdir(appDir, { mode: 0o700 });
    await chownIfRoot(appDir, owner);
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').filter(Boolean);
    const record: CommandRecord = {
      argv: cmdline, cwd: '', cwdInFs: null, exeInFs: null, uid: owner.uid, gid: owner.gid, nodeId, pid, startedSec: Math.floor(Date.now() / 1000), capture: 'criu',
    };
    await writeFile(path.join(appDir, COMMAND_FILE), JSON.stringify(record, null, 1) + '\n', { mode: 0o600 });
    await chownIfRoot(path.join(appDir, COMMAND_FILE), owner);
  }
  return { appDir, capture: new CriuCapture(), command: await readCommand(appDir) };
}

/** The set restart uses: SN verified, or (without one) the newest intact set;
 *  damaged sets are reported through `warn`. */
export async function chooseSet(appDir: string, sn: number | null, warn: (message: string) => void): Promise<Manifest> {
  if (sn !== null) {
    const manifest = await readManifest(appDir, sn);
    if (typeof manifest === 'string') throw new CliError(`checkpoint ${sn} of ${path.basename(appDir)}: ${manifest}`);
    const problem = await verifyManifest(appDir, manifest);
    if (problem) throw new CliError(`checkpoint ${sn} of ${path.basename(appDir)} is damaged: ${problem}`);
    return manifest;
  }
  const sets = (await listSets(appDir)).filter((s) => s.state === 'complete' || s.state === 'damaged');
  for (const set of sets) {
    const problem = set.problem ?? (set.manifest ? await verifyManifest(appDir, set.manifest) : 'no manifest');
    if (!problem && set.manifest) return set.manifest;
    warn(`checkpoint ${set.sn} of ${path.basename(appDir)} is damaged (${problem}): trying an older one`);
  }
  throw new CliError(`no intact checkpoint of ${path.basename(appDir)}`);
}

/** `restart PID [SN]`: the application again, in the foreground, from a
 *  verified set; resolves with its exit status. */
export async function restart(pidArg: string, sn: number | null, nodeArg: number | null, warn: (message: string) => void): Promise<number> {
  const where = checkpointDir();
  const nodeId = await nodeIdOf(where.mountPoint);
  const appDir = await oneAppDir(where.dir, pidArg, nodeArg);
  const callerUid = process.getuid?.() ?? 0;
  const ownerUid = (await stat(appDir)).uid;
  if (callerUid !== 0 && callerUid !== ownerUid) throw new CliError(`permission denied: ${path.basename(appDir)} belongs to uid ${ownerUid}`);
  const command = await readCommand(appDir);
  const manifest = await chooseSet(appDir, sn, warn);
  if (command.capture === 'criu') return criuRestore(path.join(appDir, criuDirName(manifest.sn)));
  const local = (inFs: string | null, recorded: string) => (inFs !== null ? path.join(where.mountPoint, inFs) : recorded);
  const cwd = local(command.cwdInFs, command.cwd);
  const argv = [local(command.exeInFs, command.argv[0]), ...command.argv.slice(1)];
  const env = { ...process.env, KDFS_CKPT_APP: appDir, KDFS_CKPT_NODE: String(nodeId), KDFS_CKPT_RESTART_SN: String(manifest.sn) };
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0], argv.slice(1), { stdio: 'inherit', cwd: existsSync(cwd) ? cwd : process.cwd(), env });
    const forward = (signal: NodeJS.Signals) => child.kill(signal);
    const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];
    for (const signal of signals) process.on(signal, forward);
    child.on('error', (err) => reject(new CliError(`cannot start ${argv[0]}: ${err.message}`)));
    child.on('exit', (code, signal) => {
      for (const s of signals) process.off(s, forward);
      resolve(code ?? 128 + (os.constants.signals[signal as NodeJS.Signals] ?? 0));
    });
  });
}

export interface AppListing { app: string; command: string[]; sets: SetInfo[] }

/** `kdfs checkpoint list [PID]`: every application's sets, or PID's. */
export async function listCheckpoints(pidArg: string | null, nodeArg: number | null): Promise<AppListing[]> {
  const where = checkpointDir();
  setLocalNode(await nodeIdOf(where.mountPoint));
  const dirs = pidArg === null
    ? (await readdir(where.dir)).filter((n) => parseAppDirName(n)).sort().map((n) => path.join(where.dir, n))
    : [await oneAppDir(where.dir, pidArg, nodeArg)];
  const listing: AppListing[] = [];
  for (const dir of dirs) {
    const command = await readCommand(dir).catch(() => null);
    listing.push({ app: path.basename(dir), command: command?.argv ?? [], sets: await listSets(dir) });
  }
  return listing;
}
