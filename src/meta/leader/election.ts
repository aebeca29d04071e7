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

/** The leadership ends this long before its lease does as this process counts
 *  it: its clock may run slower than etcd's, and a request already read is
 *  still answered. */
const LEASE_MARGIN_MS = 500;
/** A node's campaign: emits 'elected' (epoch) when it takes the key, 'deposed'
 *  when its leadership ends, then campaigns again until stopped.
 *
 *  A leader counts its lease's end itself, from when it sent the keepalives
 *  etcd answered: etcd expires the lease from when it received them, later.
 *  Past that end it serves nothing (leads() is false) until a keepalive is
 *  answered again: so a leader cut off from etcd (or stopped) is silent before
 *  any other node can be elected, even when the etcd client has not said the
 *  lease is lost (it says so only 2 TTLs later). It is only suspended, not
 *  deposed: etcd may have kept the lease (a new etcd Raft leader extends every
 *  lease), and then it goes on as leader without a failover. */
export class Campaign extends EventEmitter {
  private lease: Lease | null = null;
  private stopped = false;
  private timer: NodeJS.Timeout | null = null;
  /** When the lease ends at the earliest, and when the oldest keepalive not yet answered went. */
  private leaseEndMs = 0;
  private unansweredSinceMs: number | null = null;
  /** Past its own count of the lease (said once in the log). */
  private suspended = false;
  epoch: string | null = null;

  constructor(private readonly client: Etcd3, private readonly fsid: string, private readonly record: LeaderRecord, firstDelayMs: number) {
    super();
    this.schedule(firstDelayMs);
  }

  /** Whether this node leads, with that epoch (any, if absent). */
  leads(epoch?: string): boolean {
    if (this.epoch === null || (epoch !== undefined && epoch !== this.epoch)) return false;
    const inTime = Date.now() < this.leaseEndMs - LEASE_MARGIN_MS;
    if (inTime === this.suspended) {
      this.suspended = !inTime;
      if (this.suspended) log.warn(`metadata leadership of node ${this.record.nodeId} suspended: etcd has not answered its keepalives in time`);
      else log.info(`metadata leadership of node ${this.record.nodeId} resumed: etcd kept its lease (epoch ${this.epoch})`);
    }
    return inTime;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.attempt(), delayMs);
  }

  private async attempt(): Promise<void> {
    if (this.stopped) return;
    try {
      const key = leaderKey(this.fsid);
      // while another leads, a read says so: a campaign's transaction is a write
      // (a Raft round and an fsync on every member), twice a second per standby
      if ((await this.client.kv.range({ key, count_only: true })).count !== '0') {
        this.schedule(CAMPAIGN_RETRY_MS);
        return;
      }
      if (this.stopped) return;
      this.lease ??= this.newLease();
      const leaseId = await this.lease.grant();
      const reply = await this.client.kv.txn({
        compare: [{ key, target: 'Create', result: 'Equal', create_revision: 0 }],
        success: [{ request_put: { key, value: Buffer.from(JSON.stringify(this.record)), lease: leaseId } }],
        failure: [],
      });
      if (this.stopped) return;
      if (reply.succeeded) {
        this.epoch = reply.header.revision;
        this.suspended = false;
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
    this.leaseEndMs = Date.now() + LEASE_TTL_S * 1000;
    this.unansweredSinceMs = null;
    const lease = this.client.lease(LEASE_TTL_S, { autoKeepAlive: true });
    lease.on('keepaliveFired', () => {
      if (this.lease === lease) this.unansweredSinceMs ??= Date.now();
    });
    lease.on('keepaliveSucceeded', () => {
      if (this.lease !== lease || this.unansweredSinceMs === null) return;
      this.leaseEndMs = Math.max(this.leaseEndMs, this.unansweredSinceMs + LEASE_TTL_S * 1000);
      this.unansweredSinceMs = null;
    });
    lease.on('lost', (err) => {
      if (this.lease === lease) this.leave(err.message, CAMPAIGN_RETRY_MS, false);
    });
    return lease;
  }

  /** Ends this node's lease and leadership (why: said, and 'deposed' emitted, if
   *  it led), and campaigns again after nextCampaignMs. revoke: tell etcd, so
   *  that the others need not wait for the lease to end. */
  private leave(why: string | null, nextCampaignMs: number, revoke: boolean): Promise<void> {
    const lease = this.lease;
    const led = this.epoch !== null;
    if (led && why) log.warn(`metadata leadership of node ${this.record.nodeId} lost (epoch ${this.epoch}): ${why}`);
    this.lease = null;
    this.epoch = null;
    const ended = lease && revoke ? lease.revoke().catch(() => lease.release()) : Promise.resolve(lease?.release());
    if (led && why) this.emit('deposed');
    this.schedule(nextCampaignMs);
    return ended;
  }

  /** The leadership is gone (a commit was refused by the fence): deposed now,
   *  without waiting for the lease's keepalive to say so. */
  abandon(): void {
    if (this.epoch !== null) void this.leave('a commit was fenced off', CAMPAIGN_RETRY_MS, true);
  }

  /** Gives the leadership up and campaigns again later (this node could not serve). */
  async resign(): Promise<void> {
    await this.leave(null, NON_ROOT_FIRST_CAMPAIGN_DELAY_MS, true);
  }

  /** Gives the leadership up (a clean stop): the others need not wait for the lease to end. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.leave(null, 0, true);
  }
}
