// mount.kdfs [-f] [-o OPTIONS] ALLOCATED_DIRECTORY MOUNT_POINT
//
// Runs the node of a formatted directory and mounts the global namespace. As a
// mount(8) helper (/sbin/mount.kdfs) it also takes its options after the
// operands, and -n, -s, -v. Without -f it returns once the mount is usable and
// the node runs on as a daemon, logging to ALLOCATED_DIRECTORY/kdfs.log.
import { spawn } from 'node:child_process';
import { closeSync, openSync, writeSync } from 'node:fs';
import path from 'node:path';
import { configureLog, log } from '../common/log.js';
import { NODE_HEAP_MAX_MIB, NODE_SEMI_SPACE_MIB } from '../common/limits.js';
import { nodePaths } from '../format/paths.js';
import type { ReplicationOptions } from '../meta/service.js';
import { KdfsNode, StartError } from '../node/node.js';
import { CliError, packageVersion, runMain } from './common.js';

const USAGE = 'usage: mount.kdfs [-f] [-o OPTIONS] ALLOCATED_DIRECTORY MOUNT_POINT';
/** Set in the daemon: the descriptor to report "ready" or "error: ..." on. */
const READY_FD_ENV = 'KDFS_READY_FD';

/** Generic mount options that mean nothing to kDFS. */
const IGNORED_OPTIONS = new Set([
  'rw', 'defaults', 'auto', 'noauto', 'user', 'nouser', 'users', 'exec', 'noexec',
  'atime', 'noatime', 'relatime', 'norelatime', 'strictatime', 'nodiratime', 'diratime', 'async', '_netdev', 'nofail',
]);

interface MountArgs {
  foreground: boolean;
  readOnly: boolean;
  debug: boolean;
  /** mount(8)'s nodev and nosuid: device nodes and set-ID bits are ignored (the
   *  default for a user's mounts; root's mounts honour them unless told). */
  noDev: boolean;
  noSuid: boolean;
  /** Root node: repair_grace=SECONDS, scrub_rate=MIB_PER_S, scrub_interval=SECONDS, move_rate=MIB_PER_S (see ReplicationOptions). */
  replication: ReplicationOptions;
  /** data_protection=off: data frames are authenticated at connection time but not MACed (trusted networks). */
  dataProtection: boolean;
  dir: string;
  mountPoint: string;
}

/** Most seconds repair_grace and scrub_interval take: a year. */
const SECONDS_MAX = 366 * 24 * 3600;
const SCRUB_RATE_MAX_MIB = 100_000;

/** The whole number after the = of option NAME=N, at most max. */
function parseWhole(option: string, max: number): number {
  const [name, text] = option.split('=', 2);
  if (!/^[0-9]+$/.test(text) || Number(text) > max) throw new CliError(`${name} must be a whole number from 0 to ${max}: ${JSON.stringify(text)}`, 2);
  return Number(text);
}

export function parseMountArgs(argv: string[]): MountArgs {
  const args: MountArgs = { foreground: false, readOnly: false, debug: false, noDev: process.getuid?.() !== 0, noSuid: process.getuid?.() !== 0, dir: '', mountPoint: '', replication: {}, dataProtection: true };
  const positional: string[] = [];
  const options: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '-f') args.foreground = true;
    else if (arg === '-o') {
      if (argv[i + 1] === undefined) throw new CliError('-o needs a list of options', 2);
      options.push(...argv[++i].split(','));
    } else if (arg.startsWith('-o')) options.push(...arg.slice(2).split(','));
    else if (arg === '-n' || arg === '-s' || arg === '-v') continue; // mount(8) helper flags
    else if (arg.startsWith('-') && arg.length > 1) throw new CliError(`unknown option ${arg}\n${USAGE}`, 2);
    else positional.push(arg);
  }
  for (const option of options.filter(Boolean)) {
    if (option === 'ro') args.readOnly = true;
    else if (option === 'debug') args.debug = true;
    else if (option === 'nodev' || option === 'dev') args.noDev = option === 'nodev';
    else if (option === 'nosuid' || option === 'suid') args.noSuid = option === 'nosuid';
    else if (option.startsWith('repair_grace=')) args.replication.repairGraceMs = parseWhole(option, SECONDS_MAX) * 1000;
    else if (option.startsWith('scrub_rate=')) args.replication.scrubBytesPerS = parseWhole(option, SCRUB_RATE_MAX_MIB) * 2 ** 20;
    else if (option.startsWith('scrub_interval=')) args.replication.scrubIntervalMs = Math.max(1, parseWhole(option, SECONDS_MAX)) * 1000;
    else if (option === 'data_protection=on' || option === 'data_protection=off') args.dataProtection = option.endsWith('on');
    else if (option.startsWith('data_protection=')) throw new CliError(`data_protection must be on or off: ${JSON.stringify(option.slice('data_protection='.length))}`, 2);
    else if (option.startsWith('move_rate=')) args.replication.moveBytesPerS = Math.max(1, parseWhole(option, SCRUB_RATE_MAX_MIB)) * 2 ** 20;
    else if (!IGNORED_OPTIONS.has(option)) throw new CliError(`unknown mount option ${JSON.stringify(option)}`, 2);
  }
  if (positional.length !== 2) throw new CliError(USAGE, 2);
  args.dir = path.resolve(positional[0]);
  args.mountPoint = path.resolve(positional[1]);
  return args;
}

/** Starts the daemon and waits for it to report: ready, or why it could not start. */
async function daemonize(argv: string[], dir: string): Promise<number> {
  const logFile = nodePaths(dir).log;
  let logFd: number | 'ignore' = 'ignore';
  try {
    logFd = openSync(logFile, 'a');
  } catch {
    // the directory may be wrong; the daemon reports that
  }
  const child = spawn(process.execPath, [`--max-old-space-size=${NODE_HEAP_MAX_MIB}`, `--max-semi-space-size=${NODE_SEMI_SPACE_MIB}`, process.argv[1], '-f', ...argv], {
    detached: true,
    stdio: ['ignore', logFd, logFd, 'pipe'],
    env: { ...process.env, [READY_FD_ENV]: '3' },
  });
  if (typeof logFd === 'number') closeSync(logFd);
  const pipe = child.stdio[3] as NodeJS.ReadableStream;
  let report = '';
  const reported = new Promise<string>((resolve) => {
    pipe.on('data', (chunk: Buffer) => {
      report += chunk.toString();
      if (report.includes('\n')) resolve(report.slice(0, report.indexOf('\n')));
    });
    child.on('exit', (code, signal) => resolve(report || `the node process exited (${signal ?? `status ${code}`}); see ${logFile}`));
  });
  const line = await reported;
  if (line === 'ready') {
    child.unref();
    (pipe as unknown as { destroy(): void }).destroy();
    return 0;
  }
  throw new CliError(line.replace(/^error: /, ''));
}

/** The node process itself. */
async function runForeground(args: MountArgs): Promise<number> {
  const readyFd = process.env[READY_FD_ENV] ? Number(process.env[READY_FD_ENV]) : null;
  if (readyFd !== null) configureLog({ file: nodePaths(args.dir).log });
  configureLog({ prefix: `kdfs[${process.pid}]`, level: args.debug ? 'debug' : undefined });
  const report = (line: string) => {
    if (readyFd === null) return;
    try {
      writeSync(readyFd, line + '\n');
      closeSync(readyFd);
    } catch {
      // the parent is gone
    }
  };
  let node: KdfsNode;
  try {
    node = await KdfsNode.start({ dir: args.dir, mountPoint: args.mountPoint, readOnly: args.readOnly, debug: args.debug, noDev: args.noDev, noSuid: args.noSuid, replication: args.replication, dataProtection: args.dataProtection });
  } catch (err) {
    const message = err instanceof StartError ? err.message : `cannot start: ${(err as Error)?.stack ?? err}`;
    log.error(message);
    report('error: ' + message.split('\n')[0]);
    throw new CliError(message.split('\n')[0]);
  }
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => void node.stop(signal));
  process.on('uncaughtException', (err) => {
    log.error(`uncaught: ${err.stack ?? err}`);
    void node.stop('internal error').finally(() => process.exit(1));
  });
  process.on('unhandledRejection', (err) => log.error(`unhandled rejection: ${(err as Error)?.stack ?? err}`));
  report('ready');
  await node.stopped;
  return 0;
}

export async function main(argv: string[]): Promise<number> {
  if (argv.includes('--version')) {
    process.stdout.write(packageVersion() + '\n');
    return 0;
  }
  if (argv.includes('-h') || argv.includes('--help')) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  const args = parseMountArgs(argv);
  if (!args.foreground) return daemonize(argv, args.dir);
  const status = await runForeground(args);
  // gRPC and level handles may linger: the node is stopped, so leave.
  process.exit(status);
}

export function run(): Promise<void> {
  return runMain('mount.kdfs', () => main(process.argv.slice(2)));
}
