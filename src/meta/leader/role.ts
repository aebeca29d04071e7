// A node's part in the metadata service when the metadata is in etcd: it
// campaigns, and while it leads, it runs the service on the etcd engine,
// fenced by its leadership's epoch; deposed, it closes the service (its
// sessions are closed by the node) and campaigns again.
import type { Etcd3 } from 'etcd3';
import { log } from '../../common/log.js';
import type { ObjectStore } from '../../agent/objectStore.js';
import { MetaService, type ReplicationOptions } from '../service.js';
import { openEtcdEngine } from '../kv/target.js';
import type { EtcdTarget } from '../kv/etcd.js';
import { startDefragmenter } from '../kv/maintenance.js';
import { Campaign, NON_ROOT_FIRST_CAMPAIGN_DELAY_MS, leaderKey, type LeaderRecord } from './election.js';

export interface LeaderHost {
  nodeId: number;
  fsid: string;
  objects: ObjectStore;
  replication?: ReplicationOptions;
  /** The service is up on this node: the node plugs it in (session address, revocations, modules). */
  leading(meta: MetaService): void;
  /** It is no longer: the node drops the sessions it served. */
  deposed(): void;
}

export class LeaderRole {
  private serving: MetaService | null = null;
  private readonly campaign: Campaign;
  private stopDefragmenter: (() => void) | null = null;
  /** Leadership changes are handled one at a time, in order. */
  private changing: Promise<void> = Promise.resolve();

  constructor(private readonly target: EtcdTarget, client: Etcd3, private readonly host: LeaderHost, record: LeaderRecord, firstLeader: boolean) {
    this.campaign = new Campaign(client, host.fsid, record, firstLeader ? 0 : NON_ROOT_FIRST_CAMPAIGN_DELAY_MS);
    this.campaign.on('elected', (epoch: string) => this.serialize(() => this.lead(epoch)));
    this.campaign.on('deposed', () => this.serialize(() => this.stepDown()));
  }

  /** The service, while this node leads (null from the moment its lease may have ended). */
  get meta(): MetaService | null {
    return this.serving && this.campaign.leads() ? this.serving : null;
  }

  get epoch(): string | null {
    return this.campaign.epoch;
  }

  private serialize(change: () => Promise<void>): void {
    this.changing = this.changing.then(change).catch((err) => log.error(`metadata leadership: ${(err as Error).message}`));
  }

  private async lead(epoch: string): Promise<void> {
    const engine = openEtcdEngine(this.target, this.host.fsid);
    engine.fenceOn(leaderKey(this.host.fsid), epoch);
    engine.onFenced = () => this.campaign.abandon();
    let meta: MetaService;
    try {
      meta = await MetaService.open(engine, {
        nodeId: this.host.nodeId, objects: this.host.objects, leaderEpoch: Number(epoch), leading: () => this.campaign.leads(epoch),
      }, this.host.replication);
    } catch (err) {
      log.error(`node ${this.host.nodeId} could not open the metadata service: ${(err as Error).message}; leadership given up`);
      await engine.close();
      await this.campaign.resign();
      return;
    }
    if (!this.campaign.leads(epoch)) {
      // deposed while opening
      await meta.close().catch(() => {});
      return;
    }
    this.serving = meta;
    this.stopDefragmenter = startDefragmenter(this.target);
    this.host.leading(meta);
  }

  private async stepDown(): Promise<void> {
    const meta = this.serving;
    if (!meta) return;
    this.serving = null;
    this.stopDefragmenter?.();
    this.stopDefragmenter = null;
    this.host.deposed();
    await meta.close().catch((err) => log.warn(`closing the deposed metadata service: ${(err as Error).message}`));
  }

  async stop(): Promise<void> {
    // what the service has taken is written first; then the lease is revoked,
    // not left to expire: a clean stop hands over at once
    this.serialize(() => this.stepDown());
    await this.changing;
    await this.campaign.stop();
  }
}
