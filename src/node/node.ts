// One kDFS node process: the storage agent of the node's directory, the metadata
// service when the node is the root, and the FUSE mount of the global namespace.
import type { Etcd3 } from 'etcd3';
import { etcdTargetOf } from '../meta/kv/target.js';
import { connectEtcd, type EtcdTarget } from '../meta/kv/etcd.js';
import { LeaderRole } from '../meta/leader/role.js';
import { FAILOVER_BOUND_MS } from '../meta/leader/election.js';
import { LeaderWatch, findLeader } from '../meta/leader/follow.js';
import { NotLeader } from '../rpc/server.js';
import { serviceDefinition } from '../rpc/proto.js';
import type { Handlers, MetaMethods } from '../rpc/messages.js';
import { randomUUID } from 'node:crypto';
import { statSync } from 'node:fs';
import path from 'node:path';
import { E, FsError } from '../common/errno.js';
import { CONNECT_TIMEOUT_MS, JOIN_TIMEOUT_MS } from '../common/limits.js';
import { log } from '../common/log.js';
import { within } from '../common/within.js';
import { ObjectStore } from '../agent/objectStore.js';
import { writeMembers } from './members.js';
import { DataServer } from '../agent/dataServer.js';
import { agentHandlers } from '../agent/service.js';
import { FuseMount } from '../fuse/adapter.js';
import { nodePaths } from '../format/paths.js';
import { readSuperblock, writeSuperblock } from '../format/superblock.js';
import { MetaClient } from '../meta/client.js';
import { callbackReply } from '../meta/coherence.js';
import { MetaService, type ReplicationOptions } from '../meta/service.js';
import { LocalChannel } from '../rpc/local.js';
import { RpcServer } from '../rpc/server.js';
import { SessionClient } from '../rpc/sessionClient.js';
import { SessionServer, type Caller, type SessionCall } from '../rpc/sessionServer.js';
import { requestKey } from '../meta/records.js';
import { META_DEADLINE_MS } from '../common/limits.js';
import type { Invalidation } from '../rpc/messages.js';
import type { Superblock } from '../rpc/messages.js';
import { AgentPool } from '../vfs/agents.js';
import type { Vfs } from '../vfs/vfs.js';
import { loadCredentials } from '../security/credentials.js';
import { credentialsRefusedBy, useIdentity } from '../security/tls.js';
import { currentDataKey, forgetDataKey, setDataProtection, useDataKeySource } from '../security/dataAuth.js';
import { ControlledVfs } from '../vfs/control.js';
import { NodeScheduler } from '../scheduler/node.js';
import { SchedulerTree } from '../scheduler/tree.js';
import { detach, isStaleKdfsMount, mountAt } from './mounts.js';
import { readRunFile, removeRunFile, runningNode, startTicks, writeRunFile } from './runfile.js';
import { listenAsBefore } from './ports.js';

export interface NodeOptions {
  dir: string;
  mountPoint: string;
  readOnly?: boolean;
  debug?: boolean;
  noDev?: boolean;
  noSuid?: boolean;
  /** Root node: repair's grace period and the background scrub (see ReplicationOptions). */
  replication?: ReplicationOptions;
  /** MAC every frame of this node's data connections (default); off only on trusted networks. */
  dataProtection?: boolean;
}

const HEARTBEAT_MS = 5000;
const JOIN_RETRY_MS = 200;
const JOIN_CALL_DEADLINE_MS = 2000;
const UNMOUNT_WAIT_MS = 3000;

/** The mark of a node's call on its session: applied, it is marked, so that sent
 *  again (to a restarted root, to the next leader) it is not applied twice. */
function callMark(caller: Caller | undefined, call: SessionCall | undefined): { key: Buffer; resent: boolean } | undefined {
  const session = caller as (Caller & { incarnation?: string }) | undefined;
  return call && session?.incarnation ? { key: requestKey(session.nodeId, session.incarnation, call.id), resent: call.resent } : undefined;
}

/** A refusal to start, with the one-line reason for the user. */
export class StartError extends Error {}

export class KdfsNode {
  private heartbeat: NodeJS.Timeout | null = null;
  private stopping: Promise<void> | null = null;
  /** Resolves the wait for the first session (see start). */
  private sessionUp: (() => void) | null = null;
  /** A registration asked because the root's session could not be reached. */
  private relocating: Promise<unknown> | null = null;
  private resolveStopped!: () => void;
  /** Resolves when the node has stopped, whatever stopped it. */
  readonly stopped = new Promise<void>((resolve) => (this.resolveStopped = resolve));
  private server: RpcServer | null = null;
  private dataServer: DataServer | null = null;
  private dataAddress = '';
  private meta: MetaService | null = null;
  private scheduler: NodeScheduler | null = null;
  /** Registration and heartbeats (gRPC); on the root, the service itself. */
  private metaClient: MetaClient | null = null;
  /** Every other metadata call: on a session with the root, or in-process on the root. */
  private sessionClient: SessionClient | null = null;
  private sessionServer: SessionServer | null = null;
  private sessionMeta: MetaClient | null = null;
  /** Metadata in etcd: this node's campaign and service, and where the leader is. */
  private etcdClient: Etcd3 | null = null;
  private leaderRole: LeaderRole | null = null;
  private leaderWatch: LeaderWatch | null = null;
  /** With etcd: resolved once this node knows the metadata leadership's epoch
   *  (its agent cannot tell a deposed leader's calls before; see leaderEpoch). */
  private leadershipKnown!: () => void;
  private readonly leadershipSeen = new Promise<void>((resolve) => (this.leadershipKnown = resolve));
  /** What callbacks do before the mount exists: nothing is cached yet. */
  private invalidate = (items: Invalidation[], taken: () => void): Promise<void> => {
    if (this.vfs) return this.vfs.invalidate(items, taken);
    taken();
    return Promise.resolve();
  };
  private agents: AgentPool | null = null;
  private fuse: FuseMount | null = null;
  private objects: ObjectStore | null = null;
  private vfs: Vfs | null = null;
  private readonly incarnation = randomUUID();
  private address = '';

  private constructor(readonly options: NodeOptions, private sb: Superblock) {}

  static async start(options: NodeOptions): Promise<KdfsNode> {
    const dir = path.resolve(options.dir);
    const mountPoint = path.resolve(options.mountPoint);
    let sb: Superblock;
    try {
      sb = await readSuperblock(dir);
    } catch (err) {
      throw new StartError((err as Error).message);
    }
    checkMountPoint(dir, mountPoint);
    const node = new KdfsNode({ ...options, dir, mountPoint }, sb);
    try {
      await node.startServices();
    } catch (err) {
      await node.stop(`start failed: ${(err as Error).message}`);
      throw err instanceof StartError || err instanceof FsError ? new StartError(err.message) : err;
    }
    return node;
  }

  /** Why a gRPC call is refused: only members (a certificate of the file
   *  system's authority naming a node) call, a node registers as itself only,
   *  and a revoked node not at all. */
  private authorize(method: string, request: unknown, caller: number | null): string | null {
    if (caller === null) return 'the caller\'s certificate names no node';
    if (method === 'Register' && (request as { nodeId?: number }).nodeId !== caller) return `node ${caller} may not register as node ${(request as { nodeId?: number }).nodeId}`;
    if ((this.meta ?? this.leaderRole?.meta)?.isRevoked(caller)) return `node ${caller} is revoked`;
    return null;
  }

  get nodeId(): number {
    return this.sb.nodeId;
  }

  get isRoot(): boolean {
    return this.sb.nodeId === this.sb.rootNodeId;
  }

  private async startServices(): Promise<void> {
    const { dir, mountPoint } = this.options;
    const paths = nodePaths(dir);
    try {
      useIdentity(loadCredentials(dir, this.sb.nodeId, this.sb.fsid));
      setDataProtection(this.options.dataProtection ?? true);
    } catch (err) {
      throw new StartError((err as Error).message);
    }
    const objects = (this.objects = new ObjectStore(paths.objects));
    try {
      statSync(paths.objects);
    } catch {
      throw new StartError(`${dir} has no object directories (run mkfs.kdfs)`);
    }
    void objects.measureInBackground();
    let etcd: EtcdTarget | null = null;
    try {
      if (this.sb.meta) etcd = etcdTargetOf(dir, this.sb.meta);
    } catch (err) {
      throw new StartError((err as Error).message);
    }
    // with etcd, the service runs on whichever node leads (see startLeadership)
    if (this.isRoot && !etcd) {
      this.meta = await MetaService.open(paths.meta, { nodeId: this.nodeId, objects }, this.options.replication);
      if (this.meta.fsid !== this.sb.fsid) throw new StartError(`${dir}: the root meta-file belongs to another file system`);
      // the disk of the metadata is the objects': what the store gave back is for removals
      const meta = this.meta;
      objects.writesRefused = () => meta.spaceLow;
    }
    const server = (this.server = new RpcServer(() => this.sb.fsid, (method, request, caller) => this.authorize(method, request, caller), this.nodeId));
    if (etcd) server.addService('Meta', this.leaderHandlers(), ['Register']);
    else if (this.meta) server.addService('Meta', this.meta.handlers(), ['Register']);
    server.addService('Agent', agentHandlers(objects, this.nodeId, () => this.leaderEpoch()));
    const host = this.sb.listenAddress.slice(0, this.sb.listenAddress.lastIndexOf(':'));
    // a port configured stays; none (0): the one of last time if free (see ports.ts)
    const port = this.sb.listenAddress.endsWith(':0')
      ? await listenAsBefore(dir, 'rpc', (port) => server.listen(`${host}:${port}`))
      : await server.listen(this.sb.listenAddress);
    this.address = `${host}:${port}`;
    const dataServer = (this.dataServer = new DataServer(objects, this.nodeId, () => this.sb.fsid, () => this.leaderEpoch()));
    this.dataAddress = `${host}:${await listenAsBefore(dir, 'data', (port) => dataServer.listen(host, port))}`;

    if (this.meta) {
      const meta = this.meta;
      const sessions = (this.sessionServer = new SessionServer(() => this.sb.fsid, (method, request, caller, call) => meta.call(method as never, request, caller, callMark(caller, call)), {
        opened: (session) => meta.attach(session),
        closed: (session) => meta.detach(session),
      }, (nodeId) => (meta.isRevoked(nodeId) ? `node ${nodeId} is revoked` : null)));
      meta.sessionAddress = `${host}:${await listenAsBefore(dir, 'session', (port) => sessions.listen(host, port))}`;
      meta.onRevoked = (ids, epoch) => {
        for (const id of ids) sessions.closeNode(id);
        forgetDataKey();
        this.dataServer?.keyReplaced(epoch);
      };
      // the root's own kernel is called back in-process
      meta.attach({
        nodeId: this.nodeId, incarnation: this.incarnation, callback: (items) => callbackReply((taken) => this.invalidate(items, taken)),
        leaseUntilMs: () => Infinity, // the root's own: never cut off from itself
      });
      // the root's own locks went with its mount
      meta.locks.reclaim(this.nodeId, []);
    }
    const rootAddress = etcd ? await this.startLeadership(etcd, host) : this.sb.rootAddress;
    this.metaClient = this.meta
      ? new MetaClient(new LocalChannel(this.meta.handlers(), { nodeId: this.nodeId }))
      : MetaClient.remote(rootAddress, this.sb.fsid, etcd ? () => this.relocateRoot() : undefined);
    await this.leaderWatch?.start();
    const keys = this.metaClient;
    useDataKeySource(() => keys.dataKey());
    const sessionAddress = await this.join();
    const metaClient = this.sessionMeta = this.meta ? this.metaClient : new MetaClient((this.sessionClient = new SessionClient(
      sessionAddress,
      { fsid: this.sb.fsid, nodeId: this.nodeId, incarnation: this.incarnation },
      META_DEADLINE_MS,
      (items, taken) => this.invalidate(items, taken),
      (first) => this.sessionOpened(first),
      () => this.relocateRoot(),
      ...(etcd ? [FAILOVER_BOUND_MS, FAILOVER_BOUND_MS] : []),
    )));
    // not ready before the root hears this node: until then it places no new files here
    if (this.sessionClient) await this.firstSession();
    // held before the node is ready: one that starts just before the service
    // goes away (stopped, between two leaders) still lets in the peers that know it
    await currentDataKey().catch((err: Error) => log.warn(`no data key yet (asked again at the next heartbeat): ${err.message}`));
    void this.recordMembers();
    this.heartbeat = setInterval(() => {
      void this.register(HEARTBEAT_MS).catch((err) => log.debug(`heartbeat: ${err.message}`));
      // a revocation replaces the data key: connections proved with the old one go
      void currentDataKey(true).then((key) => this.dataServer?.keyReplaced(key.epoch), (err: Error) => log.debug(`data key: ${err.message}`));
      void this.recordMembers();
    }, HEARTBEAT_MS);
    this.heartbeat.unref();

    this.agents = new AgentPool(metaClient, this.sb.fsid, { nodeId: this.nodeId, objects });
    const vfs = this.vfs = new ControlledVfs(metaClient, this.agents, this.nodeId);
    this.scheduler = new NodeScheduler(metaClient, this.nodeId, dir, (name) => vfs.readModule(name));
    vfs.attachScheduler(new SchedulerTree(this.scheduler));
    if (this.meta) this.meta.scheduler.readModule = (name) => vfs.readModule(name);
    if (this.leaderRole?.meta) this.leaderRole.meta.scheduler.readModule = (name) => vfs.readModule(name);
    this.fuse = new FuseMount(mountPoint, this.vfs, {
      fsname: `kdfs:${dir}`, readOnly: this.options.readOnly, debug: this.options.debug, noDev: this.options.noDev, noSuid: this.options.noSuid,
    });
    await this.fuse.mount(() => void this.stop('unmounted'));
    this.scheduler.start();
    writeRunFile(dir, { pid: process.pid, startTicks: startTicks(process.pid) ?? 0, mountPoint, address: this.address });
    log.info(`node ${this.nodeId}${this.isRoot ? ' (root)' : ''} serving at ${this.address}, mounted at ${mountPoint}`);
  }

  /** Metadata in etcd: this node campaigns for the leadership, serves sessions
   *  while it leads, and follows the leader. Returns the leader's address. */
  private async startLeadership(etcd: EtcdTarget, host: string): Promise<string> {
    const client = (this.etcdClient = connectEtcd(etcd));
    const servedBy = new WeakMap<object, MetaService>();
    const sessions = (this.sessionServer = new SessionServer(() => this.sb.fsid, (method, request, caller, call) => this.leaderCall(method, request, caller, call), {
      opened: (session) => {
        const meta = this.leaderRole?.meta;
        if (!meta) return;
        servedBy.set(session, meta);
        meta.attach(session);
      },
      closed: (session) => servedBy.get(session)?.detach(session),
    }, (nodeId) => (this.leaderRole?.meta?.isRevoked(nodeId) ? `node ${nodeId} is revoked` : null), () => !!this.leaderRole?.meta));
    const sessionAddress = `${host}:${await listenAsBefore(this.options.dir, 'session', (port) => sessions.listen(host, port))}`;
    this.leaderRole = new LeaderRole(etcd, client, {
      nodeId: this.nodeId, fsid: this.sb.fsid, objects: this.objects!, replication: this.options.replication,
      leading: (meta) => {
        meta.sessionAddress = sessionAddress;
        meta.onRevoked = (ids, epoch) => {
          for (const id of ids) sessions.closeNode(id);
          forgetDataKey();
          this.dataServer?.keyReplaced(epoch);
        };
        const vfs = this.vfs as ControlledVfs | null;
        if (vfs) meta.scheduler.readModule = (name) => vfs.readModule(name);
        // this node's own session and everyone's: to the new leader
        void this.leaderWatch?.refresh();
      },
      deposed: () => sessions.closeAll(),
    }, { nodeId: this.nodeId, address: this.address, sessionAddress }, this.isRoot);
    this.leaderWatch = new LeaderWatch(client, this.sb.fsid, (leader) => {
      log.info(`metadata leader: node ${leader.nodeId} at ${leader.address} (epoch ${leader.epoch})`);
      this.leadershipKnown();
      this.metaClient?.moveTo(leader.address);
      this.sessionClient?.moveTo(leader.sessionAddress);
      this.relocateRoot();
    });
    const leader = await findLeader(client, this.sb.fsid, JOIN_TIMEOUT_MS);
    if (!leader) throw new StartError(`no metadata leader in etcd (${this.sb.meta}) within ${JOIN_TIMEOUT_MS / 1000} s`);
    return leader.address;
  }

  /** A call for the metadata service, served if this node leads it; NotLeader
   *  otherwise, also for a call its service failed because it was deposed
   *  meanwhile: the caller sends it again to the new leader. */
  private async leaderCall(method: string, request: unknown, caller?: Caller, call?: SessionCall): Promise<unknown> {
    const meta = this.leaderRole?.meta;
    if (!meta) throw new NotLeader(`node ${this.nodeId} does not lead the metadata service`);
    try {
      return await meta.call(method as never, request as never, caller, callMark(caller, call));
    } catch (err) {
      if (this.leaderRole?.meta !== meta) throw new NotLeader(`node ${this.nodeId} stopped leading the metadata service`);
      throw err;
    }
  }

  /** The metadata leadership's epoch, as this node's agent fences calls on it
   *  (0 with level). A node that just started serves its agent before it has
   *  read the epoch from etcd: a call carrying an epoch waits until it has (a
   *  deposed leader's would pass otherwise), EAGAIN past CONNECT_TIMEOUT_MS. */
  private leaderEpoch(): number | Promise<number> {
    const epoch = this.leaderWatch?.epoch;
    if (epoch !== null && epoch !== undefined) return Number(epoch);
    if (!this.sb.meta) return 0;
    return within(this.leadershipSeen.then(() => Number(this.leaderWatch!.epoch)), CONNECT_TIMEOUT_MS, () => {
      throw new FsError(E.EAGAIN, 'this node does not know the metadata leadership yet');
    });
  }

  /** The Meta gRPC service of a node that may lead it (metadata in etcd). */
  private leaderHandlers(): Handlers<MetaMethods> {
    const handlers: Record<string, (request: unknown) => Promise<unknown>> = {};
    for (const method of Object.keys(serviceDefinition('Meta'))) handlers[method] = (request) => this.leaderCall(method, request);
    return handlers as unknown as Handlers<MetaMethods>;
  }

  /** A session with the root was opened: after a lost one, callbacks may have been
   *  missed; and if the root restarted, it waits for this node's locks. */
  private sessionOpened(first: boolean): void {
    this.sessionUp?.();
    if (!first) void this.vfs?.sessionLost().catch((err) => log.warn(`dropping caches: ${(err as Error).message}`));
    const reclaimed = this.vfs ? this.vfs.locks.reclaim() : this.sessionMeta!.reclaimLocks([]);
    void Promise.resolve(reclaimed).catch((err) => log.warn(`reclaiming file locks: ${(err as Error).message}`));
  }

  /** Registers with the root node, waiting for it to come up; learns the fsid on
   *  the first join. Returns where the root takes sessions. */
  private async join(): Promise<string> {
    const deadline = Date.now() + JOIN_TIMEOUT_MS;
    for (;;) {
      try {
        return await this.register(JOIN_CALL_DEADLINE_MS);
      } catch (err) {
        if (err instanceof StartError) throw err;
        // credentials the root refuses will never do: say so now, not after the join timeout
        const refused = await credentialsRefusedBy(this.sb.rootAddress);
        if (refused) {
          throw new StartError(`the root node at ${this.sb.rootAddress} refuses this node's credentials (${refused}): ${this.options.dir} belongs to another kDFS file system, or its token was not made on this root`);
        }
        if (Date.now() > deadline) {
          throw new StartError(`the root node at ${this.sb.rootAddress} did not answer within ${JOIN_TIMEOUT_MS / 1000} s`);
        }
        await new Promise((resolve) => setTimeout(resolve, JOIN_RETRY_MS));
      }
    }
  }

  private async register(deadlineMs: number): Promise<string> {
    const reply = await this.metaClient!.register({
      nodeId: this.nodeId, nodeUuid: this.sb.nodeUuid, address: this.address, fsid: this.sb.fsid,
      openInos: this.vfs?.openInos() ?? [], incarnation: this.incarnation, dataAddress: this.dataAddress, domain: this.sb.domain ?? '',
      replace: this.sb.replace ?? false,
    }, deadlineMs);
    if (reply.errno !== 0) throw new StartError(`the root node refused node ${this.nodeId}: ${reply.message}`);
    if (!this.sb.fsid) {
      this.sb = { ...this.sb, fsid: reply.fsid };
      await writeSuperblock(this.options.dir, this.sb);
      this.metaClient!.setFsid(reply.fsid);
      this.sessionClient?.setFsid(reply.fsid);
      log.info(`joined file system ${reply.fsid}`);
    }
    // the root restarted elsewhere: the session follows it
    this.sessionClient?.moveTo(reply.sessionAddress ?? '');
    return reply.sessionAddress ?? '';
  }

  /** Keeps the members in the node's directory, for kdfs status without the root. */
  private async recordMembers(): Promise<void> {
    try {
      writeMembers(this.options.dir, await this.sessionMeta!.listNodes());
    } catch (err) {
      log.debug(`recording the members: ${(err as Error).message}`);
    }
  }

  private async firstSession(): Promise<void> {
    try {
      await within(new Promise<void>((resolve) => (this.sessionUp = resolve)), JOIN_TIMEOUT_MS, () => {
        throw new StartError(`the root node at ${this.sb.rootAddress} took no session within ${JOIN_TIMEOUT_MS / 1000} s`);
      });
    } finally {
      this.sessionUp = null;
    }
  }

  /** The root's session cannot be reached: it may have restarted, taking sessions
   *  at another port. Registering again tells where (at most one at a time), so
   *  that calls waiting for it go on well within their bound, not at the next
   *  heartbeat. */
  private relocateRoot(): void {
    if (this.relocating || this.stopping) return;
    // with etcd, the leader may have changed: etcd says which it is now
    this.relocating = (this.leaderWatch ? this.leaderWatch.refresh() : Promise.resolve())
      .then(() => this.register(JOIN_CALL_DEADLINE_MS))
      .catch((err) => log.debug(`looking for the root: ${(err as Error).message}`))
      .finally(() => (this.relocating = null));
  }

  /** Unmounts and stops everything; safe to call more than once. */
  stop(reason: string): Promise<void> {
    this.stopping ??= (async () => {
      log.info(`stopping: ${reason}`);
      if (this.heartbeat) clearInterval(this.heartbeat);
      await this.scheduler?.stop();
      if (this.fuse) {
        this.fuse.unmount();
        // a lazy unmount ends the session once nothing uses the mount any more
        await Promise.race([this.fuse.exited, new Promise((resolve) => setTimeout(resolve, UNMOUNT_WAIT_MS))]);
      }
      await this.server?.stop();
      this.sessionServer?.close();
      await this.dataServer?.close();
      this.agents?.close();
      this.sessionClient?.close();
      this.metaClient?.disconnect();
      await this.leaderWatch?.stop();
      await this.leaderRole?.stop();
      this.etcdClient?.close();
      await this.meta?.close().catch((err) => log.error(`closing the metadata store: ${(err as Error).message}`));
      this.objects?.close();
      const run = readRunFile(this.options.dir);
      if (run?.pid === process.pid) removeRunFile(this.options.dir);
      this.resolveStopped();
    })();
    return this.stopping;
  }
}

/** Refuses a mount point in use; clears one left stale by a killed node process. */
function checkMountPoint(dir: string, mountPoint: string): void {
  const run = runningNode(dir);
  if (run && run.pid !== process.pid) {
    throw new StartError(`${dir} is already served by process ${run.pid} (mounted at ${run.mountPoint})`);
  }
  const mounted = mountAt(mountPoint);
  if (mounted) {
    if (isStaleKdfsMount(mounted)) {
      log.info(`clearing the stale mount at ${mountPoint}`);
      detach(mountPoint);
    } else {
      throw new StartError(`${mountPoint} is already a mount point (${mounted.source}, ${mounted.type})`);
    }
  }
  let isDirectory = false;
  try {
    isDirectory = statSync(mountPoint).isDirectory();
  } catch (err) {
    throw new StartError(`mount point ${mountPoint}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such directory' : (err as Error).message}`);
  }
  if (!isDirectory) throw new StartError(`mount point ${mountPoint} is not a directory`);
}
