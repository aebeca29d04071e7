// Following the metadata leader (metadata in etcd): every node and command
// finds the leader in etcd, and nodes are told at once when it changes (an
// etcd watch), so that their calls go to the new leader within the failover
// bound rather than after timeouts.
import type { Etcd3, Watcher } from 'etcd3';
import { log } from '../../common/log.js';
import { leaderKey, readLeader, type LeaderRecord } from './election.js';

/** How often a node without a leader looks again. */
const LOOK_AGAIN_MS = 250;

/** The leader, waiting up to waitMs for one to be elected; null if none. */
export async function findLeader(client: Etcd3, fsid: string, waitMs: number): Promise<LeaderRecord | null> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const leader = await readLeader(client, fsid).catch((err: Error) => {
      log.debug(`reading the metadata leader: ${err.message}`);
      return null;
    });
    if (leader || Date.now() >= deadline) return leader;
    await new Promise((resolve) => setTimeout(resolve, LOOK_AGAIN_MS));
  }
}

/** Calls onChange with each new leader (not with "none": calls wait for the next). */
export class LeaderWatch {
  private watcher: Watcher | null = null;
  private current: string | null = null;

  /** The latest leadership's epoch seen (null: none yet). */
  get epoch(): string | null {
    return this.current;
  }
  private stopped = false;

  constructor(private readonly client: Etcd3, private readonly fsid: string, private readonly onChange: (leader: LeaderRecord) => void) {}

  async start(): Promise<void> {
    const key = leaderKey(this.fsid);
    this.watcher = await this.client.watch().key(key).create();
    this.watcher.on('put', () => void this.refresh());
    this.watcher.on('connected', () => void this.refresh());
    this.watcher.on('error', (err: Error) => log.debug(`watching the metadata leader: ${err.message}`));
    await this.refresh();
  }

  /** Reads the leader again (also after a call found the service gone). */
  async refresh(): Promise<LeaderRecord | null> {
    const leader = await readLeader(this.client, this.fsid).catch(() => null);
    if (this.stopped || !leader) return leader;
    const id = `${leader.epoch}`;
    // an older leadership read late never replaces a newer one
    if (this.current !== null && Number(id) < Number(this.current)) return leader;
    if (id !== this.current) {
      this.current = id;
      this.onChange(leader);
    }
    return leader;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.watcher?.cancel().catch(() => {});
  }
}
