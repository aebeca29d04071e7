// kdfs node add | remove | maintenance, as the metadata service applies them:
// every check first, then one change of the nodes' administrative states.
import { E, FsError } from '../common/errno.js';
import { log } from '../common/log.js';
import type { Cluster } from '../meta/cluster.js';
import type { MetaStore } from '../meta/store.js';
import {
  NODE_ADD, NODE_MAINTENANCE_OFF, NODE_MAINTENANCE_ON, NODE_REMOVE, NODE_REMOVE_FORCE, NODE_REVOKE,
  type AdminState, type NodeAdminReply, type NodeAdminRequest,
} from '../rpc/messages.js';
import type { Mover } from './mover.js';

/** Nodes one request may name, at most. */
const IDS_PER_REQUEST_MAX = 4096;

export interface AdminContext {
  cluster: Cluster;
  store: MetaStore;
  mover: Mover;
  /** Recalls every directory's delegation, waiting for the creates made under
   *  them: they place new files on the nodes placeable when they were given. */
  recallDelegations: () => Promise<void>;
  /** Nodes were revoked: their connections go and the data key is replaced. */
  revoked: (ids: number[]) => void;
}

export async function nodeAdmin(request: NodeAdminRequest, on: AdminContext): Promise<NodeAdminReply> {
  const { cluster, store } = on;
  const ids = [...new Set(request.ids ?? [])];
  if (ids.length === 0 || ids.length > IDS_PER_REQUEST_MAX) throw new FsError(E.EINVAL, `give from 1 to ${IDS_PER_REQUEST_MAX} node ids`);
  const unknown = ids.filter((id) => !store.nodes.has(id));
  if (unknown.length > 0) {
    throw new FsError(E.ENOENT, `node${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} never joined: format ${unknown.length > 1 ? 'them' : 'it'} with mkfs.kdfs and mount ${unknown.length > 1 ? 'them' : 'it'} first`);
  }
  const rootId = store.fs.rootNodeId;
  const refuse = (why: string) => {
    throw new FsError(E.EINVAL, why);
  };
  const changes = new Map<number, AdminState>();
  switch (request.op) {
    case NODE_ADD:
      for (const id of ids) {
        const admin = cluster.adminOf(id);
        if (admin === 'removed' && !cluster.isLive(id)) refuse(`node ${id} was removed and is not running: mount it before adding it again`);
        // a node being drained comes back: its drain stops where it was
        if (admin === 'joined' || admin === 'draining' || admin === 'removed') changes.set(id, 'active');
      }
      break;
    case NODE_REMOVE:
    case NODE_REMOVE_FORCE: {
      if (ids.includes(rootId)) refuse(`node ${rootId} is the root node: it holds the metadata and cannot be removed (yet)`);
      const force = request.op === NODE_REMOVE_FORCE;
      if (force) {
        const live = ids.filter((id) => cluster.isLive(id) && cluster.adminOf(id) !== 'removed');
        if (live.length > 0) refuse(`node${live.length > 1 ? 's' : ''} ${live.join(', ')} ${live.length > 1 ? 'are' : 'is'} up: --force is for dead nodes; drain ${live.length > 1 ? 'them' : 'it'} with kdfs node remove`);
      }
      // the nodes left to take the copies: admitted, and up (one in maintenance counts: it comes back)
      const staying = cluster.nodeIds().filter((id) => !ids.includes(id)
        && (cluster.adminOf(id) === 'maintenance' || (cluster.adminOf(id) === 'active' && cluster.isLive(id))));
      const replicas = store.fs.defaultPolicy?.replicas || 1;
      if (staying.length < replicas) {
        refuse(`removing ${ids.length > 1 ? 'these nodes' : `node ${ids[0]}`} would leave ${staying.length} node${staying.length === 1 ? '' : 's'} for ${replicas} copies of each object`);
      }
      for (const id of ids) {
        const admin = cluster.adminOf(id);
        if (admin === 'removed' || (admin === 'draining' && !force)) continue;
        // a node that never took data has nothing to drain
        changes.set(id, force || admin === 'joined' ? 'removed' : 'draining');
      }
      break;
    }
    case NODE_MAINTENANCE_ON:
    case NODE_MAINTENANCE_OFF: {
      const on_ = request.op === NODE_MAINTENANCE_ON;
      for (const id of ids) {
        const admin = cluster.adminOf(id);
        if (on_ && admin === 'active') changes.set(id, 'maintenance');
        else if (!on_ && admin === 'maintenance') changes.set(id, 'active');
        else if (on_ && admin !== 'maintenance') refuse(`node ${id} is ${admin}: only an active node goes into maintenance`);
        else if (!on_ && admin !== 'active') refuse(`node ${id} is ${admin}, not in maintenance`);
      }
      break;
    }
    case NODE_REVOKE:
      if (ids.includes(rootId)) refuse(`node ${rootId} is the root node: it holds the authority and cannot be revoked`);
      // a revoked node is treated as dead from now on: its copies are made again from the others
      for (const id of ids) if (cluster.adminOf(id) !== 'revoked') changes.set(id, 'revoked');
      break;
    default:
      refuse(`unknown operation ${request.op}`);
  }
  const byState = new Map<AdminState, number[]>();
  for (const [id, admin] of changes) byState.set(admin, [...(byState.get(admin) ?? []), id]);
  for (const [admin, changed] of byState) {
    await cluster.setAdmin(changed, admin);
    log.info(`node${changed.length > 1 ? 's' : ''} ${changed.join(', ')}: ${admin}`);
  }
  const revoked = [...changes].filter(([, admin]) => admin === 'revoked').map(([id]) => id);
  if (revoked.length > 0) on.revoked(revoked);
  if (changes.size > 0) {
    await on.recallDelegations();
    on.mover.recalledAtMs = Date.now();
    on.mover.wakeUp();
  }
  return { errno: 0, message: '' };
}
