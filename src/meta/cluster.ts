// The members of the file system, as the root node knows them: registration,
// the agents (to probe their space and to remove objects of freed inodes), and
// the removal of those objects.
import { E, FsError } from '../common/errno.js';
import { log } from '../common/log.js';
import { RemoteAgent } from '../agent/remote.js';
import { ReplicaIo } from '../replication/objects.js';
import type { Agent, ObjectStore } from '../agent/objectStore.js';
import { PEER_BOUND_MS } from '../common/limits.js';
import type { AdminState, NodeInfo, NodeRecord, NodeState, RegisterReply, RegisterRequest } from '../rpc/messages.js';
import type { Namespace } from './namespace.js';
import type { MetaStore } from './store.js';

const PROBE_DEADLINE_MS = 1000;
/** How often the nodes' free space is probed for placement. */
const SPACE_PROBE_INTERVAL_MS = 2000;
/** A node with less free space than this takes no new files (it is full, or
 *  nearly: what is left goes to the files already on it). */
export const FULL_BELOW_BYTES = 64 * 1024 * 1024;
/** Free space gained between two probes, at least (and 1% of the disk), that
 *  has repair try again at once what a full node could not take. */
const ROOM_FREED_MIN_BYTES = 1024 * 1024;
/** A node's session silent this long (it pings every second) makes it suspect. */
const SUSPECT_AFTER_MS = 2000;
const PROBE_CACHE_MS = 1000;
const REAP_INTERVAL_MS = 2000;
const REAP_BATCH_INODES = 256;
/** Freed inodes whose objects are being removed at once, at most. */
const REMOVALS_IN_FLIGHT_MAX = 32;

/** The node the metadata service runs on: its id, its own objects, and with
 *  etcd, the epoch of its leadership. */
export interface MetaLocal {
  nodeId: number;
  objects: ObjectStore;
  leaderEpoch?: number;
  /** With etcd: whether the leadership still holds. Its own node's objects are
   *  called in-process, so it checks this itself before removing or truncating. */
  leading?: () => boolean;
}

export class Cluster {
  private readonly agents = new Map<number, RemoteAgent>();
  /** Object data over the copies of each object: for appends, removals and repairs. */
  readonly replicas: ReplicaIo;
  /** Incarnation of each node process registered since this service started. */
  private readonly incarnations = new Map<number, string>();
  private probed: { nodes: NodeInfo[]; atMs: number } | null = null;
  /** Sessions opened or closed so far: a probe that saw one do so is not kept. */
  private sessionChanges = 0;
  /** Counts changes of the members (a join, a move): a probe begun before one
   *  must not be kept, nor answered, as the current list. */
  private membersVersion = 0;
  private reapTimer: NodeJS.Timeout | null = null;
  private reaping = false;
  private spaceTimer: NodeJS.Timeout | null = null;
  /** Files a node that restarted held open before and holds no more (see Namespace.replaceOpens). */
  opensDropped: (inos: number[], nodeId: number) => Promise<void> = async () => {};
  /** A member's directory was replaced (mkfs.kdfs --replace): none of its copies is there any more. */
  replaced: (nodeId: number) => Promise<void> = async () => {};
  /** Members whose copies are being marked lost, for a new directory (see register). */
  private readonly replacing = new Map<number, Promise<void>>();
  /** Nodes found full at the last probe. */
  private full = new Set<number>();
  /** Each node's free bytes at the last probe. */
  private readonly freeBytesSeen = new Map<number, number>();
  /** Counts the probes that found a node with room freed since the one before
   *  (see ROOM_FREED_MIN_BYTES): copies it could not take may fit now. */
  roomFreed = 0;

  constructor(
    private readonly store: MetaStore,
    private readonly namespace: Namespace,
    /** leaderEpoch: the metadata leadership this service runs under (etcd), which agents check. */
    private readonly local: MetaLocal,
    /** How long ago a node's session was last heard from (null: it has none). */
    private readonly silentMs: (nodeId: number) => number | null,
  ) {
    this.replicas = new ReplicaIo({ get: async (nodeId) => this.agent(nodeId) }, local.nodeId);
  }

  get fsid(): string {
    return this.store.fs.fsid;
  }

  nodeIds(): number[] {
    return [...this.store.nodes.keys()];
  }

  /** A node's session opened or closed: its state changed (no probe of before stands). */
  sessionChanged(): void {
    this.probed = null;
    this.sessionChanges++;
  }

  /** The node is taken for gone: if its process registers again, it is taken as a new one. */
  forgetIncarnation(nodeId: number): void {
    this.incarnations.delete(nodeId);
  }

  /** The failure domain of a member ('' : the node alone). */
  domainOf(nodeId: number): string {
    return this.store.nodes.get(nodeId)?.domain ?? '';
  }

  /** Whether the node's session answers now (the root's own node always does). */
  isLive(nodeId: number): boolean {
    if (nodeId === this.local.nodeId) return true;
    const silentMs = this.silentMs(nodeId);
    return silentMs !== null && silentMs < SUSPECT_AFTER_MS;
  }

  /** A member's administrative state (older records, without one, are active). */
  adminOf(nodeId: number): AdminState {
    const node = this.store.nodes.get(nodeId);
    if (!node) return 'removed';
    return node.admin || 'active';
  }

  /** Members that may hold data: every one not removed. */
  dataMemberIds(): number[] {
    return this.nodeIds().filter((id) => this.adminOf(id) !== 'removed');
  }

  /** Sets the administrative state of members (see docs/nodes.md). */
  async setAdmin(ids: number[], admin: AdminState): Promise<void> {
    const sinceSec = Math.floor(Date.now() / 1000);
    await this.store.run((tx) => {
      for (const id of ids) {
        const node = this.store.nodes.get(id);
        if (node && this.adminOf(id) !== admin) tx.putNode({ ...node, admin, adminSinceSec: sinceSec });
      }
    }, true);
    this.probed = null;
    this.membersVersion++;
  }

  /** The members new files may be placed on: admitted (active, or in
   *  maintenance while up), whose session answered within the bound (this
   *  node's own always), and not full. A node joined but not added, draining,
   *  removed, down, stopped, or not mounted since this service started gets no
   *  new data, nor does a full one; with none left, the live ones do, else all
   *  admitted ones, else the root's own node. */
  placeableIds(): number[] {
    const admitted = (id: number) => {
      const admin = this.adminOf(id);
      return admin === 'active' || admin === 'maintenance';
    };
    const all = this.nodeIds().filter(admitted);
    if (all.length === 0) return [this.local.nodeId];
    const live = all.filter((id) => {
      if (id === this.local.nodeId) return true;
      const silentMs = this.silentMs(id);
      return silentMs !== null && silentMs < PEER_BOUND_MS;
    });
    const roomy = live.filter((id) => !this.full.has(id));
    return roomy.length > 0 ? roomy : live.length > 0 ? live : all;
  }

  /** Probes the nodes' free space now and then: a full node gets no new files. */
  startSpaceProbes(): void {
    this.spaceTimer = setInterval(() => {
      this.nodes().then((nodes) => {
        this.full = new Set(nodes.filter((n) => n.up && n.freeBytes < FULL_BELOW_BYTES).map((n) => n.id));
        let freed = false;
        for (const node of nodes.filter((n) => n.up)) {
          const before = this.freeBytesSeen.get(node.id);
          if (before !== undefined && node.freeBytes - before >= Math.max(ROOM_FREED_MIN_BYTES, node.capacityBytes / 100)) freed = true;
          this.freeBytesSeen.set(node.id, node.freeBytes);
        }
        if (freed) this.roomFreed++;
      }, (err) => log.debug(`probing the nodes' space: ${(err as Error).message}`));
    }, SPACE_PROBE_INTERVAL_MS);
    this.spaceTimer.unref();
  }

  async register(request: RegisterRequest): Promise<RegisterReply> {
    const refuse = (message: string): RegisterReply => ({ errno: E.EINVAL, message, fsid: '' });
    if (!Number.isInteger(request.nodeId) || request.nodeId < 0) return refuse('bad node id');
    if (!request.nodeUuid) return refuse('the node has no identity (format it with mkfs.kdfs)');
    if (request.fsid && request.fsid !== this.fsid) {
      return refuse(`the directory belongs to another kDFS file system (${request.fsid}), not to ${this.fsid}`);
    }
    const known = this.store.nodes.get(request.nodeId);
    const replacing = known !== undefined && known.uuid !== request.nodeUuid;
    if (replacing && !request.replace) {
      return refuse(`node id ${request.nodeId} is already a member, with another directory (format a new directory for it with mkfs.kdfs --replace)`);
    }
    if (replacing && this.isLive(request.nodeId) && this.incarnations.has(request.nodeId)) {
      return refuse(`node ${request.nodeId} is running with its own directory: stop it before replacing its directory`);
    }
    if (replacing) {
      // Its copies are gone with its old directory: every one is marked lost
      // before the new directory is taken in (its reads would be holes). If
      // this call times out, the node's next registration waits for the same work.
      let marking = this.replacing.get(request.nodeId);
      if (!marking) {
        marking = this.replaced(request.nodeId).finally(() => this.replacing.delete(request.nodeId));
        this.replacing.set(request.nodeId, marking);
      }
      await marking;
      this.incarnations.delete(request.nodeId);
    }
    const domain = request.domain ?? '';
    if (!known || replacing || known.address !== request.address || known.dataAddress !== request.dataAddress || (known.domain ?? '') !== domain) {
      const nowSec = Math.floor(Date.now() / 1000);
      // a new node gets no data until an administrator adds it (kdfs node add); the root's own node is in from the start
      const admin: AdminState = known ? this.adminOf(request.nodeId) : request.nodeId === this.local.nodeId ? 'active' : 'joined';
      const record: NodeRecord = {
        id: request.nodeId, uuid: request.nodeUuid, address: request.address, dataAddress: request.dataAddress,
        joinedSec: known?.joinedSec ?? nowSec, domain, admin, adminSinceSec: known?.adminSinceSec || nowSec,
      };
      await this.store.run((tx) => tx.putNode(record), true);
      this.probed = null;
      this.membersVersion++;
      log.info(`node ${request.nodeId} ${replacing ? 'was replaced by a new directory at' : known ? 'moved to' : 'joined at'} ${request.address}`);
    }
    if (replacing) {
      // its copies are gone with its old directory: rebuilt onto the new one
      this.incarnations.delete(request.nodeId);
      await this.replaced(request.nodeId);
    }
    if (this.incarnations.get(request.nodeId) !== request.incarnation) {
      this.incarnations.set(request.nodeId, request.incarnation);
      // started again (at the same addresses, or its record changed above):
      // what its agent failed to answer before, probes included, is past
      this.probed = null;
      this.agents.get(request.nodeId)?.restarted();
      const dropped = await this.namespace.replaceOpens(request.nodeId, request.openInos);
      if (dropped.length > 0) await this.opensDropped(dropped, request.nodeId);
      // every member has told what it holds open: no need to wait for the grace period
      if ([...this.store.nodes.keys()].every((id) => this.incarnations.has(id))) await this.namespace.opensAnnounced();
    }
    return { errno: 0, message: '', fsid: this.fsid };
  }

  /** The members with their state and space; probes are cached for a second. */
  async nodes(): Promise<NodeInfo[]> {
    if (this.probed && Date.now() - this.probed.atMs < PROBE_CACHE_MS) return this.probed.nodes;
    const version = this.membersVersion;
    const sessions = this.sessionChanges;
    const nodes = await Promise.all([...this.store.nodes.values()].sort((a, b) => a.id - b.id).map(async (node) => {
      const admin = this.adminOf(node.id);
      const known = { id: node.id, address: node.address, dataAddress: node.dataAddress, domain: node.domain ?? '', admin };
      // the session as it is once the probe is over (it may open meanwhile)
      const silentMs = () => (node.id === this.local.nodeId ? 0 : this.silentMs(node.id));
      try {
        const space = await this.agent(node.id).space(PROBE_DEADLINE_MS);
        return { ...known, up: true, state: nodeState(silentMs(), true), ...space, weight: weightOf(admin, space.capacityBytes) };
      } catch {
        return { ...known, up: false, state: nodeState(silentMs(), false), capacityBytes: 0, usedBytes: 0, freeBytes: 0, weight: 0 };
      }
    }));
    // a node joined while its peers were probed: the list lacks it (a node would
    // refuse to write to it: "not a member"); probe again
    if (version !== this.membersVersion) return this.nodes();
    // a session opened or closed meanwhile: the states are not kept
    if (sessions === this.sessionChanges) this.probed = { nodes, atMs: Date.now() };
    return nodes;
  }

  agent(nodeId: number): Agent {
    if (nodeId === this.local.nodeId) return this.localAgent;
    const node = this.store.nodes.get(nodeId);
    if (!node) throw new FsError(E.EIO, `node ${nodeId} is not a member`);
    let agent = this.agents.get(nodeId);
    if (!agent) {
      agent = new RemoteAgent(node.address, node.dataAddress, this.fsid, undefined, node.id);
      agent.leaderEpoch = this.local.leaderEpoch ?? 0;
      this.agents.set(nodeId, agent);
    }
    else agent.moveTo(node.address, node.dataAddress); // restarted elsewhere: requests waiting go there
    return agent;
  }

  /** This node's objects; with etcd, removals, truncations and writes refused (ESTALE)
   *  once the leadership is lost, as other agents refuse them (see ObjectsRequest). */
  private localAgentMade: Agent | null = null;

  private get localAgent(): Agent {
    this.localAgentMade ??= this.fencedLocalAgent();
    return this.localAgentMade;
  }

  private fencedLocalAgent(): Agent {
    const { objects, leading } = this.local;
    if (!leading) return objects;
    const fenced = () => {
      if (!leading()) throw new FsError(E.ESTALE, 'this metadata service no longer leads');
    };
    return new Proxy(objects, {
      get(target, name) {
        if (name === 'remove' || name === 'truncate' || name === 'write') {
          return async (...args: unknown[]) => {
            fenced();
            return (target[name] as (...a: unknown[]) => Promise<void>).apply(target, args);
          };
        }
        const value = target[name as keyof ObjectStore];
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
  }

  startReaper(): void {
    this.reapTimer = setInterval(() => void this.reap(), REAP_INTERVAL_MS);
    this.reapTimer.unref();
  }

  /** Removes the stripe objects of freed inodes; what fails is tried again
   *  at the next round. Batches follow each other at once, each from where the
   *  last ended (those that fail, a node down, hold up no others): the space
   *  of an rm -rf of many files comes back within seconds, not at one
   *  transaction per file. */
  async reap(): Promise<void> {
    if (this.reaping) return;
    this.reaping = true;
    try {
      for (let fromIno = 0; ;) {
        const batch = await this.store.orphans(REAP_BATCH_INODES, fromIno);
        const removed: number[] = [];
        for (let first = 0; first < batch.length; first += REMOVALS_IN_FLIGHT_MAX) {
          await Promise.all(batch.slice(first, first + REMOVALS_IN_FLIGHT_MAX).map(async (inode) => {
            try {
              if (inode.layout) await this.replicas.remove(inode.attr.ino, inode.layout);
              removed.push(inode.attr.ino);
            } catch (err) {
              log.debug(`objects of inode ${inode.attr.ino} stay for now: ${(err as Error).message}`);
            }
          }));
        }
        if (removed.length > 0) await this.store.run((tx) => { for (const ino of removed) tx.deleteOrphan(ino); });
        if (batch.length < REAP_BATCH_INODES) return;
        fromIno = batch.at(-1)!.attr.ino + 1;
      }
    } catch (err) {
      // the store is failing (full disk?): the next round tries again
      log.debug(`removing objects of freed inodes: ${(err as Error).message}`);
    } finally {
      this.reaping = false;
    }
  }

  close(): void {
    if (this.reapTimer) clearInterval(this.reapTimer);
    if (this.spaceTimer) clearInterval(this.spaceTimer);
    for (const agent of this.agents.values()) agent.close();
    this.agents.clear();
  }
}

/** A node's share of the data: its capacity in TiB (as Ceph's CRUSH weights),
 *  for the nodes that take data; 0 for the others. */
export function weightOf(admin: AdminState, capacityBytes: number): number {
  if (admin !== 'active' && admin !== 'maintenance') return 0;
  return Math.round((capacityBytes / 2 ** 40) * 10_000) / 10_000 || 0.0001;
}

/** A node's state from its session's silence (null: no session) and whether its
 *  agent answered a probe. */
export function nodeState(silentMs: number | null, agentAnswered: boolean): NodeState {
  const sessionAnswers = silentMs !== null && silentMs < SUSPECT_AFTER_MS;
  if (sessionAnswers && agentAnswered) return 'up';
  if (agentAnswered || (silentMs !== null && silentMs < PEER_BOUND_MS)) return 'suspect';
  return 'down';
}
