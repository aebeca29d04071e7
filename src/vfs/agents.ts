// The agents a client reads and writes stripe objects at: its own node's store
// directly, the others over the network at the addresses the metadata service
// knows, followed when a node restarts elsewhere.
import { E, FsError } from '../common/errno.js';
import { log } from '../common/log.js';
import { RemoteAgent } from '../agent/remote.js';
import type { ObjectIo, ObjectStore } from '../agent/objectStore.js';
import type { MetaClient } from '../meta/client.js';

/** Least time between two lookups of the nodes' addresses prompted by an unreachable agent. */
const RELOCATE_INTERVAL_MS = 1000;

export class AgentPool {
  private readonly remote = new Map<number, RemoteAgent>();
  private refreshing: Promise<void> | null = null;
  private relocatedAtMs = 0;

  constructor(
    private readonly meta: MetaClient,
    private readonly fsid: string,
    private readonly local: { nodeId: number; objects: ObjectStore },
  ) {}

  /** The agent of a node; learns the addresses of nodes that joined since the last call. */
  async get(nodeId: number): Promise<ObjectIo> {
    if (nodeId === this.local.nodeId) return this.local.objects;
    let agent = this.remote.get(nodeId);
    if (agent) return agent;
    await this.refresh();
    agent = this.remote.get(nodeId);
    if (!agent) throw new FsError(E.EIO, `node ${nodeId} is not a member of the file system`);
    return agent;
  }

  /** Learns the nodes' addresses from the metadata service: a node that joined is
   *  added, one that restarted elsewhere is followed there. */
  async refresh(): Promise<void> {
    this.refreshing ??= (async () => {
      try {
        for (const node of await this.meta.listNodes()) {
          if (node.id === this.local.nodeId) continue;
          const known = this.remote.get(node.id);
          if (known) known.moveTo(node.address, node.dataAddress);
          else this.remote.set(node.id, new RemoteAgent(node.address, node.dataAddress, this.fsid, () => this.relocate(), node.id));
        }
      } finally {
        this.refreshing = null;
      }
    })();
    return this.refreshing;
  }

  /** An agent cannot be reached: it may have restarted at another address.
   *  Resolves once the addresses were looked up (or the lookup under way, if
   *  one was made lately), so that the caller can try the new one. */
  private relocate(): Promise<void> {
    const nowMs = Date.now();
    let lookup = this.refreshing;
    if (nowMs - this.relocatedAtMs >= RELOCATE_INTERVAL_MS) {
      this.relocatedAtMs = nowMs;
      lookup = this.refresh();
    }
    return (lookup ?? Promise.resolve()).catch((err) => log.debug(`looking up the nodes' addresses: ${(err as Error).message}`));
  }

  close(): void {
    for (const agent of this.remote.values()) agent.close();
    this.remote.clear();
  }
}
