// The Agent gRPC service: serves this node's stripe objects to every client.
import { E, FsError } from '../common/errno.js';
import { FILE_MAX_BYTES, OBJECT_READ_MAX_BYTES, RPC_MESSAGE_MAX_BYTES } from '../common/limits.js';
import type { AgentMethods, Handlers } from '../rpc/messages.js';
import type { ObjectStore } from './objectStore.js';
import { validKey, validOffset } from './validate.js';

const OK = { errno: 0 };

/** A deposed metadata leader may not have noticed yet: its removals,
 *  truncations and writes (epoch: its leadership's) are refused once this node
 *  knows of a later one (known; 0: none, or level). Nodes' own calls carry none. */
export function checkLeaderEpoch(epoch: number | undefined, known: number): void {
  if (epoch && known && Number(epoch) < known) throw new FsError(E.ESTALE, `a call of the metadata leadership of epoch ${epoch}, deposed by ${known}`);
}

/** leaderEpoch(): the metadata leadership's epoch this node knows of (etcd; 0: none, or level). */
export function agentHandlers(store: ObjectStore, nodeId: number, leaderEpoch: () => number = () => 0): Handlers<AgentMethods> {
  const fenced = (epoch: number | undefined) => checkLeaderEpoch(epoch, leaderEpoch());
  return {
    async Write(request) {
      fenced(request.leaderEpoch);
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
      fenced(request.leaderEpoch);
      await store.truncate(validKey(request.key), validOffset(request.length));
      return OK;
    },
    async Sync(request) {
      await store.sync(request.keys.map(validKey));
      return OK;
    },
    async Remove(request) {
      fenced(request.leaderEpoch);
      await store.remove(request.keys.map(validKey));
      return OK;
    },
    async Fence(request) {
      fenced(request.leaderEpoch);
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
