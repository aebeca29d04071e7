// mkfs.kdfs [--node-id N] [--token FILE] [--listen HOST:PORT] [--root HOST:PORT] [--replicas R] [--domain NAME] [--meta etcd://HOST:PORT,... --etcd-ca F --etcd-cert F --etcd-key F] [--force] [--replace] DIRECTORY_PATHNAME ROOT_NODEID
//
// Formats a node's directory: its superblock and object directories, and on the
// root node (node id = ROOT_NODEID) the root meta-file holding the root
// directory. Every check comes before the first change: a refusal leaves the
// directory as it was.
import { createAuthority, credentialPaths, installCredentials, installEtcdCredentials, readToken, type EtcdCredentials, type Token } from '../security/credentials.js';
import type { BatchOp } from '../meta/kv/engine.js';
import { openEtcdEngine, parseEtcdUrl } from '../meta/kv/target.js';
import { X509Certificate, createPrivateKey, randomUUID } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';
import { now } from '../common/clock.js';
import { S_IFDIR } from '../common/mode.js';
import { ObjectStore } from '../agent/objectStore.js';
import { nodePaths } from '../format/paths.js';
import { FORMAT_VERSION, fsyncDirectory, readSuperblock, writeSuperblock } from '../format/superblock.js';
import { FIRST_INO, ROOT_INO } from '../meta/records.js';
import { MetaStore } from '../meta/store.js';
import { LevelEngine } from '../meta/kv/level.js';
import { REPLICAS_MAX } from '../layout/replicas.js';
import { runningNode } from '../node/runfile.js';
import { CliError, packageVersion, parseAddress, parseArgs, parseId, runMain } from './common.js';

const USAGE = 'usage: mkfs.kdfs [--node-id N] [--token FILE] [--listen HOST:PORT] [--root HOST:PORT] [--replicas R] [--domain NAME] [--meta etcd://HOST:PORT,... --etcd-ca FILE --etcd-cert FILE --etcd-key FILE] [--force] [--replace] DIRECTORY_PATHNAME ROOT_NODEID (or --help, --version)';
/** Longest failure domain name. */
const DOMAIN_MAX_CHARS = 64;
/** Copies of each stripe object in a new file system, unless --replicas says otherwise. */
export const DEFAULT_REPLICAS = 2;
export const DEFAULT_ROOT_LISTEN = '127.0.0.1:7070';
export const DEFAULT_LISTEN = '127.0.0.1:0';

export interface FormatOptions {
  dir: string;
  nodeId: number;
  rootNodeId: number;
  listen?: string;
  root?: string;
  /** Copies of each stripe object, the file system's default (root node only). */
  replicas?: number;
  /** The node's failure domain (a host, a rack): copies of an object avoid sharing one. */
  domain?: string;
  force?: boolean;
  /** The directory takes the place of a member's lost one: it joins under that id, and its copies are rebuilt onto it. */
  replace?: boolean;
  /** A node's join token (kdfs token create on the root): required on every node but the root. */
  token?: Token;
  /** Root: where the metadata goes, etcd://HOST:PORT,... (absent: level, in DIR/meta), with the etcd client's credentials. */
  meta?: string;
  etcd?: EtcdCredentials;
}

/** Checks everything, then formats. Returns a one-line summary. */
export async function format(options: FormatOptions): Promise<string> {
  const { dir, nodeId, rootNodeId } = options;
  const isRoot = nodeId === rootNodeId;
  if (!path.isAbsolute(dir)) throw new CliError(`DIRECTORY_PATHNAME must be an absolute path: ${dir}`);
  if (!isRoot && options.replicas !== undefined) throw new CliError('--replicas is a choice of the file system: give it when formatting the root node');
  if (isRoot && options.replace) throw new CliError('--replace is for a node that is not the root: the root holds the metadata, which a new directory would not have');
  if (!isRoot && !options.token) throw new CliError(`node ${nodeId} is not the root node (${rootNodeId}): its join token is required (--token FILE, made on the root with kdfs token create --node-id ${nodeId})`);
  if (isRoot && options.token) throw new CliError('the root node makes the file system\'s credentials: it takes no --token');
  if (!isRoot && (options.meta || options.etcd)) throw new CliError('--meta and the etcd credentials are given when formatting the root node; the others take them from their token');
  if (options.meta) {
    try {
      parseEtcdUrl(options.meta);
    } catch (err) {
      throw new CliError((err as Error).message, 2);
    }
  }
  if (options.meta && !options.etcd) throw new CliError('--meta etcd://... needs the etcd client\'s credentials: --etcd-ca FILE --etcd-cert FILE --etcd-key FILE');
  if (options.etcd && !options.meta) throw new CliError('the etcd credentials are for --meta etcd://...');
  if (options.token && options.token.nodeId !== nodeId) throw new CliError(`the token is node ${options.token.nodeId}'s, not node ${nodeId}'s`);
  const root = options.root ?? options.token?.rootAddress;
  if (!isRoot && !root) throw new CliError(`node ${nodeId} is not the root node (${rootNodeId}): --root HOST:PORT of the root node is required`);
  let isDirectory = false;
  try {
    isDirectory = statSync(dir).isDirectory();
  } catch {
    throw new CliError(`${dir}: no such directory`);
  }
  if (!isDirectory) throw new CliError(`${dir} is not a directory`);
  const paths = nodePaths(dir);
  const formatted = existsSync(paths.superblock);
  if (formatted && !options.force) throw new CliError(`${dir} is already formatted for kDFS (use --force to format it again)`);
  if (!formatted && readdirSync(dir).length > 0) throw new CliError(`${dir} is not empty and not a kDFS directory: refusing to format it`);
  if (formatted) {
    await readSuperblock(dir).catch(() => undefined); // a damaged superblock is still ours to overwrite
    const run = runningNode(dir);
    if (run) throw new CliError(`${dir} is in use by node process ${run.pid} (mounted at ${run.mountPoint})`);
  }
  const listen = options.listen ?? (isRoot ? DEFAULT_ROOT_LISTEN : DEFAULT_LISTEN);
  const meta = isRoot ? options.meta ?? '' : options.token!.meta ?? '';
  const fsid = isRoot ? randomUUID() : options.token!.fsid;
  const nodeUuid = randomUUID();
  const createdSec = Math.floor(Date.now() / 1000);
  const time = now();
  const records = isRoot ? MetaStore.initialRecords(
    { fsid, nextIno: FIRST_INO, defaultPolicy: { unitBytes: 0, count: 0, replicas: options.replicas ?? DEFAULT_REPLICAS }, rootNodeId, createdSec },
    {
      attr: { ino: ROOT_INO, mode: S_IFDIR | 0o755, uid: 0, gid: 0, nlink: 2, size: 4096, rdev: 0, atime: time, mtime: time, ctime: time },
      layout: null, target: '', parent: ROOT_INO, entries: 0, policy: null, xattrs: {}, inlined: false, inlineData: Buffer.alloc(0),
    },
    { id: nodeId, uuid: nodeUuid, address: listen, joinedSec: createdSec, dataAddress: '', domain: options.domain ?? '' },
  ) : [];
  // the metadata in etcd is written first: a cluster that cannot take it leaves the directory as it was
  if (isRoot && meta) await createInEtcd(meta, options.etcd!, fsid, records);

  // Past this point the directory changes.
  if (formatted) {
    for (const entry of [paths.superblock, paths.objects, paths.meta, paths.metaReserve, paths.members, paths.log, paths.run, credentialPaths(dir).dir]) rmSync(entry, { recursive: true, force: true });
  }
  // node data, metadata and credentials are root's: other local users go through the mount
  chmodSync(dir, 0o700);
  ObjectStore.create(paths.objects);
  if (isRoot && !meta) await LevelEngine.create(paths.meta, records);
  if (isRoot) createAuthority(dir, fsid, nodeId);
  else installCredentials(dir, options.token!);
  const etcd = isRoot ? options.etcd : options.token!.etcd;
  if (meta && etcd) installEtcdCredentials(dir, etcd);
  // The superblock goes last: a directory with one is completely formatted.
  await writeSuperblock(dir, {
    formatVersion: FORMAT_VERSION, nodeId, rootNodeId, listenAddress: listen, rootAddress: isRoot ? '' : root!,
    fsid, nodeUuid, createdSec, domain: options.domain ?? '', replace: options.replace ?? false, meta,
  });
  fsyncDirectory(dir);
  return isRoot
    ? `${dir}: kDFS root node ${nodeId} (file system ${fsid}${meta ? `, metadata in ${meta}` : ''}), serving at ${listen}`
    : `${dir}: kDFS node ${nodeId}, serving at ${listen}, root node ${rootNodeId} at ${root}`;
}

/** Writes a new file system's first records into etcd, under its prefix (empty: its fsid is new). */
async function createInEtcd(url: string, credentials: EtcdCredentials, fsid: string, records: BatchOp[]): Promise<void> {
  const engine = openEtcdEngine({ endpoints: parseEtcdUrl(url), ...credentials }, fsid);
  try {
    await engine.write([records], true);
  } catch (err) {
    // gRPC's message: its first sentence
    const why = (err as Error).message.split('\n')[0].replace(/\s*Resolution note:.*$/, '').replace(/ \(\d{4}-\d\d-\d\dT[^)]*\)\.?$/, '');
    throw new CliError(`cannot write the metadata into etcd at ${url}: ${why}`);
  } finally {
    await engine.close();
  }
}

/** The etcd client credentials named by --etcd-ca, --etcd-cert and --etcd-key (all three, or none). */
function etcdCredentialsOf(flags: Map<string, string | boolean>): EtcdCredentials | undefined {
  const names = ['etcd-ca', 'etcd-cert', 'etcd-key'];
  const given = names.filter((name) => flags.has(name));
  if (given.length === 0) return undefined;
  if (given.length !== names.length) throw new CliError('the etcd credentials are three files: --etcd-ca, --etcd-cert and --etcd-key', 2);
  const read = (name: string) => {
    try {
      return readFileSync(flags.get(name) as string, 'utf8');
    } catch (err) {
      throw new CliError(`--${name}: ${(err as Error).message}`);
    }
  };
  const credentials = { ca: read('etcd-ca'), cert: read('etcd-cert'), key: read('etcd-key') };
  for (const [name, pem] of [['etcd-ca', credentials.ca], ['etcd-cert', credentials.cert]]) {
    try {
      new X509Certificate(pem);
    } catch {
      throw new CliError(`--${name}: ${flags.get(name) as string} is not a PEM certificate`);
    }
  }
  try {
    createPrivateKey(credentials.key);
  } catch {
    throw new CliError(`--etcd-key: ${flags.get('etcd-key') as string} is not a PEM private key`);
  }
  return credentials;
}

export async function main(argv: string[]): Promise<number> {
  const { flags, positional } = parseArgs(argv, ['node-id', 'listen', 'root', 'replicas', 'domain', 'token', 'meta', 'etcd-ca', 'etcd-cert', 'etcd-key'], ['force', 'replace', 'help', 'version']);
  if (flags.has('version')) {
    process.stdout.write(packageVersion() + '\n');
    return 0;
  }
  if (flags.has('help')) {
    process.stdout.write(USAGE + '\n');
    return 0;
  }
  if (positional.length !== 2) throw new CliError(USAGE, 2);
  const [dir, rootText] = positional;
  let token: Token | undefined;
  if (flags.has('token')) {
    try {
      token = readToken(flags.get('token') as string);
    } catch (err) {
      throw new CliError((err as Error).message);
    }
  }
  const nodeText = (flags.get('node-id') as string | undefined) ?? process.env.KDFS_NODE_ID ?? (token ? String(token.nodeId) : undefined);
  if (nodeText === undefined) throw new CliError('the node id is unknown: give --node-id N or set KDFS_NODE_ID', 2);
  const summary = await format({
    dir,
    nodeId: parseId(nodeText, 'the node id'),
    rootNodeId: parseId(rootText, 'ROOT_NODEID'),
    listen: flags.has('listen') ? parseAddress(flags.get('listen') as string, '--listen') : undefined,
    root: flags.has('root') ? parseAddress(flags.get('root') as string, '--root') : undefined,
    replicas: flags.has('replicas') ? parseReplicas(flags.get('replicas') as string) : undefined,
    domain: flags.has('domain') ? parseDomain(flags.get('domain') as string) : undefined,
    force: flags.has('force'),
    replace: flags.has('replace'),
    token,
    meta: flags.has('meta') ? flags.get('meta') as string : undefined,
    etcd: etcdCredentialsOf(flags),
  });
  process.stdout.write(`mkfs.kdfs: formatted ${summary}\n`);
  return 0;
}

function parseDomain(text: string): string {
  if (!/^[A-Za-z0-9._:-]+$/.test(text) || text.length > DOMAIN_MAX_CHARS) {
    throw new CliError(`--domain must be a name of letters, digits and . _ : - up to ${DOMAIN_MAX_CHARS} characters: ${JSON.stringify(text)}`, 2);
  }
  return text;
}

function parseReplicas(text: string): number {
  const value = Number(text);
  if (!/^[0-9]+$/.test(text) || value < 1 || value > REPLICAS_MAX) throw new CliError(`--replicas must be a whole number from 1 to ${REPLICAS_MAX}: ${text}`, 2);
  return value;
}

export function run(): Promise<void> {
  return runMain('mkfs.kdfs', () => main(process.argv.slice(2)));
}
