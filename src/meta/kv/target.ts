// Which engine a file system's metadata is in (the superblock's `meta`), and
// opening it: level on the root node's disk, or an etcd cluster reached with
// the etcd credentials in the node's directory.
import { readEtcdCredentials } from '../../security/credentials.js';
import type { KvEngine } from './engine.js';
import { EtcdEngine, connectEtcd, fsPrefix, type EtcdTarget } from './etcd.js';

const ETCD_SCHEME = 'etcd://';
/** Most etcd endpoints a file system names (a 7-member etcd cluster is already large). */
const ENDPOINTS_MAX = 9;

/** The endpoints of an etcd:// address; throws a one-line reason for a bad one. */
export function parseEtcdUrl(url: string): string[] {
  if (!url.startsWith(ETCD_SCHEME)) throw new Error(`--meta takes etcd://HOST:PORT,HOST:PORT,... (got ${url})`);
  const endpoints = url.slice(ETCD_SCHEME.length).replace(/\/$/, '').split(',');
  if (endpoints.length > ENDPOINTS_MAX) throw new Error(`--meta names ${endpoints.length} etcd endpoints, at most ${ENDPOINTS_MAX}`);
  for (const endpoint of endpoints) {
    const match = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(endpoint);
    if (!match || Number(match[2]) < 1 || Number(match[2]) > 65535) throw new Error(`--meta: ${endpoint || '(empty)'} is not HOST:PORT`);
  }
  return endpoints;
}

export const etcdUrl = (endpoints: string[]): string => ETCD_SCHEME + endpoints.join(',');

/** The etcd target of a node directory whose file system keeps its metadata at `url`. */
export function etcdTargetOf(nodeDir: string, url: string): EtcdTarget {
  return { endpoints: parseEtcdUrl(url), ...readEtcdCredentials(nodeDir) };
}

/** The etcd engine of file system fsid. */
export function openEtcdEngine(target: EtcdTarget, fsid: string): EtcdEngine {
  return new EtcdEngine(connectEtcd(target), fsPrefix(fsid), target.endpoints);
}

export type { KvEngine };
