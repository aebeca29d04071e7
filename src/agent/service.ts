// The Agent gRPC service: serves this node's stripe objects to every client.
import { E, FsError } from '../common/errno.js';
import { FILE_MAX_BYTES, OBJECT_READ_MAX_BYTES, RPC_MESSAGE_MAX_BYTES } from '../common/limits.js';
import type { AgentMethods, Handlers } from '../rpc/messages.js';
import type { ObjectStore } from './objectStore.js';
import { validKey, validOffset } from './validate.js';

const OK = { errno: 0 };

/** The metadata leadership's epoch this node knows of (0: none, or level);
 *  with etcd, a promise until the node has read it (it just started): a call
 *  it cannot judge waits for it, boundedly (the source rejects past its wait). */
export type LeaderEpochOf = () => number | Promise<number>;

/** A deposed metadata leader may not have noticed yet: its removals,
 *  truncations and writes (epoch: its leadership's) are refused once this node
 *  knows of a later one. Nodes' own calls carry none. */
export async function checkLeaderEpoch(epoch: number | undefined, known: LeaderEpochOf): Promise<void> {
  if (!epoch) return;
  const latest = await known();
  if (latest && Number(epoch) < latest) throw new FsError(E.ESTALE, `a call of the metadata leadership of epoch ${epoch}, deposed by ${latest}`);
}

export function agentHandlers(store: ObjectStore, nodeId: number, leaderEpoch: LeaderEpochOf = () => 0): Handlers<AgentMethods> {
  const fenced = (epoch: number | undefined) => checkLeaderEpoch(epoch, leaderEpoch);
  return {
    async Write(request) {
      await fenced(request.leaderEpoch);
      const data = request.data ?? Buffer.alloc(0);
      if (data.length > RPC_MESSAGE_MAX_BYTES) throw new FsError(E.EINVAL);
      const offset = validOffset(request.offset);
      if (offset + data.length > FILE_MAX_BYTES) throw new FsError(E.EFBIG);
      await store.write(validKey(request.key), offset, data);
      return OK;
    },
    async Read(request) {
      if (request.length > OBJECT_READ_MAX_BYTES) throw new FsError(E.EINVAL);
      const data = await store.read(validKey(request.key), validOffset(request.offset), request.length);
      return { errno: 0, data };
    },
    async Truncate(request) {
      await fenced(request.leaderEpoch);
      await store.truncate(validKey(request.key), validOffset(request.length));
      return OK;
    },
    async Fallocate(request) {
      const offset = validOffset(request.offset);
      const length = validOffset(request.length);
      if (length === 0 || offset + length > FILE_MAX_BYTES) throw new FsError(E.EINVAL);
      await store.fallocate(validKey(request.key), request.mode, offset, length, request.extend === true);
      return OK;
    },
    async Sync(request) {
      await store.sync(request.keys.map(validKey));
      return OK;
    },
    async Remove(request) {
      await fenced(request.leaderEpoch);
      await store.remove(request.keys.map(validKey));
      return OK;
    },
    async Fence(request) {
      await fenced(request.leaderEpoch);
      await store.fence(request.keys.map(validKey));
      return OK;
    },
    async Stat() {
      const space = await store.space();
      return { nodeId, capacityBytes: space.capacityBytes, freeBytes: space.freeBytes, usedBytes: space.usedBytes, checksumErrors: store.checksumErrors };
    },
    async Sums(request) {
      const { length, sums } = await store.sums(validKey(request.key), request.first, request.count);
      return { errno: 0, length, sums };
    },
  };
}
