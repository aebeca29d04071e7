// Finding things: the checkpoint directory, the kDFS node a path is on, the
// application a process belongs to, and an application's directory by PID.
import { readFileSync, realpathSync, statSync } from 'node:fs';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { CliError, locate } from '../cli/common.js';
import { COMMAND_FILE, parseAppDirName } from './names.js';

export const DEFAULT_CHKPT_DIR = '/var/chkpt';

/** How `kdfs run` started an application (command.json). */
export interface CommandRecord {
  argv: string[];
  cwd: string;
  /** cwd and argv[0] as paths in the file system, when they were in kDFS: a
   *  restart on another node finds them under its own mount. */
  cwdInFs: string | null;
  exeInFs: string | null;
  uid: number;
  gid: number;
  nodeId: number;
  pid: number;
  startedSec: number;
  capture: 'program' | 'criu';
}

/** The checkpoint directory: $KDFS_CHKPT_DIR, else /var/chkpt; it must be a directory in a kDFS mount. */
export function checkpointDir(): { dir: string; mountPoint: string; nodeDir: string } {
  const given = process.env.KDFS_CHKPT_DIR;
  const dir = path.resolve(given || DEFAULT_CHKPT_DIR);
  let real: string;
  try {
    real = realpathSync(dir);
    if (!statSync(real).isDirectory()) throw new Error('not a directory');
  } catch {
    throw new CliError(`the checkpoint directory ${dir} does not exist: create it in a kDFS mount${given ? '' : ' (or set KDFS_CHKPT_DIR)'}`);
  }
  let where: ReturnType<typeof locate>;
  try {
    where = locate(real);
  } catch {
    throw new CliError(`the checkpoint directory ${dir} is not in a kDFS file system`);
  }
  return { dir: real, mountPoint: where.mountPoint, nodeDir: where.dir };
}

/** The kDFS node id of a mount: MOUNT/.kdfs/node, readable by every user
 *  (the node's directory is root's only). */
export async function nodeIdOf(mountPoint: string): Promise<number> {
  try {
    const text = await readFile(path.join(mountPoint, '.kdfs', 'node'), 'utf8');
    if (!/^\d+\n$/.test(text)) throw new Error(`unexpected content ${JSON.stringify(text)}`);
    return Number(text);
  } catch (err) {
    throw new CliError(`cannot tell which kDFS node ${mountPoint} is: ${(err as Error).message}`);
  }
}

/** The path of `file` in the file system, when it is in a kDFS mount. */
export function pathInFs(file: string): string | null {
  try {
    return locate(file).fsPath;
  } catch {
    return null;
  }
}

/** One variable of a process's environment (null: unset, or the process is not readable). */
export function environOf(pid: number, name: string): string | null {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/environ`, 'latin1');
  } catch {
    return null;
  }
  const prefix = name + '=';
  const entry = text.split('\0').find((e) => e.startsWith(prefix));
  return entry === undefined ? null : Buffer.from(entry.slice(prefix.length), 'latin1').toString('utf8');
}

/** The real uid and gid of a process, or null if there is none. */
export function ownerOf(pid: number): { uid: number; gid: number } | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
    const gid = Number(/^Gid:\s+(\d+)/m.exec(status)?.[1]);
    return { uid, gid };
  } catch {
    return null;
  }
}

export async function readCommand(appDir: string): Promise<CommandRecord> {
  try {
    return JSON.parse(await readFile(path.join(appDir, COMMAND_FILE), 'utf8')) as CommandRecord;
  } catch (err) {
    throw new CliError(`${appDir}: cannot read ${COMMAND_FILE}: ${(err as Error).message}`);
  }
}

/** The directories of the applications started with PID (on `nodeId`, if given). */
export async function appDirsOf(chkptDir: string, pid: number, nodeId: number | null): Promise<string[]> {
  const names = await readdir(chkptDir);
  return names.filter((name) => {
    const parsed = parseAppDirName(name);
    return parsed !== null && parsed.pid === pid && (nodeId === null || parsed.nodeId === nodeId);
  }).sort().map((name) => path.join(chkptDir, name));
}

/** The one application directory for `restart PID` or `list PID`; asks for the
 *  node (or the directory's name) when several applications had that PID. */
export async function oneAppDir(chkptDir: string, pidArg: string, nodeId: number | null): Promise<string> {
  if (parseAppDirName(pidArg)) return path.join(chkptDir, pidArg);
  if (!/^\d+$/.test(pidArg)) throw new CliError(`PID must be a process id, or an application's directory name (PID@nodeN): ${JSON.stringify(pidArg)}`, 2);
  const dirs = await appDirsOf(chkptDir, Number(pidArg), nodeId);
  if (dirs.length === 0) throw new CliError(`no checkpoints of an application with PID ${pidArg}${nodeId === null ? '' : ` started on node ${nodeId}`} in ${chkptDir}`);
  if (dirs.length > 1) {
    throw new CliError(`${dirs.length} applications had PID ${pidArg}: ${dirs.map((d) => path.basename(d)).join(', ')}; give one of these names, or --node N`);
  }
  return dirs[0];
}
