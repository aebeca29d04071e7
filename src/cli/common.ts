// What the command-line tools share: argument parsing, one-line errors, sizes,
// addresses, and finding the cluster a path or directory belongs to.
import { connectEtcd } from '../meta/kv/etcd.js';
import { etcdTargetOf } from '../meta/kv/target.js';
import { findLeader } from '../meta/leader/follow.js';
import type { LeaderRecord } from '../meta/leader/election.js';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { readSuperblock } from '../format/superblock.js';
import { MetaClient } from '../meta/client.js';
import { listMounts } from '../node/mounts.js';
import { readRunFile } from '../node/runfile.js';
import { loadCredentials } from '../security/credentials.js';
import { useIdentity } from '../security/tls.js';
import { useDataKeySource } from '../security/dataAuth.js';

/** A bad command line or refusal: printed as one line, exit status 1 (2 for usage). */
export class CliError extends Error {
  constructor(message: string, readonly status = 1) {
    super(message);
  }
}

export interface ParsedArgs {
  flags: Map<string, string | true>;
  positional: string[];
}

/** Parses --name VALUE, --name=VALUE and --flag; `valued` lists the options that take a value. */
export function parseArgs(argv: string[], valued: string[], booleans: string[]): ParsedArgs {
  const flags = new Map<string, string | true>();
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--') {
      positional.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith('--') || arg.length === 2) {
      positional.push(arg);
      continue;
    }
    const eq = arg.indexOf('=');
    const name = eq > 0 ? arg.slice(2, eq) : arg.slice(2);
    if (valued.includes(name)) {
      const value = eq > 0 ? arg.slice(eq + 1) : argv[++i];
      if (value === undefined) throw new CliError(`--${name} needs a value`, 2);
      flags.set(name, value);
    } else if (booleans.includes(name) && eq < 0) {
      flags.set(name, true);
    } else {
      throw new CliError(`unknown option --${name}`, 2);
    }
  }
  return { flags, positional };
}

/** A non-negative integer, as ids are. */
export function parseId(text: string, what: string): number {
  if (!/^\d{1,10}$/.test(text) || Number(text) > 0xffffffff) throw new CliError(`${what} must be a non-negative integer: ${JSON.stringify(text)}`, 2);
  return Number(text);
}

/** HOST:PORT, with an IPv6 host in brackets. */
export function parseAddress(text: string, what: string): string {
  const match = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9][A-Za-z0-9.-]*):(\d{1,5})$/.exec(text);
  if (!match || Number(match[2]) > 65535) throw new CliError(`${what} must be HOST:PORT: ${JSON.stringify(text)}`, 2);
  return text;
}

const SIZE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** 1048576, 1M, 1MiB, 512k... */
export function parseSize(text: string, what: string): number {
  const match = /^(\d+)\s*([kKmMgG]?)(i?[bB])?$/.exec(text);
  if (!match) throw new CliError(`${what} must be a size such as 1048576, 512K or 4M: ${JSON.stringify(text)}`, 2);
  return Number(match[1]) * SIZE_UNITS[match[2].toLowerCase()];
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${bytes} B` : `${value.toFixed(1)} ${units[unit]}`;
}

/** Runs a command's main and turns its errors into `prog: message` and an exit status. */
export async function runMain(prog: string, main: () => Promise<number | void>): Promise<void> {
  try {
    process.exitCode = (await main()) ?? 0;
  } catch (err) {
    if (err instanceof CliError) {
      process.stderr.write(`${prog}: ${err.message}\n`);
      process.exitCode = err.status;
    } else {
      process.stderr.write(`${prog}: ${(err as Error)?.message ?? String(err)}\n`);
      process.exitCode = 1;
    }
  }
}

/** The node directory whose kDFS mount holds `file`, and the path of `file` in the file system. */
export function locate(file: string): { dir: string; mountPoint: string; fsPath: string } {
  const absolute = path.resolve(file);
  const mounts = listMounts().filter((m) => m.type === 'fuse.kdfs' && m.source.startsWith('kdfs:'));
  let best: (typeof mounts)[number] | undefined;
  for (const m of mounts) {
    const inside = absolute === m.mountPoint || absolute.startsWith(m.mountPoint.endsWith('/') ? m.mountPoint : m.mountPoint + '/');
    if (inside && (!best || m.mountPoint.length > best.mountPoint.length)) best = m;
  }
  if (!best) throw new CliError(`${file} is not in a kDFS file system`);
  const relative = path.relative(best.mountPoint, absolute);
  return { dir: best.source.slice('kdfs:'.length), mountPoint: best.mountPoint, fsPath: '/' + relative.split(path.sep).filter(Boolean).join('/') };
}

/** A client of the metadata service of the cluster a node directory belongs to.
 *  leader: with etcd, the leader the caller already read (null: none), not read again. */
export async function metaClientFor(dir: string, leader?: LeaderRecord | null): Promise<MetaClient> {
  const sb = await readSuperblock(dir).catch((err: Error) => {
    if (/EACCES/.test(err.message)) throw new CliError(`this command speaks for node ${dir}, whose directory and credentials are root's: run it as root`);
    throw new CliError(err.message);
  });
  let address = sb.rootAddress;
  if (sb.nodeId === sb.rootNodeId) {
    // the root may listen on a port picked at start: its run file has the real one
    address = readRunFile(dir)?.address ?? sb.listenAddress;
  }
  if (!sb.fsid) throw new CliError(`${dir} has not joined its file system yet (mount it first)`);
  // a command speaks as the node whose directory it was given: with its credentials (root's only)
  try {
    useIdentity(loadCredentials(dir, sb.nodeId, sb.fsid));
  } catch (err) {
    throw new CliError((err as Error).message);
  }
  // metadata in etcd: the service is wherever its leader is
  if (sb.meta) address = (leader !== undefined ? leader : await metaLeaderOf(dir, sb.meta, sb.fsid))?.address ?? address;
  const client = MetaClient.remote(address, sb.fsid);
  useDataKeySource(() => client.dataKey());
  return client;
}

/** How long a command waits for a metadata leader (one may be being elected). */
const LEADER_WAIT_MS = 10_000;

/** The metadata leader of a file system whose metadata is in etcd, or null if none is elected. */
export async function metaLeaderOf(dir: string, meta: string, fsid: string): Promise<LeaderRecord | null> {
  let client;
  try {
    client = connectEtcd(etcdTargetOf(dir, meta));
  } catch (err) {
    throw new CliError((err as Error).message);
  }
  try {
    return await findLeader(client, fsid, LEADER_WAIT_MS);
  } finally {
    client.close();
  }
}

/** kDFS's version, from package.json (the commands run from dist/src/cli). */
export function packageVersion(): string {
  return (JSON.parse(readFileSync(path.join(__dirname, '..', '..', '..', 'package.json'), 'utf8')) as { version: string }).version;
}
