// Leadership of the metadata service when the metadata is in etcd: every node
// campaigns; the one holding the leader key (bound to its etcd lease) serves,
// the others stand by and follow it. The key's create revision is the
// leadership's epoch: the service's commits are conditional on it (see
// ../kv/etcd.ts, fenceOn), so a leader that lost its lease (killed, stopped,
// cut off) can never commit again, even before it notices.
//
// Bounds: a dead leader's lease ends LEASE_TTL_S after its last keepalive;
// candidates try every CAMPAIGN_RETRY_MS; the new leader then opens the
// service (reads the globals from etcd). Failover target: 10 s (docs/metadata.md).
import { EventEmitter } from 'node:events';
import type { Etcd3, Lease } from 'etcd3';
import { log } from '../../common/log.js';

/** Life of a leader's lease without keepalives. */
export const LEASE_TTL_S = 3;
/** How often a standby tries to take the key once free. */
export const CAMPAIGN_RETRY_MS = 500;
/** How long metadata calls wait for a new leader (the documented failover bound). */
export const FAILOVER_BOUND_MS = 10_000;
/** A node other than the first leader named at mkfs (ROOT_NODEID) waits this long
 *  before its first campaign: at start, the root leads. */
export const NON_ROOT_FIRST_CAMPAIGN_DELAY_MS = 3000;

/** What the leader key holds: who leads and where it serves. */
export interface LeaderRecord {
  nodeId: number;
  /** gRPC (Meta service, Register) and session addresses. */
  address: string;
  sessionAddress: string;
  /** The leadership's epoch: the key's create revision (set by readers). */
  epoch?: string;
}

export const leaderKey = (fsid: string): Buffer => Buffer.from(`kdfs/${fsid}!leader`);

/** The current leader, or null. */
export async function readLeader(client: Etcd3, fsid: string): Promise<LeaderRecord | null> {
  const reply = await client.kv.range({ key: leaderKey(fsid) });
  const kv = reply.kvs[0];
  if (!kv) return null;
  try {
    return { ...(JSON.parse(kv.value.toString()) as LeaderRecord), epoch: kv.create_revision };
  } catch {
    return null;
  }
}

/** A node's campaign: emits 'elected' (epoch) when it takes the key, 'deposed'
 *  when its lease is lost, then campaigns again until stopped. */
export class Campaign extends EventEmitter {
  private lease: Lease | null = null;
  private stopped = false;
  private timer: NodeJS.Timeout | null = null;
  epoch: string | null = null;

  constructor(private readonly client: Etcd3, private readonly fsid: string, private readonly record: LeaderRecord, firstDelayMs: number) {
    super();
    this.schedule(firstDelayMs);
  }

  get leading(): boolean {
    return this.epoch !== null;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => void this.attempt(), delayMs);
  }

  private async attempt(): Promise<void> {
    if (this.stopped) return;
    try {
      this.lease ??= this.newLease();
      const leaseId = await this.lease.grant();
      const key = leaderKey(this.fsid);
      const reply = await this.client.kv.txn({
        compare: [{ key, target: 'Create', result: 'Equal', create_revision: 0 }],
        success: [{ request_put: { key, value: Buffer.from(JSON.stringify(this.record)), lease: leaseId } }],
        failure: [],
      });
      if (this.stopped) return;
      if (reply.succeeded) {
        this.epoch = reply.header.revision;
        log.warn(`metadata leadership taken by node ${this.record.nodeId} (epoch ${this.epoch})`);
        this.emit('elected', this.epoch);
        return;
      }
    } catch (err) {
      log.debug(`campaign: ${(err as Error).message}`);
    }
    this.schedule(CAMPAIGN_RETRY_MS);
  }

  private newLease(): Lease {
    const lease = this.client.lease(LEASE_TTL_S, { autoKeepAlive: true });
    lease.on('lost', (err) => {
      if (this.lease !== lease) return;
      this.lease = null;
      lease.release();
      if (this.epoch !== null) {
        log.warn(`metadata leadership of node ${this.record.nodeId} lost (epoch ${this.epoch}): ${err.message}`);
        this.epoch = null;
        this.emit('deposed');
      }
      this.schedule(CAMPAIGN_RETRY_MS);
    });
    return lease;
  }

  /** The leadership is gone (a commit was refused by the fence): deposed now,
   *  without waiting for the lease's keepalive to say so. */
  abandon(): void {
    if (this.epoch === null) return;
    log.warn(`metadata leadership of node ${this.record.nodeId} lost (epoch ${this.epoch}): a commit was fenced off`);
    const lease = this.lease;
    this.lease = null;
    this.epoch = null;
    if (lease) void lease.revoke().catch(() => lease.release());
    this.emit('deposed');
    this.schedule(CAMPAIGN_RETRY_MS);
  }

  /** Gives the leadership up and campaigns again later (this node could not serve). */
  async resign(): Promise<void> {
    const lease = this.lease;
    this.lease = null;
    this.epoch = null;
    if (lease) await lease.revoke().catch(() => lease.release());
    this.schedule(NON_ROOT_FIRST_CAMPAIGN_DELAY_MS);
  }

  /** Gives the leadership up (a clean stop): the others need not wait for the lease to end. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.epoch = null;
    if (this.timer) clearTimeout(this.timer);
    const lease = this.lease;
    this.lease = null;
    if (lease) await lease.revoke().catch(() => lease.release());
  }
}
