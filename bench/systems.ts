// The systems a benchmark runs on, all on this machine and its one disk: a local
// directory, a 3-node kDFS cluster (through node 1's mount and node 2's), a 3-brick
// distributed GlusterFS volume.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const ROOT = path.resolve(__dirname, '..', '..');
export const KDFS = path.join(ROOT, 'cli', 'kdfs');

export interface System {
  name: string;
  /** The directory workloads run in. */
  dir: string;
  /** Pids whose resident memory matters (the kDFS node serving the mount). */
  pids(): number[];
  stop(): Promise<void>;
  /** The workloads it runs (all when absent). */
  only?: RegExp;
}

function run(file: string, args: string[], options: { allowFail?: boolean; timeoutMs?: number } = {}): string {
  const result = spawnSync(file, args, { encoding: 'utf8', timeout: options.timeoutMs ?? 600_000 });
  if (result.status !== 0 && !options.allowFail) {
    throw new Error(`${file} ${args.join(' ')}: ${(result.stderr || result.stdout || String(result.error)).trim().split('\n').slice(-3).join(' / ')}`);
  }
  return result.stdout;
}

/** Installs Debian packages the benchmark needs and the machine lacks. */
export function ensurePackages(packages: string[]): void {
  const missing = packages.filter((p) => spawnSync('dpkg-query', ['-W', '-f=${Status}', p], { encoding: 'utf8' }).stdout.indexOf('install ok installed') < 0);
  if (missing.length === 0) return;
  console.log(`bench: installing ${missing.join(' ')}`);
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'ignore' });
  execFileSync('apt-get', ['install', '-y', '-qq', ...missing], { stdio: 'ignore', env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
}

export function localSystem(scratch: string): System {
  const dir = path.join(scratch, 'local');
  mkdirSync(dir, { recursive: true });
  return { name: 'local', dir, pids: () => [], stop: async () => rmSync(dir, { recursive: true, force: true }) };
}

/** A 3-node kDFS cluster, as two systems: node 1's mount (the root node, which serves the
 *  metadata in its own process) and node 2's (whose metadata goes over the network to
 *  node 1). Each runs its workloads in its own directory, made through its own mount.
 *  Node 2's stop() does nothing: node 1's stops the whole cluster. */
export async function kdfsSystems(scratch: string): Promise<[System, System, System]> {
  const clusterDir = path.join(scratch, 'kdfs');
  const down = async () => {
    run(KDFS, ['down', '--dir', clusterDir], { allowFail: true });
    rmSync(clusterDir, { recursive: true, force: true });
  };
  await down();
  run(KDFS, ['up', '--nodes', '3', '--dir', clusterDir]);
  const node = (id: number, name: string, sub: string, stop: () => Promise<void>): System => {
    // made through this node's own mount (node 1 at mnt, node N at mntN)
    const dir = path.join(clusterDir, id === 1 ? 'mnt' : `mnt${id}`, sub);
    mkdirSync(dir, { recursive: true });
    return {
      name,
      dir,
      pids: () => {
        try {
          return [(JSON.parse(readFileSync(path.join(clusterDir, `node${id}`, 'kdfs.run'), 'utf8')) as { pid: number }).pid];
        } catch {
          return [];
        }
      },
      stop,
    };
  };
  try {
    const oneCopy = node(1, 'kdfs1r', 'bench1r', async () => {});
    // the same cluster, a directory whose files keep one copy of each object
    run(KDFS, ['setstripe', '--replicas', '1', oneCopy.dir]);
    return [node(1, 'kdfs', 'bench', down), node(2, 'kdfs2', 'bench2', async () => {}), oneCopy];
  } catch (err) {
    await down();
    throw err;
  }
}

/** The cost of protecting the data channel: two more 3-node clusters made
 *  alike and used alike (sequential I/O and creates, through node 1's mount),
 *  one protected (the default), one with data_protection=off (frames
 *  authenticated at connection time, not MACed). */
export async function protectionSystems(scratch: string): Promise<[System, System]> {
  const cluster = async (name: string, options: string[]): Promise<System> => {
    const clusterDir = path.join(scratch, name);
    const down = async () => {
      run(KDFS, ['down', '--dir', clusterDir], { allowFail: true });
      rmSync(clusterDir, { recursive: true, force: true });
    };
    await down();
    run(KDFS, ['up', '--nodes', '3', '--dir', clusterDir, ...options]);
    const dir = path.join(clusterDir, 'mnt', 'bench');
    mkdirSync(dir, { recursive: true });
    return { name, dir, pids: () => [], stop: down, only: /^sequential|^metadata: create/ };
  };
  const protectedOne = await cluster('kdfsprot', []);
  try {
    return [protectedOne, await cluster('kdfsopen', ['-o', 'data_protection=off'])];
  } catch (err) {
    await protectedOne.stop();
    throw err;
  }
}

/** A 3-node cluster whose metadata is in a 3-member etcd (kdfs up --meta etcd),
 *  through node 2's mount (node 1 leads): its metadata workloads only. */
export async function etcdSystem(scratch: string): Promise<System> {
  const clusterDir = path.join(scratch, 'kdfsetcd');
  const down = async () => {
    run(KDFS, ['down', '--dir', clusterDir], { allowFail: true });
    rmSync(clusterDir, { recursive: true, force: true });
  };
  await down();
  run(KDFS, ['up', '--nodes', '3', '--dir', clusterDir, '--meta', 'etcd']);
  const dir = path.join(clusterDir, 'mnt2', 'bench');
  mkdirSync(dir, { recursive: true });
  return { name: 'kdfsetcd2', dir, pids: () => [], stop: down, only: /^metadata|^small files/ };
}

const GLUSTER_VOLUME = 'kdfsbench';

/** A 3-brick distributed GlusterFS volume with its FUSE client; throws why it cannot be had. */
export async function glusterSystem(scratch: string): Promise<System> {
  ensurePackages(['glusterfs-server', 'glusterfs-client']);
  const base = path.join(scratch, 'gluster');
  const mnt = path.join(base, 'mnt');
  if (spawnSync('pgrep', ['-x', 'glusterd']).status !== 0) run('glusterd', []);
  await waitFor(() => spawnSync('gluster', ['volume', 'list'], { encoding: 'utf8' }).status === 0, 20_000, 'glusterd did not start');
  stopGluster(base);
  mkdirSync(mnt, { recursive: true });
  const host = os.hostname();
  const bricks = [1, 2, 3].map((i) => `${host}:${path.join(base, `brick${i}`)}`);
  run('gluster', ['--mode=script', 'volume', 'create', GLUSTER_VOLUME, 'transport', 'tcp', ...bricks, 'force']);
  run('gluster', ['--mode=script', 'volume', 'start', GLUSTER_VOLUME]);
  run('mount', ['-t', 'glusterfs', `${host}:/${GLUSTER_VOLUME}`, mnt]);
  const dir = path.join(mnt, 'bench');
  mkdirSync(dir, { recursive: true });
  return { name: 'glusterfs', dir, pids: () => [], stop: async () => stopGluster(base) };
}

function stopGluster(base: string): void {
  const mnt = path.join(base, 'mnt');
  if (readFileSync('/proc/mounts', 'utf8').includes(` ${mnt} `)) spawnSync('umount', ['-l', mnt]);
  spawnSync('gluster', ['--mode=script', 'volume', 'stop', GLUSTER_VOLUME, 'force'], { stdio: 'ignore' });
  spawnSync('gluster', ['--mode=script', 'volume', 'delete', GLUSTER_VOLUME], { stdio: 'ignore' });
  rmSync(base, { recursive: true, force: true });
}

async function waitFor(condition: () => boolean, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(what);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

/** The script measuring the FUSE ceiling: $KDFS_FUSE_CEILING, else ../shared/tools/fuse-ceiling.sh
 *  beside the project. */
export function fuseCeilingScript(): string {
  return process.env.KDFS_FUSE_CEILING || path.resolve(ROOT, '..', 'shared', 'tools', 'fuse-ceiling.sh');
}

/** The FUSE ceiling of this machine, MiB/s, or why not. */
export function fuseCeiling(size: string): { write: number; read: number } | string {
  const script = fuseCeilingScript();
  if (!existsSync(script)) return `${script} is not there (set KDFS_FUSE_CEILING to the script)`;
  // the script leaves its binary and mount point in temporary directories: give it one to leave them in
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'kdfs-ceiling-'));
  const result = spawnSync('bash', [script, size], { encoding: 'utf8', timeout: 900_000, env: { ...process.env, TMPDIR: scratch } });
  for (const mount of readFileSync('/proc/mounts', 'utf8').split('\n').map((line) => line.split(' ')[1])) {
    if (mount?.startsWith(scratch + '/')) spawnSync('umount', ['-l', mount]);
  }
  rmSync(scratch, { recursive: true, force: true });
  if (result.status !== 0) return `fuse-ceiling.sh failed: ${(result.stderr || '').trim().split('\n').pop()}`;
  // multi-threaded figures: the kDFS mount is served by many requests at once too
  const figure = (rw: string) => {
    const lines = result.stdout.split('\n').filter((l) => l.includes(` ${rw}: `));
    return Math.max(...lines.map((l) => Number(/(\d+) MiB\/s/.exec(l)?.[1] ?? 0)));
  };
  return { write: figure('write'), read: figure('read') };
}

/** Writes back dirty pages and drops the page cache: a cold start for reads. */
export function dropCaches(): void {
  spawnSync('sync');
  try {
    execFileSync('sh', ['-c', 'echo 3 > /proc/sys/vm/drop_caches']);
  } catch {
    // not root: reads may be warm
  }
}
