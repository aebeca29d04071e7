// A real kDFS cluster for tests: N node directories under a temporary directory,
// formatted with cli/mkfs.kdfs and mounted with cli/mount.kdfs (one daemon
// process per node, real FUSE mounts, gRPC on loopback). stop() unmounts and
// stops everything it started, and the global teardown sweeps whatever a
// crashed test worker left (see global-setup.ts).
import { execFile, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../../src/cli/kdfs.js';
import { isAlive as alive } from '../../src/node/runfile.js';
import { readPorts } from '../../src/node/ports.js';
import { TestNetwork } from './netns.js';
import { memberPid, startLocalEtcd, stopLocalEtcd } from '../../src/etcd/local.js';
import { pkiPaths } from '../../src/etcd/pki.js';

export const ROOT = path.resolve(__dirname, '..', '..');
export const CLI = {
  mkfs: path.join(ROOT, 'cli', 'mkfs.kdfs'),
  mount: path.join(ROOT, 'cli', 'mount.kdfs'),
  kdfs: path.join(ROOT, 'cli', 'kdfs'),
};
/** Every test cluster lives in a directory TEST_DIR_PREFIX<runner pid>-XXXXXX: the
 *  sweep finds them by it, and leaves alone those of another test run still alive. */
export const TEST_DIR_PREFIX = path.join(os.tmpdir(), 'kdfs-test-');

const run = promisify(execFile);

export interface CommandResult { code: number; stdout: string; stderr: string }

/** Runs a command to completion; never throws for a non-zero exit. */
export async function command(file: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<CommandResult> {
  try {
    const { stdout, stderr } = await run(file, args, { env: { ...process.env, ...env }, maxBuffer: 64 << 20 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    return { code: typeof e.code === 'number' ? e.code : 1, stdout: e.stdout ?? '', stderr: e.stderr ?? String(err) };
  }
}

function pidOf(nodeDir: string): number | null {
  try {
    return (JSON.parse(readFileSync(path.join(nodeDir, 'kdfs.run'), 'utf8')) as { pid: number }).pid;
  } catch {
    return null;
  }
}


/** Waits until a process that is not our child has gone (there is no exit event for it). */
export async function waitGone(pid: number, timeoutMs = 20_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (alive(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return true;
}

function mountedAt(mountPoint: string): boolean {
  return readFileSync('/proc/mounts', 'utf8').split('\n').some((line) => line.split(' ')[1] === mountPoint);
}

function detach(mountPoint: string): void {
  if (mountedAt(mountPoint)) spawnSync('fusermount', ['-u', '-z', mountPoint], { stdio: 'ignore' });
  if (mountedAt(mountPoint)) spawnSync('umount', ['-l', mountPoint], { stdio: 'ignore' });
}

/** Stops every node process and mount under a test directory, then removes it. */
export async function sweep(dir: string): Promise<void> {
  const nodeDirs = existsSync(dir) ? readdirSync(dir).filter((n) => /^node\d+$/.test(n)).map((n) => path.join(dir, n)) : [];
  for (const nodeDir of nodeDirs) {
    const pid = pidOf(nodeDir);
    if (pid && alive(pid)) process.kill(pid, 'SIGKILL');
  }
  // etcd members of a cluster with its metadata in etcd
  const etcdDir = path.join(dir, 'etcd');
  for (const member of existsSync(etcdDir) ? readdirSync(etcdDir).filter((n) => /^m\d+$/.test(n)) : []) {
    const pid = memberPid(etcdDir, member);
    if (pid) process.kill(pid, 'SIGKILL');
  }
  // the deepest first: FUSE mounts, then a tmpfs the cluster may live on
  const mounts = readFileSync('/proc/mounts', 'utf8').split('\n').map((line) => line.split(' ')[1])
    .filter((m) => m !== undefined && (m === dir || m.startsWith(dir + '/')))
    .sort((a, b) => b.length - a.length);
  for (const mountPoint of mounts) detach(mountPoint);
  rmSync(dir, { recursive: true, force: true });
}

/** Listens on a port of loopback, keeping a node from it. */
function holdPort(port: number): Promise<net.Server> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve(server));
  });
}

/** A fresh directory the sweep cleans up if a test cannot (its nodeN/ processes and mounts too). */
export function testDir(): string {
  const dir = mkdtempSync(`${TEST_DIR_PREFIX}${process.env.KDFS_TEST_RUN ?? process.pid}-`);
  // mkdtemp makes it 0700: other users must reach the mounts inside
  chmodSync(dir, 0o755);
  return dir;
}

export interface ClusterOptions {
  nodes?: number;
  /** Puts the whole cluster on a tmpfs of this size: a disk that fills up. */
  diskBytes?: number;
  /** Copies of each object (mkfs.kdfs --replicas; its default else). */
  replicas?: number;
  /** mount.kdfs options of the root node (-o ...). */
  rootMountArgs?: string[];
  /** Each node in a network namespace of its own, linked to a bridge (see netns.ts). */
  network?: boolean;
  /** The failure domain of each node (mkfs.kdfs --domain), node 1 first. */
  domains?: string[];
  /** The metadata in a 3-member etcd cluster on loopback (DIR/etcd), not in level on node 1. */
  etcd?: boolean;
}

export class Cluster {
  /** The nodes' network, with network: true. */
  network: TestNetwork | null = null;

  private constructor(readonly dir: string, readonly size: number, readonly rootPort: number, private readonly options: ClusterOptions = {}) {}

  /** Formats and mounts a cluster of `nodes` nodes; node 1 is the root. */
  static async start(options: ClusterOptions = {}): Promise<Cluster> {
    const size = options.nodes ?? 3;
    const dir = testDir();
    const cluster = new Cluster(dir, size, await freePort(), options);
    try {
      if (options.diskBytes) {
        const mounted = await command('mount', ['-t', 'tmpfs', '-o', `size=${options.diskBytes}`, 'kdfs-test', dir]);
        if (mounted.code !== 0) throw new Error(`tmpfs: ${mounted.stderr}`);
      }
      chmodSync(dir, 0o755); // the tmpfs mounted over it, if any, too
      if (options.network) cluster.network = TestNetwork.create(size);
      if (options.etcd) cluster.etcdEndpoints = await startLocalEtcd(cluster.etcdDir);
      for (let id = 1; id <= size; id++) await cluster.format(id);
      await cluster.mount(1);
      await Promise.all(Array.from({ length: size - 1 }, (_, i) => cluster.mount(i + 2)));
      // as kdfs up does: the nodes take data from the start
      if (size > 1) await cluster.admit(Array.from({ length: size - 1 }, (_, i) => i + 2));
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  nodeDir(id: number): string {
    return path.join(this.dir, `node${id}`);
  }

  /** With etcd: where its members live, and their client endpoints. */
  get etcdDir(): string {
    return path.join(this.dir, 'etcd');
  }

  etcdEndpoints: string[] = [];

  mnt(id: number): string {
    return path.join(this.dir, `mnt${id}`);
  }

  /** A path in the mount of node `id`. */
  path(id: number, ...parts: string[]): string {
    return path.join(this.mnt(id), ...parts);
  }

  get rootAddress(): string {
    return `${this.host(1)}:${this.rootPort}`;
  }

  /** Where node `id` listens. */
  host(id: number): string {
    return this.network ? this.network.address(id) : '127.0.0.1';
  }

  async format(id: number): Promise<void> {
    mkdirSync(this.nodeDir(id), { recursive: true });
    mkdirSync(this.mnt(id), { recursive: true });
    // every node but the root joins with a token made on the root (kdfs token create), as an administrator would
    const token = path.join(this.dir, `node${id}.token`);
    if (id !== 1) {
      rmSync(token, { force: true });
      const made = await this.kdfs(['token', 'create', '--node-id', String(id), '--out', token, '--dir', this.nodeDir(1)]);
      if (made.code !== 0) throw new Error(`kdfs token create --node-id ${id}: ${made.stderr}`);
    }
    const pki = pkiPaths(path.join(this.etcdDir, 'pki'));
    const etcdArgs = this.options.etcd ? ['--meta', `etcd://${this.etcdEndpoints.join(',')}`, '--etcd-ca', pki.ca, '--etcd-cert', pki.client, '--etcd-key', pki.clientKey] : [];
    const args = id === 1
      ? ['--node-id', '1', '--listen', this.rootAddress, ...(this.options.replicas ? ['--replicas', String(this.options.replicas)] : []), ...etcdArgs, this.nodeDir(id), '1']
      : ['--node-id', String(id), '--token', token, '--listen', `${this.host(id)}:0`, '--root', this.rootAddress, this.nodeDir(id), '1'];
    const domain = this.options.domains?.[id - 1];
    const result = await command(CLI.mkfs, domain ? ['--domain', domain, ...args] : args);
    rmSync(token, { force: true });
    if (result.code !== 0) throw new Error(`mkfs.kdfs node ${id}: ${result.stderr}`);
  }

  /** Mounts node `id` with mount.kdfs (as a daemon); throws with its error. */
  async mount(id: number, extraArgs: string[] = []): Promise<void> {
    const rootArgs = id === 1 ? this.options.rootMountArgs ?? [] : [];
    const args = [...rootArgs, ...extraArgs, this.nodeDir(id), this.mnt(id)];
    const result = this.network
      ? await command(this.network.inNamespace(id)[0], [...this.network.inNamespace(id).slice(1), CLI.mount, ...args])
      : await command(CLI.mount, args);
    if (result.code !== 0) throw new Error(`mount.kdfs node ${id}: ${result.stderr.trim()}`);
  }

  /** Mounts node `id` while this process holds the ports it listened on last
   *  (as another program could have taken them): it comes back at new addresses. */
  async mountElsewhere(id: number): Promise<void> {
    const holding = await Promise.allSettled(Object.values(readPorts(this.nodeDir(id))).map((port) => holdPort(port)));
    const held = holding.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
    try {
      if (held.length < holding.length) throw new Error(`node ${id}'s old ports are taken already`);
      await this.mount(id);
    } finally {
      for (const server of held) server.close();
    }
  }

  /** kdfs node add: the nodes take data. */
  async admit(ids: number[]): Promise<void> {
    const result = await this.kdfs(['node', 'add', ...ids.map(String), '--dir', this.dir]);
    if (result.code !== 0) throw new Error(`kdfs node add ${ids.join(' ')}: ${result.stderr.trim()}`);
  }

  pid(id: number): number | null {
    return pidOf(this.nodeDir(id));
  }

  /** Unmounts node `id` with umount(8) and waits for its process to exit. */
  async unmount(id: number): Promise<void> {
    const pid = this.pid(id);
    const result = await command('umount', [this.mnt(id)]);
    if (result.code !== 0) throw new Error(`umount ${this.mnt(id)}: ${result.stderr}`);
    if (pid && !(await waitGone(pid))) throw new Error(`node ${id} (pid ${pid}) did not exit after umount`);
  }

  /** kill -9 of node `id`'s process: its mount is left stale (ENOTCONN). */
  async kill9(id: number): Promise<void> {
    const pid = this.pid(id);
    if (!pid) throw new Error(`node ${id} is not running`);
    process.kill(pid, 'SIGKILL');
    await waitGone(pid);
  }

  async stop(): Promise<void> {
    for (let id = this.size; id >= 1; id--) {
      const pid = this.pid(id);
      if (pid && alive(pid)) {
        process.kill(pid, 'SIGTERM');
        if (!(await waitGone(pid, 10_000))) process.kill(pid, 'SIGKILL');
      }
    }
    if (this.options.etcd) await stopLocalEtcd(this.etcdDir);
    await sweep(this.dir);
    this.network?.destroy();
  }

  async kdfs(args: string[]): Promise<CommandResult> {
    return command(CLI.kdfs, args);
  }
}

/** Bytes of stripe objects a node directory holds (allocated blocks, as du counts). */
export function objectBytes(nodeDir: string): number {
  const out = spawnSync('du', ['-s', '-B1', path.join(nodeDir, 'objects')], { encoding: 'utf8' }).stdout;
  return Number(out.split('\t')[0]);
}
