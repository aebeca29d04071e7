// An agent of another node: object reads and writes on its data channel,
// everything else over gRPC.
import { check } from '../common/errno.js';
import { AGENT_DEADLINE_MS, CONNECT_TIMEOUT_MS, PEER_BOUND_MS } from '../common/limits.js';
import { RpcClient } from '../rpc/client.js';
import type { AgentMethods, ObjectKey } from '../rpc/messages.js';
import { DataClient } from './dataClient.js';
import type { Agent, ObjectSums, SpaceStat } from './objectStore.js';

/** While a call over gRPC waits, the agent is pinged this often. */
const PING_WHILE_WAITING_MS = 1000;

export class RemoteAgent implements Agent {
  readonly rpc: RpcClient<AgentMethods>;
  private data: DataClient | null;
  /** Set by the metadata service with etcd: its removals, truncations and writes carry it (see ObjectsRequest). */
  leaderEpoch = 0;

  /** dataAddress: the agent's data channel; without one, data goes over gRPC too.
   *  onUnreachable: the agent cannot be reached, and may have moved (see moveTo).
   *  nodeId: the node meant, which its data channel checks (0: whichever answers). */
  constructor(address: string, dataAddress: string, private readonly fsid: string, private readonly onUnreachable?: () => Promise<void>, private readonly nodeId = 0) {
    // calls over gRPC are quick ones, but for those watched (see watched)
    this.rpc = new RpcClient<AgentMethods>(address, 'Agent', fsid, PEER_BOUND_MS, onUnreachable, nodeId);
    this.data = dataAddress ? new DataClient(dataAddress, fsid, onUnreachable, nodeId) : null;
  }

  get address(): string {
    return this.rpc.peer;
  }

  /** False while its data channel holds it for failed (see DataClient). */
  get answering(): boolean {
    return this.data?.answering ?? true;
  }

  get dataAddress(): string {
    return this.data?.peer ?? '';
  }

  /** The node restarted at other addresses: requests waiting for the old ones go to the new. */
  moveTo(address: string, dataAddress: string): void {
    this.rpc.moveTo(address);
    if (!dataAddress) return;
    if (this.data) this.data.moveTo(dataAddress);
    else this.data = new DataClient(dataAddress, this.fsid, this.onUnreachable, this.nodeId);
  }

  /** The node started again at the same addresses (a new incarnation registered). */
  restarted(): void {
    this.rpc.reconnect();
    this.data?.restarted();
  }

  /** wantAllocated: resolves with the bytes of disk the object takes (null
   *  over gRPC, which does not tell). */
  async write(key: ObjectKey, offset: number, data: Uint8Array, wantAllocated = false): Promise<number | null> {
    if (this.data) return this.data.write(key, offset, data, this.leaderEpoch, wantAllocated);
    check((await this.rpc.call('Write', { key, offset, data, leaderEpoch: this.leaderEpoch })).errno);
    return null;
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

  async allocated(key: ObjectKey): Promise<number> {
    if (this.data) return this.data.allocated(key);
    return 0; // an agent without a data channel cannot tell
  }

  async sums(key: ObjectKey, first: number, count: number): Promise<ObjectSums> {
    const reply = await this.watched((signal) => this.rpc.call('Sums', { key, first, count }, AGENT_DEADLINE_MS, { signal }));
    check(reply.errno);
    return { length: reply.length, sums: Buffer.from(reply.sums ?? []) };
  }

  async truncate(key: ObjectKey, length: number): Promise<void> {
    check((await this.watched((signal) => this.rpc.call('Truncate', { key, length, leaderEpoch: this.leaderEpoch }, AGENT_DEADLINE_MS, { signal }))).errno);
  }

  async fallocate(key: ObjectKey, mode: number, offset: number, length: number, extend = false): Promise<void> {
    check((await this.watched((signal) => this.rpc.call('Fallocate', { key, mode, offset, length, extend }, AGENT_DEADLINE_MS, { signal }))).errno);
  }

  async sync(keys: ObjectKey[]): Promise<void> {
    check((await this.watched((signal) => this.rpc.call('Sync', { keys }, AGENT_DEADLINE_MS, { signal }))).errno);
  }

  async remove(keys: ObjectKey[]): Promise<void> {
    check((await this.watched((signal) => this.rpc.call('Remove', { keys, leaderEpoch: this.leaderEpoch }, AGENT_DEADLINE_MS, { signal }))).errno);
  }

  async fence(keys: ObjectKey[]): Promise<void> {
    check((await this.watched((signal) => this.rpc.call('Fence', { keys, leaderEpoch: this.leaderEpoch }, AGENT_DEADLINE_MS, { signal }))).errno);
  }

  /** A call over gRPC may take long on a busy disk (a sync, a truncation, many
   *  removals): it is waited for as long as the agent answers pings on its data
   *  channel, and fails with EIO when the agent stops answering them. A call
   *  given up is cancelled, not left to gRPC's retries: its caller took it as
   *  failed (a copy marked stale, then repaired), and a truncation delivered
   *  later, when the node is back, would cut the repaired copy. */
  private async watched<T>(start: (signal: AbortSignal) => Promise<T>): Promise<T> {
    const data = this.data;
    const boundMs = Date.now() + PEER_BOUND_MS;
    // An agent held for failed is asked first, before the call goes: no call
    // waits again on a node known down, and none reaches it once given up.
    if (data && !data.answering) await data.ping(boundMs);
    const givenUp = new AbortController();
    const call = start(givenUp.signal);
    if (!data) return call;
    let done = false;
    const pause = () => new Promise((resolve) => setTimeout(resolve, PING_WHILE_WAITING_MS));
    // A quick call (most) costs no ping: the first goes once it has waited a
    // while, and gives up reaching the agent within the call's bound (or one
    // connection attempt, if this process was kept from running past it).
    const alive = (async () => {
      for (let first = true; ; first = false) {
        await pause();
        if (done) return;
        await data.ping(first ? Math.max(boundMs, Date.now() + CONNECT_TIMEOUT_MS) : undefined);
      }
    })();
    try {
      return await Promise.race([call, alive.then(() => call)]);
    } finally {
      done = true;
      givenUp.abort();
      // whichever lost the race may still fail: nobody waits for it
      alive.catch(() => {});
      call.catch(() => {});
    }
  }

  async space(deadlineMs: number): Promise<SpaceStat> {
    const reply = await this.rpc.call('Stat', {}, deadlineMs);
    return { capacityBytes: reply.capacityBytes, freeBytes: reply.freeBytes, usedBytes: reply.usedBytes, checksumErrors: reply.checksumErrors ?? 0 };
  }

  close(): void {
    this.rpc.close();
    this.data?.close();
  }
}
