// An agent of another node: object reads and writes on its data channel,
// everything else over gRPC.
import { check } from '../common/errno.js';
import { AGENT_DEADLINE_MS } from '../common/limits.js';
import { RpcClient } from '../rpc/client.js';
import type { AgentMethods, ObjectKey } from '../rpc/messages.js';
import { DataClient } from './dataClient.js';
import type { Agent, SpaceStat } from './objectStore.js';

export class RemoteAgent implements Agent {
  readonly rpc: RpcClient<AgentMethods>;
  private readonly data: DataClient | null;

  /** dataAddress: the agent's data channel; without one, data goes over gRPC too. */
  constructor(readonly address: string, readonly dataAddress: string, fsid: string) {
    this.rpc = new RpcClient<AgentMethods>(address, 'Agent', fsid, AGENT_DEADLINE_MS);
    this.data = dataAddress ? new DataClient(dataAddress, fsid) : null;
  }

  async write(key: ObjectKey, offset: number, data: Uint8Array): Promise<void> {
    if (this.data) return this.data.write(key, offset, data);
    check((await this.rpc.call('Write', { key, offset, data })).errno);
  }

  async read(key: ObjectKey, offset: number, length: number, into?: Buffer): Promise<Buffer> {
    if (this.data) return this.data.read(key, offset, length, into);
    const reply = await this.rpc.call('Read', { key, offset, length });
    check(reply.errno);
    const data = reply.data ?? Buffer.alloc(0);
    if (!into) return data;
    data.copy(into);
    return into.subarray(0, data.length);
  }

  async truncate(key: ObjectKey, length: number): Promise<void> {
    check((await this.rpc.call('Truncate', { key, length })).errno);
  }

  async sync(keys: ObjectKey[]): Promise<void> {
    check((await this.rpc.call('Sync', { keys })).errno);
  }

  async remove(keys: ObjectKey[]): Promise<void> {
    check((await this.rpc.call('Remove', { keys })).errno);
  }

  async space(deadlineMs: number): Promise<SpaceStat> {
    const reply = await this.rpc.call('Stat', {}, deadlineMs);
    return { capacityBytes: reply.capacityBytes, freeBytes: reply.freeBytes, usedBytes: reply.usedBytes };
  }

  close(): void {
    this.rpc.close();
    this.data?.close();
  }
}
