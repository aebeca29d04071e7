// The checkpoint commands: `checkpoint PID`, `restart PID [SN]`, the preparing
// half of `kdfs run` (cli/kdfs-run execs the program), and `kdfs checkpoint list`.
import type { Command } from 'commander';
import path from 'node:path';
import { CHECKPOINT_TIMEOUT_DEFAULT_MS, listCheckpoints, prepareRun, restart, takeCheckpoint } from '../checkpoint/index.js';
import { CliError, formatBytes, parseArgs, parseId, runMain } from './common.js';

const CHECKPOINT_USAGE = 'usage: checkpoint [--keep K] [--timeout SECONDS] PID';
const RESTART_USAGE = 'usage: restart [--node N] PID [SN]';

export async function checkpointMain(argv: string[]): Promise<number> {
  const { flags, positional } = parseArgs(argv, ['keep', 'timeout'], []);
  if (positional.length !== 1) throw new CliError(CHECKPOINT_USAGE, 2);
  const pid = parseId(positional[0], 'PID');
  const keep = flags.has('keep') ? parseId(String(flags.get('keep')), '--keep') : null;
  if (keep === 0) throw new CliError('--keep must be at least 1', 2);
  const timeoutS = flags.has('timeout') ? parseId(String(flags.get('timeout')), '--timeout') : CHECKPOINT_TIMEOUT_DEFAULT_MS / 1000;
  if (timeoutS === 0) throw new CliError('--timeout must be at least 1 second', 2);
  const taken = await takeCheckpoint(pid, { keep, timeoutMs: timeoutS * 1000, warn: (message) => process.stderr.write(`checkpoint: ${message}\n`) });
  process.stdout.write(`checkpoint ${taken.sn} of ${path.basename(taken.appDir)}: ${formatBytes(taken.sizeBytes)} in ${taken.appDir}\n`);
  return 0;
}

export async function restartMain(argv: string[]): Promise<number> {
  const { flags, positional } = parseArgs(argv, ['node'], []);
  if (positional.length < 1 || positional.length > 2) throw new CliError(RESTART_USAGE, 2);
  const sn = positional.length === 2 ? parseId(positional[1], 'SN') : null;
  const node = flags.has('node') ? parseId(String(flags.get('node')), '--node') : null;
  return restart(positional[0], sn, node, (message) => process.stderr.write(`restart: ${message}\n`));
}

/** Prints `NODE\nAPPDIR` for cli/kdfs-run to export before it execs. */
export async function runPrepareMain(argv: string[]): Promise<number> {
  const [pidText, ...command] = argv;
  const { appDir, nodeId } = await prepareRun(parseId(pidText ?? '', 'PID'), command);
  process.stdout.write(`${nodeId}\n${appDir}\n`);
  return 0;
}

export function addCheckpointCommands(program: Command, done: (code: number) => void): void {
  program.command('run').description('start a program as a checkpointable application (see docs/checkpoint.md); it execs, so $! is its PID')
    .argument('<command...>', 'the program and its arguments')
    .action(() => {
      throw new CliError('kdfs run is a shell launcher: run it as `kdfs run [--] CMD ARGS...` through cli/kdfs', 2);
    });
  const checkpoint = program.command('checkpoint').description('checkpoints in the checkpoint directory ($KDFS_CHKPT_DIR, else /var/chkpt)');
  checkpoint.command('list').description('every application\'s checkpoints, or those of the application started with PID: SN, time, size, state')
    .argument('[pid]', 'the PID the application started with, or its directory name (PID@nodeN)')
    .option('--node <n>', 'the node it started on, when two applications had that PID')
    .option('--json', 'one JSON document')
    .action(async (pid: string | undefined, options: { node?: string; json?: boolean }) => {
      const node = options.node === undefined ? null : parseId(options.node, '--node');
      const apps = await listCheckpoints(pid ?? null, node);
      if (options.json) {
        const plain = apps.map((a) => ({ ...a, sets: a.sets.map(({ manifest: _m, ...set }) => set) }));
        process.stdout.write(JSON.stringify(plain, null, 1) + '\n');
      } else {
        for (const app of apps) {
          process.stdout.write(`${app.app}  ${app.command.join(' ')}\n`);
          if (app.sets.length === 0) process.stdout.write('  no checkpoints\n');
          for (const set of app.sets) {
            const time = set.timeSec ? new Date(set.timeSec * 1000).toISOString().replace('.000Z', 'Z') : '-';
            process.stdout.write(`  SN ${String(set.sn).padEnd(5)} ${time}  ${formatBytes(set.sizeBytes).padStart(10)}  ${set.state}${set.problem ? ` (${set.problem})` : ''}\n`);
          }
        }
      }
      done(0);
    });
}

export const runCheckpoint = (): Promise<void> => runMain('checkpoint', () => checkpointMain(process.argv.slice(2)));
export const runRestart = (): Promise<void> => runMain('restart', () => restartMain(process.argv.slice(2)));
export const runRunPrepare = (): Promise<void> => runMain('kdfs run', () => runPrepareMain(process.argv.slice(2)));
