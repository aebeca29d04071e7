// Keeps an etcd cluster's backend from growing without end. etcd compacts old
// revisions itself (--auto-compaction-*, set by kdfs up; docs/metadata.md for
// other clusters) but never gives the freed pages back: the metadata service
// defragments each member whose file is mostly free space, one member at a
// time (a member is unavailable while it defragments).
import { log } from '../../common/log.js';
import { connectEtcd, type EtcdTarget } from './etcd.js';

/** How often members are looked at. */
export const DEFRAG_CHECK_MS = 10 * 60 * 1000;
/** Free space in a member's file that is worth a defragmentation. */
const FREE_BYTES_MIN = 256 * 1024 * 1024;

/** How long a member may take to say how it is (kdfs status). */
const STATUS_TIMEOUT_MS = 2000;

export interface MemberHealth { endpoint: string; healthy: boolean; leader: boolean; dbBytes: number; error?: string }

/** How each member is: answering, the Raft leader or not, its file's size. */
export async function membersHealth(target: EtcdTarget): Promise<MemberHealth[]> {
  return Promise.all(target.endpoints.map(async (endpoint) => {
    const client = connectEtcd({ ...target, endpoints: [endpoint] });
    try {
      const status = await client.maintenance.status({ deadline: Date.now() + STATUS_TIMEOUT_MS });
      return { endpoint, healthy: status.errors.length === 0, leader: status.leader === status.header.member_id, dbBytes: Number(status.dbSize), ...(status.errors.length ? { error: status.errors.join('; ') } : {}) };
    } catch (err) {
      return { endpoint, healthy: false, leader: false, dbBytes: 0, error: (err as Error).message.split('\n')[0] };
    } finally {
      client.close();
    }
  }));
}

/** Each member's sizes; defragments those whose file is mostly free. */
export async function defragmentIfWorth(target: EtcdTarget): Promise<{ endpoint: string; dbBytes: number; inUseBytes: number; defragmented: boolean }[]> {
  const report = [];
  for (const endpoint of target.endpoints) {
    const client = connectEtcd({ ...target, endpoints: [endpoint] });
    try {
      const status = await client.maintenance.status();
      const dbBytes = Number(status.dbSize);
      const inUseBytes = Number(status.dbSizeInUse);
      const worth = dbBytes - inUseBytes >= FREE_BYTES_MIN && inUseBytes < dbBytes / 2;
      if (worth) {
        log.info(`etcd member ${endpoint}: ${dbBytes} bytes, ${inUseBytes} in use: defragmenting`);
        await client.maintenance.defragment();
      }
      report.push({ endpoint, dbBytes, inUseBytes, defragmented: worth });
    } catch (err) {
      log.warn(`etcd member ${endpoint}: ${(err as Error).message}`);
    } finally {
      client.close();
    }
  }
  return report;
}

/** Looks at the members every DEFRAG_CHECK_MS until stopped. */
export function startDefragmenter(target: EtcdTarget): () => void {
  let running = false;
  const timer = setInterval(() => {
    if (running) return;
    running = true;
    void defragmentIfWorth(target).finally(() => (running = false));
  }, DEFRAG_CHECK_MS);
  timer.unref();
  return () => clearInterval(timer);
}
