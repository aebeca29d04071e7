// The Meta gRPC service of the root node: the namespace and the membership.
import { E, FsError } from '../common/errno.js';
import { READDIR_PAGE_ENTRIES } from '../common/limits.js';
import { log } from '../common/log.js';
import type { ObjectStore } from '../agent/objectStore.js';
import type { Handlers, MetaMethods, Target } from '../rpc/messages.js';
import { Cluster } from './cluster.js';
import { Namespace } from './namespace.js';
import { FIRST_INO } from './records.js';
import { MetaStore } from './store.js';

/** How long after a start the nodes have to re-announce their open files (they
 *  re-register every few seconds); unlinked inodes are kept until then. */
export const OPENS_GRACE_MS = 15_000;
/** Reported as free inodes: kDFS has no fixed inode table. */
const FILES_FREE = 2 ** 32;

const OK = { errno: 0 };

/** A target names an inode by number, or by a path from the root ("/..."). */
function target(t: Target | null | undefined): Target {
  if (!t || (!t.ino && !(typeof t.path === 'string' && t.path.startsWith('/')))) throw new FsError(E.EINVAL, 'no target');
  return t;
}

export class MetaService {
  readonly namespace: Namespace;
  readonly cluster: Cluster;
  private graceTimer: NodeJS.Timeout | null = null;

  private constructor(readonly store: MetaStore, local: { nodeId: number; objects: ObjectStore }) {
    this.namespace = new Namespace(store);
    this.cluster = new Cluster(store, this.namespace, local);
  }

  static async open(metaDir: string, local: { nodeId: number; objects: ObjectStore }): Promise<MetaService> {
    const service = new MetaService(await MetaStore.open(metaDir), local);
    service.cluster.startReaper();
    service.graceTimer = setTimeout(() => {
      service.namespace.opensAnnounced().catch((err) => log.error(`freeing unclaimed inodes: ${(err as Error).message}`));
    }, OPENS_GRACE_MS);
    service.graceTimer.unref();
    return service;
  }

  get fsid(): string {
    return this.store.fs.fsid;
  }

  async close(): Promise<void> {
    if (this.graceTimer) clearTimeout(this.graceTimer);
    this.cluster.close();
    await this.store.close();
  }

  handlers(): Handlers<MetaMethods> {
    const ns = this.namespace;
    const cluster = this.cluster;
    const policy = () => this.store.fs.defaultPolicy;
    return {
      Register: (request) => cluster.register(request),
      ListNodes: async () => ({ nodes: await cluster.nodes() }),
      Statfs: async () => {
        let totalBytes = 0;
        let freeBytes = 0;
        for (const node of await cluster.nodes()) {
          if (!node.up) continue;
          totalBytes += node.capacityBytes;
          freeBytes += node.freeBytes;
        }
        return { errno: 0, totalBytes, freeBytes, files: this.filesUsed() + FILES_FREE, filesFree: FILES_FREE };
      },
      Getattr: async (request) => ({ errno: 0, attr: await ns.getattr(target(request)) }),
      Setattr: async (request) => ({ errno: 0, attr: await ns.setattr({ ...request, target: target(request.target) }) }),
      async Create(request) {
        target(request.entry);
        const { inode, existed } = await ns.create(request, cluster.nodeIds(), policy());
        return { errno: 0, attr: inode.attr, layout: inode.layout, inlined: inode.inlined, inlineData: inode.inlineData, created: !existed };
      },
      async Remove(request) {
        await ns.remove(target(request.entry), request.directory);
        return OK;
      },
      async Rename(request) {
        await ns.rename(target(request.from), target(request.to), request.flags ?? 0);
        return OK;
      },
      Link: async (request) => ({ errno: 0, attr: await ns.link(target(request.inode), target(request.entry)) }),
      async ReadDir(request) {
        const limit = Math.min(request.limit || READDIR_PAGE_ENTRIES, READDIR_PAGE_ENTRIES);
        return { errno: 0, ...(await ns.readDir(target(request.target), request.after, limit)) };
      },
      ReadLink: async (request) => ({ errno: 0, target: await ns.readLink(target(request)) }),
      async Open(request) {
        const inode = await ns.open(target(request.target), request.nodeId);
        return { errno: 0, attr: inode.attr, layout: inode.layout, inlined: inode.inlined, inlineData: inode.inlineData };
      },
      async Close(request) {
        await ns.close(request.ino, request.nodeId);
        return OK;
      },
      CommitWrite: async (request) => ({
        errno: 0,
        attr: await ns.commitWrite(request.ino, request.size, request.mtime, request.sync, request.inlined ? Buffer.from(request.inlineData ?? []) : null),
      }),
      Sync: async () => {
        await this.store.barrier(true);
        return OK;
      },
      GetXattr: async (request) => ({ errno: 0, value: await ns.getXattr(target(request.target), request.name ?? ''), names: [] }),
      async SetXattr(request) {
        await ns.setXattr(target(request.target), request.name ?? '', Buffer.from(request.value ?? []), request.flags ?? 0);
        return OK;
      },
      ListXattr: async (request) => ({ errno: 0, value: Buffer.alloc(0), names: await ns.listXattr(target(request.target)) }),
      async RemoveXattr(request) {
        await ns.removeXattr(target(request.target), request.name ?? '');
        return OK;
      },
      async SetStripe(request) {
        if (!request.policy) throw new FsError(E.EINVAL);
        await ns.setStripe(target(request.target), request.policy, cluster.nodeIds(), policy());
        return OK;
      },
      GetStripe: async (request) => ({ errno: 0, ...(await ns.getStripe(target(request), cluster.nodeIds(), policy())) }),
    };
  }

  private filesUsed(): number {
    return this.store.inodesAllocated() - FIRST_INO + 1;
  }
}
