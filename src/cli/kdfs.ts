// kdfs: the administration tool.
//   kdfs up [--nodes N] [--dir DIR]      format and mount N nodes on this machine
//   kdfs down [--dir DIR]                stop them
//   kdfs status [--json] [--dir DIR | PATH]  the nodes, their addresses, space and state
//   kdfs setstripe [--unit SIZE] [--count N] [--replicas R] PATH
//   kdfs getstripe [--json] PATH
//   kdfs node add|remove|maintenance|status ...   (see src/cli/nodes.ts)
//   kdfs rebalance start|status|stop
import { credentialPaths, installCredentials, makeToken, readToken, writeToken, type Token } from '../security/credentials.js';
import { BUILTIN_PLACEMENTS, PLACEMENT_NAME, ROUND_ROBIN } from '../layout/placement.js';
import { addCheckpointCommands } from './checkpoints.js';
import { spawn } from 'node:child_process';
import fs, { existsSync, mkdirSync, readdirSync } from 'node:fs';
import net from 'node:net';
import { freePort } from '../common/freePort.js';
import { clientCredentials, startLocalEtcd, stopLocalEtcd } from '../etcd/local.js';
import { etcdTargetOf, etcdUrl } from '../meta/kv/target.js';
import { membersHealth } from '../meta/kv/maintenance.js';
import path from 'node:path';
import { RemoteAgent } from '../agent/remote.js';
import { MiB, PEER_BOUND_MS, STRIPE_COUNT_MAX, STRIPE_UNIT_MAX_BYTES, STRIPE_UNIT_MIN_BYTES } from '../common/limits.js';
import { readMembers } from '../node/members.js';
import { within } from '../common/within.js';
import type { MetaClient } from '../meta/client.js';
import type { Layout, NodeInfo, StripePolicy } from '../rpc/messages.js';
import { nodePaths } from '../format/paths.js';
import { readSuperblock } from '../format/superblock.js';
import { detach, isStaleKdfsMount, mountAt } from '../node/mounts.js';
import { isAlive, readRunFile, runningNode } from '../node/runfile.js';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { CliError, formatBytes, locate, metaClientFor, metaLeaderOf, packageVersion, parseSize, runMain } from './common.js';
import { format } from './mkfs.js';
import { scrub } from './scrub.js';
import { nodeAdd, nodeMaintenance, nodeRevoke, nodeRemove, nodeStatus, progressLine, rebalance } from './nodes.js';
import { NODE_ADD, REBALANCE_STATUS } from '../rpc/messages.js';
import { REPLICAS_MAX, replicaCount, replicasOf } from '../layout/replicas.js';

export const DEFAULT_DIR = process.env.KDFS_DIR ?? '/tmp/kdfs';
const NODES_MAX = 64;
const STOP_WAIT_MS = 15_000;
/** How long kdfs status waits for a node's agent when the root does not answer. */
const PROBE_DEADLINE_MS = 1000;
/** Files `kdfs status --degraded` lists, at most. */
const DEGRADED_LISTED_MAX = 1000;
/** How long the root may take to count degraded objects (a scan of every inode). */
const HEALTH_WAIT_MS = 60_000;
const MOUNT_HELPER = path.join(__dirname, '..', '..', '..', 'cli', 'mount.kdfs');

export const nodeDirOf = (dir: string, id: number) => path.join(dir, `node${id}`);
export const mountPointOf = (dir: string, id: number) => path.join(dir, id === 1 ? 'mnt' : `mnt${id}`);

export { freePort };

function mountNode(dir: string, mountPoint: string, options = ''): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MOUNT_HELPER, ...(options ? ['-o', options] : []), dir, mountPoint], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new CliError(stderr.trim() || `mount.kdfs exited with status ${code}`))));
  });
}

/** Node directories under DIR, by node id. */
function nodeDirs(dir: string): Map<number, string> {
  const found = new Map<number, string>();
  if (!existsSync(dir)) return found;
  for (const name of readdirSync(dir)) {
    const match = /^node(\d+)$/.exec(name);
    if (match) found.set(Number(match[1]), path.join(dir, name));
  }
  return found;
}

async function up(options: { nodes: number; dir: string; options?: string; meta?: string }): Promise<number> {
  const count = options.nodes;
  const dir = path.resolve(options.dir);
  if (options.meta !== undefined && options.meta !== 'level' && options.meta !== 'etcd') throw new CliError(`--meta is level or etcd, not ${options.meta}`, 2);
  for (const [id, nodeDir] of nodeDirs(dir)) {
    const run = runningNode(nodeDir);
    if (run) throw new CliError(`node ${id} of ${dir} is already up (process ${run.pid}); run "kdfs down --dir ${dir}" first`);
  }
  mkdirSync(dir, { recursive: true });
  const rootDir = nodeDirOf(dir, 1);
  let rootAddress: string;
  if (existsSync(nodePaths(rootDir).superblock)) {
    rootAddress = (await readSuperblock(rootDir)).listenAddress;
  } else {
    rootAddress = `127.0.0.1:${await freePort()}`;
  }
  const rootFormatted = existsSync(nodePaths(rootDir).superblock);
  if (rootFormatted && options.meta === 'etcd' && !(await readSuperblock(rootDir)).meta) throw new CliError(`the file system in ${dir} keeps its metadata in level: --meta etcd is for a new one`);
  // an etcd cluster of a file system made with --meta etcd comes up first, and with every kdfs up after
  const etcdDir = path.join(dir, 'etcd');
  let meta = '';
  if (options.meta === 'etcd' || (rootFormatted && (await readSuperblock(rootDir)).meta)) {
    try {
      meta = etcdUrl(await startLocalEtcd(etcdDir));
    } catch (err) {
      throw new CliError((err as Error).message);
    }
  }
  /** Nodes formatted now: they take data from the start (kdfs node add); the
   *  others keep the state they had (a node removed stays removed). */
  const formatted: number[] = [];
  for (let id = 1; id <= count; id++) {
    const nodeDir = nodeDirOf(dir, id);
    mkdirSync(nodeDir, { recursive: true });
    mkdirSync(mountPointOf(dir, id), { recursive: true });
    if (!existsSync(nodePaths(nodeDir).superblock)) {
      if (id !== 1) formatted.push(id);
      // the token made and used at once: on one machine, the root's directory is at hand
      const token = id === 1 ? undefined : makeToken(rootDir, (await readSuperblock(rootDir)).fsid, rootAddress, id, meta);
      await format({
        dir: nodeDir, nodeId: id, rootNodeId: 1, listen: id === 1 ? rootAddress : '127.0.0.1:0', root: id === 1 ? undefined : rootAddress, token,
        ...(id === 1 && meta ? { meta, etcd: clientCredentials(path.join(etcdDir, 'pki')) } : {}),
      });
    }
  }
  await mountNode(rootDir, mountPointOf(dir, 1), options.options);
  const others = Array.from({ length: count - 1 }, (_, i) => i + 2);
  const results = await Promise.allSettled(others.map((id) => mountNode(nodeDirOf(dir, id), mountPointOf(dir, id), options.options)));
  const failed = results.flatMap((r, i) => (r.status === 'rejected' ? [`node ${others[i]}: ${(r.reason as Error).message}`] : []));
  if (failed.length) {
    await down({ dir });
    throw new CliError(failed.join('; '));
  }
  // the nodes of a cluster made here take data from the start (elsewhere, kdfs node add says when)
  if (formatted.length > 0) {
    const meta = await metaClientFor(rootDir);
    try {
      await meta.nodeAdmin(NODE_ADD, formatted);
    } catch (err) {
      await down({ dir });
      throw new CliError(`adding the nodes: ${(err as Error).message}`);
    } finally {
      meta.disconnect();
    }
  }
  const lines = [`kdfs: ${count} node${count > 1 ? 's' : ''} up in ${dir}`];
  for (let id = 1; id <= count; id++) {
    const run = readRunFile(nodeDirOf(dir, id));
    lines.push(`  node ${id}${id === 1 ? ' (root)' : '       '}  ${run?.address ?? '?'}  ${nodeDirOf(dir, id)}  mounted at ${mountPointOf(dir, id)}`);
  }
  if (meta) lines.push(`  metadata in etcd: ${meta} (${etcdDir})`);
  lines.push(`stop them with: kdfs down --dir ${dir}`);
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}

async function down(options: { dir: string }): Promise<number> {
  const dir = path.resolve(options.dir);
  const running: { id: number; pid: number; mountPoint: string }[] = [];
  for (const [id, nodeDir] of nodeDirs(dir)) {
    const run = runningNode(nodeDir);
    if (run) running.push({ id, pid: run.pid, mountPoint: run.mountPoint });
  }
  // the root last: the others may still talk to it while they stop
  running.sort((a, b) => (a.id === 1 ? 1 : b.id === 1 ? -1 : a.id - b.id));
  for (const node of running) {
    signal(node.pid, 'SIGTERM');
    const deadline = Date.now() + STOP_WAIT_MS;
    while (isAlive(node.pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
    signal(node.pid, 'SIGKILL');
  }
  // mounts left by killed processes
  for (const id of nodeDirs(dir).keys()) {
    const mounted = mountAt(mountPointOf(dir, id));
    if (mounted && isStaleKdfsMount(mounted)) detach(mounted.mountPoint);
  }
  // the metadata's etcd last: the nodes wrote to it until they stopped
  const members = await stopLocalEtcd(path.join(dir, 'etcd'));
  process.stdout.write(`kdfs: ${running.length} node${running.length === 1 ? '' : 's'}${members ? ` and ${members} etcd members` : ''} stopped in ${dir}\n`);
  return 0;
}

/** Signals a process that may have exited meanwhile. */
function signal(pid: number, name: NodeJS.Signals): void {
  try {
    process.kill(pid, name);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

async function status(where: string | undefined, options: { dir: string; json?: boolean; degraded?: boolean }): Promise<number> {
  const nodeDir = where !== undefined ? locate(where).dir : nodeDirOf(path.resolve(options.dir), 1);
  const sb = await readSuperblock(nodeDir).catch(() => null);
  // metadata in etcd: its leader, from etcd (null: none elected now)
  const leader = sb?.meta ? await metaLeaderOf(nodeDir, sb.meta, sb.fsid).catch(() => null) : undefined;
  const etcdMembers = sb?.meta ? await membersHealth(etcdTargetOf(nodeDir, sb.meta)).catch(() => null) : null;
  const meta = await metaClientFor(nodeDir, leader);
  let nodes: NodeInfo[];
  // null: the root does not answer, so no one knows
  let health: Awaited<ReturnType<MetaClient['health']>> | null = null;
  let moves: Awaited<ReturnType<MetaClient['rebalance']>> | null = null;
  try {
    nodes = await within(meta.listNodes(), PEER_BOUND_MS, () => {
      throw new CliError('the root node does not answer');
    });
    health = await within(meta.health(options.degraded ? DEGRADED_LISTED_MAX : 0, HEALTH_WAIT_MS), HEALTH_WAIT_MS, () => {
      throw new CliError('the root node did not count degraded objects in time');
    }).catch((err: Error) => {
      process.stderr.write(`kdfs: ${err.message}\n`);
      return null;
    });
    // drains and rebalances under way
    moves = await within(meta.rebalance(REBALANCE_STATUS), HEALTH_WAIT_MS, () => null).catch(() => null);
  } catch (err) {
    // without the root: the members this node last heard of, each probed here
    nodes = await probeMembers(nodeDir);
    if (nodes.length === 0) throw err;
    process.stderr.write(`kdfs: ${(err as Error).message}: states from probes of the nodes' agents\n`);
  } finally {
    meta.disconnect();
  }
  const checksumErrors = nodes.reduce((sum, n) => sum + (n.checksumErrors ?? 0), 0);
  // with etcd, every node up and not leading stands by to take over
  const standbys = nodes.filter((n) => n.state === 'up' && n.id !== leader?.nodeId).map((n) => n.id);
  const degradedFiles = options.degraded && health ? await pathsOf(nodeDir, health.degradedInos) : null;
  if (options.json) {
    const json = nodes.map((n) => ({
      id: n.id, address: n.address, dataAddress: n.dataAddress ?? '', state: n.state, capacityBytes: n.capacityBytes, usedBytes: n.usedBytes, freeBytes: n.freeBytes,
      checksumErrors: n.checksumErrors ?? 0, domain: n.domain ?? '', admin: n.admin ?? 'active', weight: n.weight ?? 0,
    }));
    process.stdout.write(JSON.stringify({
      nodes: json, degradedObjects: health?.degradedObjects ?? null, repairingObjects: health?.repairingObjects ?? null, checksumErrors,
      drain: moves?.drain ?? null, rebalance: moves?.rebalance ?? null,
      metaEngine: sb?.meta ? 'etcd' : 'level', metaLeader: leader === undefined ? sb?.rootNodeId ?? null : leader?.nodeId ?? null,
      ...(sb?.meta ? { metaStandbys: standbys, etcdMembers } : {}),
      ...(degradedFiles ? { degradedFiles } : {}),
    }) + '\n');
    return 0;
  }
  const rows = [['NODE', 'ADDRESS', 'STATE', 'ADMIN', 'CAPACITY', 'USED', 'FREE']];
  for (const n of nodes) {
    rows.push([String(n.id), n.address, n.state, n.admin ?? '-', n.up ? formatBytes(n.capacityBytes) : '-', n.up ? formatBytes(n.usedBytes) : '-', n.up ? formatBytes(n.freeBytes) : '-']);
  }
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  const lines = rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c])).join('  ').trimEnd());
  const count = (n: number | undefined) => (n === undefined ? 'unknown (the root does not answer)' : String(n));
  lines.push('', `degraded objects: ${count(health?.degradedObjects)}`, `objects being repaired: ${count(health?.repairingObjects)}`,
    `checksum mismatches found: ${checksumErrors}`);
  lines.push(leader === undefined ? `metadata: level, on the root node ${sb?.rootNodeId ?? '?'}`
    : `metadata: etcd (${sb!.meta}), leader ${leader ? `node ${leader.nodeId} at ${leader.address}` : 'none elected now'}, standing by: ${standbys.length ? standbys.map((id) => `node ${id}`).join(', ') : 'none'}`);
  for (const m of etcdMembers ?? []) {
    lines.push(`  etcd member ${m.endpoint}: ${m.healthy ? `healthy${m.leader ? ' (Raft leader)' : ''}, ${formatBytes(m.dbBytes)}` : `unreachable or failing (${m.error ?? '?'})`}`);
  }
  if (degradedFiles) lines.push('files with degraded objects:', ...degradedFiles.map((f) => `  ${f}`));
  if (moves?.drain?.state === 'running') lines.push(`drain of node${moves.drain.draining.length > 1 ? 's' : ''} ${moves.drain.draining.join(', ')}: ${progressLine(moves.drain)}`);
  if (moves?.rebalance?.state === 'running') lines.push(`rebalance: ${progressLine(moves.rebalance)}`);
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}

/** The paths of the inodes, found by walking the node's mount (kDFS keeps no
 *  path of a file, only its name in its directory); an inode not found (removed
 *  meanwhile, or under a directory this user cannot read) is shown by number. */
async function pathsOf(nodeDir: string, inos: number[]): Promise<string[]> {
  if (inos.length === 0) return [];
  const mountPoint = readRunFile(nodeDir)?.mountPoint;
  const wanted = new Set(inos.map((ino) => BigInt(ino)));
  const found = new Map<bigint, string>();
  const walk = async (dir: string): Promise<void> => {
    let names: string[];
    try {
      names = await fs.promises.readdir(dir);
    } catch {
      return;
    }
    for (const name of names) {
      if (found.size === wanted.size) return;
      const full = path.join(dir, name);
      const st = await fs.promises.lstat(full, { bigint: true }).catch(() => null);
      if (!st) continue;
      if (st.isDirectory()) await walk(full);
      else if (wanted.has(st.ino) && !found.has(st.ino)) found.set(st.ino, full);
    }
  };
  if (mountPoint) await walk(mountPoint);
  return inos.map((ino) => found.get(BigInt(ino)) ?? `inode ${ino}`);
}

/** The members recorded in nodeDir, each agent probed directly: up if it answers
 *  (its session with the root is unknown: suspect for the root itself), else down. */
async function probeMembers(nodeDir: string): Promise<NodeInfo[]> {
  const sb = await readSuperblock(nodeDir);
  return Promise.all(readMembers(nodeDir).map(async ({ id, address }): Promise<NodeInfo> => {
    const agent = new RemoteAgent(address, '', sb.fsid);
    try {
      const space = await agent.space(PROBE_DEADLINE_MS);
      return { id, address, dataAddress: '', up: true, state: id === sb.rootNodeId ? 'suspect' : 'up', ...space };
    } catch {
      return { id, address, dataAddress: '', up: false, state: 'down', capacityBytes: 0, usedBytes: 0, freeBytes: 0 };
    } finally {
      agent.close();
    }
  }));
}

async function setstripe(target: string, options: { unit?: number; count?: number; replicas?: number; policy?: string }): Promise<number> {
  const where = locate(target);
  const meta = await metaClientFor(where.dir);
  try {
    await meta.setStripe({ path: where.fsPath }, { unitBytes: options.unit ?? 0, count: options.count ?? 0, replicas: options.replicas ?? 0, placement: options.policy ?? '' });
  } catch (err) {
    throw new CliError(`${target}: ${(err as Error).message}`);
  } finally {
    meta.disconnect();
  }
  return 0;
}

async function getstripe(target: string, options: { json?: boolean }): Promise<number> {
  const where = locate(target);
  const meta = await metaClientFor(where.dir);
  try {
    const reply = await meta.getStripe({ path: where.fsPath }).catch((err: Error) => {
      throw new CliError(`${target}: ${err.message}`);
    });
    if (options.json) {
      process.stdout.write(JSON.stringify(reply.directory ? stripePolicyJson(reply.policy!) : layoutJson(reply.layout!, await downNodes(meta))) + '\n');
      return 0;
    }
    const lines = [target];
    if (reply.directory) {
      lines.push(`unit: ${reply.policy!.unitBytes}`, `count: ${reply.policy!.count}`, `replicas: ${reply.policy!.replicas || 1}`, `policy: ${reply.policy!.placement || ROUND_ROBIN}`);
    } else {
      const layout = layoutJson(reply.layout!, await downNodes(meta));
      lines.push(`unit: ${layout.unitBytes}`, `count: ${layout.count}`, `replicas: ${layout.replicas}`, `generation: ${layout.generation}`, 'objects:');
      for (const object of layout.objects) lines.push(`  ${object.index}  ${object.replicas.map((r) => `node ${r.node} ${r.state}`).join(', ')}`);
    }
    process.stdout.write(lines.join('\n') + '\n');
    return 0;
  } finally {
    meta.disconnect();
  }
}

function stripePolicyJson(policy: StripePolicy): object {
  return { unitBytes: policy.unitBytes, count: policy.count, replicas: policy.replicas || 1, placement: policy.placement || ROUND_ROBIN };
}

async function downNodes(meta: MetaClient): Promise<Set<number>> {
  return new Set((await meta.listNodes()).filter((n) => n.state === 'down').map((n) => n.id));
}

/** A file's layout for scripts: each object with its copies, first replica first:
 *  stale (missed writes, or found bad), missing (its node is down, or none was
 *  found for it), else good. */
function layoutJson(layout: Layout, down: Set<number>) {
  return {
    unitBytes: layout.unitBytes,
    count: layout.nodes.length,
    replicas: replicaCount(layout),
    generation: layout.gen ?? 0,
    objects: layout.nodes.map((_, index) => ({
      index,
      replicas: replicasOf(layout, index).map((r) => ({ node: r.node, state: r.stale ? 'stale' : r.node === 0 || down.has(r.node) ? 'missing' : 'good' })),
    })),
  };
}

/** The command line, on commander: every subcommand has --help, and bad input
 *  is one line on stderr and exit status 2, as from mkfs.kdfs and mount.kdfs. */
export async function main(argv: string[]): Promise<number> {
  let status_ = 0;
  const done = (code: number): void => {
    status_ = code;
  };
  const program = new Command('kdfs')
    .description('the administration tool of kDFS')
    .version(packageVersion())
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`kdfs: ${text.replace(/^error: /, '')}`) });
  program.command('up').description('format (if needed) and mount N nodes on this machine, on free loopback ports')
    .option('--nodes <n>', `how many nodes, 1 to ${NODES_MAX}`, integerIn(1, NODES_MAX), 3)
    .option('--dir <dir>', 'where the nodes live', DEFAULT_DIR)
    .option('-o, --options <list>', 'mount options of every node (mount.kdfs -o), e.g. data_protection=off')
    .option('--meta <engine>', 'where the metadata lives: level (on the root node) or etcd (a 3-member etcd cluster started beside the nodes)', 'level')
    .action(async (options) => done(await up(options)));
  program.command('down').description('stop the nodes kdfs up started')
    .option('--dir <dir>', 'where the nodes live', DEFAULT_DIR)
    .action(async (options) => done(await down(options)));
  program.command('status').description('the nodes: address, state (up, suspect, down), capacity, space used and free')
    .argument('[path]', 'a path in a kDFS mount (else the root node under --dir)')
    .option('--dir <dir>', 'where the nodes live', DEFAULT_DIR)
    .option('--json', 'one JSON document')
    .option('--degraded', 'list the files that have objects with fewer than R good copies')
    .action(async (where, options) => done(await status(where, options)));
  program.command('scrub').description('read every copy of every object, check checksums and copies; exit 0 when every object has R good copies')
    .argument('[path]', 'a file or directory in a kDFS mount (else the whole file system, through the root node under --dir)')
    .option('--dir <dir>', 'where the nodes live', DEFAULT_DIR)
    .option('--repair', 'have what is bad repaired')
    .option('--json', 'one JSON document: {checked, corrupt, missing, stale, repaired}')
    .action(async (where, options) => done(await scrub(where, nodeDirOf(path.resolve(options.dir), 1), options)));
  addCheckpointCommands(program, done);
  program.command('setstripe').description('how new files under a directory are striped, or the layout of an empty file')
    .argument('<path>', 'a directory or an empty file in a kDFS mount')
    .option('--unit <size>', 'stripe unit: a multiple of 64K from 64K to 64M (K, M suffixes)', stripeUnit)
    .option('--count <n>', `objects per file: 0 (all nodes) to ${STRIPE_COUNT_MAX}`, integerIn(0, STRIPE_COUNT_MAX))
    .option('--replicas <r>', `copies of each object: 0 (the file system's default) to ${REPLICAS_MAX}`, integerIn(0, REPLICAS_MAX))
    .option('--policy <name>', `placement of new files' objects: ${BUILTIN_PLACEMENTS.join(', ')}, or a policy module loaded in MOUNT/.kdfs/scheduler (default: inherited, else round-robin)`, placementName)
    .action(async (target, options) => done(await setstripe(target, options)));
  program.command('getstripe').description('the unit, the count, and the node of each stripe object')
    .argument('<path>', 'a file or a directory in a kDFS mount')
    .option('--json', 'one JSON document')
    .action(async (target, options) => done(await getstripe(target, options)));
  const token = program.command('token').description('join tokens: a node\'s credentials, made on the root node (docs/security.md)');
  token.command('create').description('write the join token of a node (its key and certificate): copy it to the node, format it with mkfs.kdfs --token FILE, then delete it')
    .requiredOption('--node-id <n>', 'the node the token is for', integerIn(1, 0xffffffff))
    .requiredOption('--out <file>', 'where to write it (mode 0600; it must not exist)')
    .option('--dir <dir>', 'the root node\'s directory, or where kdfs up put the nodes', DEFAULT_DIR)
    .action(async (options: { nodeId: number; out: string; dir: string }) => done(await tokenCreate(options)));
  token.command('install').description('replace a formatted node\'s credentials with those of a new token (rotation); they serve from the node\'s next mount')
    .argument('<file>', 'the token, from kdfs token create on the root')
    .requiredOption('--dir <dir>', 'the node\'s directory')
    .action(async (file: string, options: { dir: string }) => done(await tokenInstall(file, options.dir)));
  const node = program.command('node').description('add, drain and remove nodes; maintenance; whether each is safe to stop');
  const rootDirOf = (dir: string) => nodeDirOf(dir, 1);
  const idsHelp = 'node ids: N, N:M or -nN:M ranges, and optionally a path in a kDFS mount (else the root node under --dir)';
  node.command('add').description('admit nodes that joined (formatted with mkfs.kdfs and mounted) into placement')
    .argument('<ids...>', idsHelp)
    .option('--dir <dir>', 'where the nodes live', DEFAULT_DIR)
    .allowUnknownOption() // -n16:18, the seed's ranges
    .action(async (words, options) => done(await nodeAdd(words, options, rootDirOf)));
  node.command('remove').description('drain nodes: their copies are moved to the others, then they are removed; waits until done')
    .argument('<ids...>', idsHelp)
    .option('--dir <dir>', 'where the nodes live', DEFAULT_DIR)
    .option('--force', 'remove dead nodes at once: their copies are made again from the others')
    .option('--background', 'do not wait for the drain to end')
    .allowUnknownOption() // -n21:34, the seed's ranges
    .action(async (words, options) => done(await nodeRemove(words, options, rootDirOf)));
  node.command('revoke').description('lock nodes out: their credentials are refused at once, their connections closed, their copies made again on the others')
    .argument('<ids...>', idsHelp)
    .option('--dir <dir>', 'where the nodes live', DEFAULT_DIR)
    .allowUnknownOption()
    .action(async (words, options) => done(await nodeRevoke(words, options, rootDirOf)));
  node.command('maintenance').description('a node down on purpose (a reboot): its copies are not made elsewhere while it is down')
    .argument('<args...>', 'node ids, then on or off')
    .option('--dir <dir>', 'where the nodes live', DEFAULT_DIR)
    .allowUnknownOption()
    .action(async (words, options) => done(await nodeMaintenance(words, options, rootDirOf)));
  node.command('status').description('each node\'s states, weight, copies, and whether it is safe to stop now')
    .argument('[path]', 'a path in a kDFS mount (else the root node under --dir)')
    .option('--dir <dir>', 'where the nodes live', DEFAULT_DIR)
    .option('--json', 'one JSON document')
    .action(async (where, options) => done(await nodeStatus(where ? [where] : [], options, rootDirOf)));
  program.command('rebalance').description('move copies so that each node holds a share of the data in proportion to its capacity')
    .argument('<op>', 'start (waits until done unless --background), status, or stop')
    .argument('[path]', 'a path in a kDFS mount (else the root node under --dir)')
    .option('--dir <dir>', 'where the nodes live', DEFAULT_DIR)
    .option('--json', 'status as one JSON document')
    .option('--background', 'start, and do not wait')
    .action(async (op, where, options) => {
      if (!['start', 'status', 'stop'].includes(op)) throw new CliError(`rebalance start, status or stop, not ${JSON.stringify(op)}`, 2);
      done(await rebalance(op, where, options, rootDirOf));
    });
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    throw err;
  }
  return status_;
}

/** A parser of an integer option within [min, max]. */
function integerIn(min: number, max: number): (text: string) => number {
  return (text) => {
    if (!/^\d+$/.test(text) || Number(text) < min || Number(text) > max) throw new InvalidArgumentError(`It must be an integer from ${min} to ${max}.`);
    return Number(text);
  };
}

/** --unit, checked here: the protocol's 32-bit fields would wrap larger numbers into small ones. */
function stripeUnit(text: string): number {
  let bytes: number;
  try {
    bytes = parseSize(text, '--unit');
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
  if (bytes < STRIPE_UNIT_MIN_BYTES || bytes > STRIPE_UNIT_MAX_BYTES || bytes % STRIPE_UNIT_MIN_BYTES !== 0) {
    throw new InvalidArgumentError(`It must be a multiple of 64K from 64K to ${STRIPE_UNIT_MAX_BYTES / MiB}M.`);
  }
  return bytes;
}

export function run(): Promise<void> {
  // a command is done when main is: a connection still in its TLS handshake
  // with a stopped node (which gRPC does not time out) must not keep it alive
  return runMain('kdfs', () => main(process.argv.slice(2))).then(() => {
    process.stdout.write('', () => process.exit());
  });
}

function placementName(text: string): string {
  if (!PLACEMENT_NAME.test(text)) throw new InvalidArgumentError('It must be a policy name: lower-case letters, digits, ".", "_" or "-".');
  return text;
}

/** kdfs token create: a node's credentials, signed by the authority in the root's directory. */
async function tokenCreate(options: { nodeId: number; out: string; dir: string }): Promise<number> {
  const given = path.resolve(options.dir);
  const rootDir = existsSync(credentialPaths(given).caKey) ? given : nodeDirOf(given, 1);
  if (!existsSync(credentialPaths(rootDir).caKey)) throw new CliError(`${given} is not the root node's directory (nor holds one as node1): the root's credentials are needed`);
  const sb = await readSuperblock(rootDir).catch((err: Error) => {
    throw new CliError(err.message);
  });
  if (options.nodeId === sb.rootNodeId) throw new CliError(`node ${options.nodeId} is the root node: it has its credentials`);
  const out = path.resolve(options.out);
  if (existsSync(out)) throw new CliError(`${out} exists: a token is written to a new file`);
  const rootAddress = readRunFile(rootDir)?.address ?? sb.listenAddress;
  try {
    writeToken(out, makeToken(rootDir, sb.fsid, rootAddress, options.nodeId, sb.meta ?? ''));
  } catch (err) {
    throw new CliError((err as Error).message);
  }
  process.stdout.write(`kdfs: ${out}: join token of node ${options.nodeId} (file system ${sb.fsid}, root at ${rootAddress}); format the node with: mkfs.kdfs --token ${out} DIRECTORY ${sb.rootNodeId}\n`);
  return 0;
}

/** kdfs token install: new credentials for a formatted node (rotation), checked against its superblock. */
async function tokenInstall(file: string, dir: string): Promise<number> {
  const nodeDir = path.resolve(dir);
  const sb = await readSuperblock(nodeDir).catch((err: Error) => {
    throw new CliError(err.message);
  });
  let token: Token;
  try {
    token = readToken(path.resolve(file));
  } catch (err) {
    throw new CliError((err as Error).message);
  }
  if (token.fsid !== sb.fsid) throw new CliError(`the token is for file system ${token.fsid}, ${nodeDir} belongs to ${sb.fsid}`);
  if (token.nodeId !== sb.nodeId) throw new CliError(`the token is node ${token.nodeId}'s, ${nodeDir} is node ${sb.nodeId}`);
  installCredentials(nodeDir, token);
  process.stdout.write(`kdfs: ${nodeDir}: new credentials of node ${sb.nodeId} installed; they serve from its next mount\n`);
  return 0;
}
