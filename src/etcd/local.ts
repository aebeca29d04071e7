// A one-machine etcd cluster beside the nodes (kdfs up --meta etcd, and the
// tests): MEMBERS members on loopback, with mutual TLS (pki.ts), each in
// DIR/mN with its data, log and pid file. Started again with the same ports
// and data by a later kdfs up; stopped by kdfs down.
//
// Growth is bounded by the flags every member runs with: revisions older than
// COMPACTION_RETENTION are compacted away, the backend's quota is QUOTA_BYTES
// (a full quota refuses writes: ENOSPC, never lost data), and the metadata
// service defragments (see ../meta/kv/maintenance.ts).
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { freePort } from '../common/freePort.js';
import { isAlive as alive } from '../node/runfile.js';
import { TXN_BYTES_MAX, TXN_OPS_MAX, connectEtcd } from '../meta/kv/etcd.js';
import { clientCredentials, createEtcdPki, pkiPaths } from './pki.js';

export const LOCAL_MEMBERS = 3;
/** The backend's size limit (etcd's default is 2 GiB; 8 GiB is its documented maximum advised). */
export const QUOTA_BYTES = 4 * 1024 ** 3;
export const COMPACTION_RETENTION = '5m';
/** How long the members may take to elect a leader and answer. */
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 10_000;

interface Member { name: string; clientPort: number; peerPort: number }
interface ClusterFile { token: string; members: Member[] }

const clusterFile = (dir: string) => path.join(dir, 'cluster.json');
const memberDir = (dir: string, name: string) => path.join(dir, name);
const pidFile = (dir: string, name: string) => path.join(memberDir(dir, name), 'etcd.pid');
const peerUrl = (m: Member) => `https://127.0.0.1:${m.peerPort}`;
const clientUrl = (m: Member) => `https://127.0.0.1:${m.clientPort}`;

export function etcdInstalled(): boolean {
  return spawnSync('etcd', ['--version'], { stdio: 'ignore' }).status === 0;
}

function readCluster(dir: string): ClusterFile | null {
  try {
    return JSON.parse(readFileSync(clusterFile(dir), 'utf8')) as ClusterFile;
  } catch {
    return null;
  }
}

export function endpointsOf(dir: string): string[] {
  // by name: TLS checks the certificate against it (an address as TLS server name is deprecated)
  return (readCluster(dir)?.members ?? []).map((m) => `localhost:${m.clientPort}`);
}

/** The pid of a running member, or null. */
export function memberPid(dir: string, name: string): number | null {
  try {
    const pid = Number(readFileSync(pidFile(dir, name), 'utf8'));
    return pid > 0 && alive(pid) ? pid : null;
  } catch {
    return null;
  }
}

/** Starts the member, new or with the data it has. */
export function startMember(dir: string, name: string): number {
  const cluster = readCluster(dir)!;
  const member = cluster.members.find((m) => m.name === name)!;
  const mdir = memberDir(dir, name);
  const pki = pkiPaths(path.join(dir, 'pki'));
  const dataDir = path.join(mdir, 'data');
  const state = existsSync(dataDir) ? 'existing' : 'new';
  mkdirSync(mdir, { recursive: true, mode: 0o700 });
  const log = openSync(path.join(mdir, 'etcd.log'), 'a', 0o600);
  const child = spawn('etcd', [
    '--name', name, '--data-dir', dataDir,
    '--listen-client-urls', clientUrl(member), '--advertise-client-urls', clientUrl(member),
    '--listen-peer-urls', peerUrl(member), '--initial-advertise-peer-urls', peerUrl(member),
    '--initial-cluster', cluster.members.map((m) => `${m.name}=${peerUrl(m)}`).join(','),
    '--initial-cluster-state', state, '--initial-cluster-token', cluster.token,
    '--client-cert-auth', '--trusted-ca-file', pki.ca, '--cert-file', pki.server, '--key-file', pki.serverKey,
    '--peer-client-cert-auth', '--peer-trusted-ca-file', pki.ca, '--peer-cert-file', pki.server, '--peer-key-file', pki.serverKey,
    '--auto-compaction-mode', 'periodic', '--auto-compaction-retention', COMPACTION_RETENTION,
    '--quota-backend-bytes', String(QUOTA_BYTES),
    '--max-txn-ops', String(TXN_OPS_MAX * 2), '--max-request-bytes', String(TXN_BYTES_MAX * 2),
    '--logger', 'zap', '--log-level', 'warn',
  ], { detached: true, stdio: ['ignore', log, log] });
  closeSync(log);
  child.unref();
  writeFileSync(pidFile(dir, name), String(child.pid), { mode: 0o600 });
  return child.pid!;
}

/** Starts the cluster in dir (made there the first time); resolves with its
 *  endpoints once it answers a linearizable read. */
export async function startLocalEtcd(dir: string): Promise<string[]> {
  if (!etcdInstalled()) throw new Error('etcd is not installed (npm run setup installs Debian\'s etcd-server)');
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (!readCluster(dir)) {
    createEtcdPki(path.join(dir, 'pki'));
    const members: Member[] = [];
    for (let i = 1; i <= LOCAL_MEMBERS; i++) members.push({ name: `m${i}`, clientPort: await freePort(), peerPort: await freePort() });
    writeFileSync(clusterFile(dir), JSON.stringify({ token: `kdfs-${randomBytes(8).toString('hex')}`, members }, null, 1), { mode: 0o600 });
  }
  for (const m of readCluster(dir)!.members) if (!memberPid(dir, m.name)) startMember(dir, m.name);
  const endpoints = endpointsOf(dir);
  await waitReady(dir, endpoints);
  return endpoints;
}

async function waitReady(dir: string, endpoints: string[]): Promise<void> {
  const client = connectEtcd({ endpoints, ...clientCredentials(path.join(dir, 'pki')) });
  const deadline = Date.now() + READY_TIMEOUT_MS;
  try {
    for (;;) {
      try {
        await client.get('kdfs-ready-probe').string();
        return;
      } catch (err) {
        if (Date.now() > deadline) throw new Error(`the etcd cluster in ${dir} did not answer within ${READY_TIMEOUT_MS / 1000} s: ${(err as Error).message}`);
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
  } finally {
    client.close();
  }
}

/** Stops a member (SIGTERM, then SIGKILL); true if it was running. */
export async function stopMember(dir: string, name: string, signal: NodeJS.Signals = 'SIGTERM'): Promise<boolean> {
  const pid = memberPid(dir, name);
  if (!pid) return false;
  process.kill(pid, signal);
  const deadline = Date.now() + STOP_TIMEOUT_MS;
  while (alive(pid) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 50));
  if (alive(pid)) process.kill(pid, 'SIGKILL');
  return true;
}

/** Stops every member; the number that were running. */
export async function stopLocalEtcd(dir: string): Promise<number> {
  const members = readCluster(dir)?.members ?? [];
  const stopped = await Promise.all(members.map((m) => stopMember(dir, m.name)));
  return stopped.filter(Boolean).length;
}

export { clientCredentials };
