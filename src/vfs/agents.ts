// The agents a client reads and writes stripe objects at: its own node's store
// directly, the others over gRPC at the addresses the metadata service knows.
import { E, FsError } from '../common/errno.js';
import { RemoteAgent } from '../agent/remote.js';
import type { ObjectIo, ObjectStore } from '../agent/objectStore.js';
import type { MetaClient } from '../meta/client.js';

export class AgentPool {
  private readonly remote = new Map<number, RemoteAgent>();
  private refreshing: Promise<void> | null = null;

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

  /** Forgets the addresses: a node that moved is found at its new one. */
  async refresh(): Promise<void> {
    this.refreshing ??= (async () => {
      try {
        for (const node of await this.meta.listNodes()) {
          const known = this.remote.get(node.id);
          if (node.id === this.local.nodeId || (known?.address === node.address && known.dataAddress === node.dataAddress)) continue;
          known?.close();
          this.remote.set(node.id, new RemoteAgent(node.address, node.dataAddress, this.fsid));
        }
      } finally {
        this.refreshing = null;
      }
    })();
    return this.refreshing;
  }

  close(): void {
    for (const agent of this.remote.values()) agent.close();
    this.remote.clear();
  }
}
