// MOUNT/.kdfs/scheduler: PlugProPol's configfs tree, served by every node.
//   probes/NAME/                 mkdir loads probe module NAME everywhere, rmdir unloads it
//   probes/NAME/ATTR             an attribute: cat, echo VALUE > (probe_period: ms between samples)
//   probes/NAME/VALUE/value      this node's latest value; VALUE/nodes: every node's
//   schedulers/S/                a scheduler (mkdir, rmdir); `kdfs setstripe --policy S`
//   schedulers/S/POLICY/         mkdir loads policy module POLICY into S
//   schedulers/S/POLICY/PORT     ln -s ../../../probes/NAME/VALUE PORT links a port to a value
// The tree's content comes from the metadata service at every call (no cache:
// a change on one node is seen at once on the others). Errors are a configfs
// user's: ENOENT unknown module, EINVAL bad value, EBUSY rmdir of a linked probe.
import { now } from '../common/clock.js';
import { E, FsError } from '../common/errno.js';
import { S_IFDIR, S_IFLNK, S_IFREG } from '../common/mode.js';
import type { Attr, DirEntry } from '../rpc/messages.js';
import { attributeValues, attributesOf, MODULE_NAME, type SchedulerConfig } from './config.js';
import type { NodeScheduler, Reply } from './node.js';

/** Inode numbers of the tree: far above any the metadata service gives. */
export const VIRTUAL_INO_BASE = 2 ** 52;
/** Paths of the tree given inode numbers, at most (past it, the oldest are reused... never: refused). */
const VIRTUAL_INOS_MAX = 1_000_000;
const DESCRIPTION = 'description';
const VALUE = 'value';
const NODES = 'nodes';
const WEIGHTS = 'weights';
const SAMPLES = 'samples';

type Kind = 'dir' | 'attr' | 'ro' | 'link';
interface Found { kind: Kind; path: string[] }

export class SchedulerTree {
  private readonly inos = new Map<string, number>();
  private readonly paths: string[][] = [];
  /** The real directory .kdfs/scheduler, once the kernel looked it up. */
  rootIno = 0;

  constructor(private readonly scheduler: NodeScheduler) {}

  isVirtual(ino: number): boolean {
    return ino >= VIRTUAL_INO_BASE;
  }

  /** Whether calls about the entries of `dir` are the tree's. */
  servesDir(dir: number): boolean {
    return this.isVirtual(dir) || (this.rootIno !== 0 && dir === this.rootIno);
  }

  async lookup(parent: number, name: string): Promise<Attr> {
    const path = [...this.pathOf(parent), name];
    const reply = await this.scheduler.fetch();
    const found = this.find(reply.config, path);
    if (!found) throw new FsError(E.ENOENT);
    return this.attr(found, reply);
  }

  async getattr(ino: number): Promise<Attr> {
    const path = this.pathOf(ino);
    const reply = await this.scheduler.fetch();
    const found = this.find(reply.config, path);
    if (!found) throw new FsError(E.ENOENT);
    return this.attr(found, reply);
  }

  async readdir(dir: number): Promise<DirEntry[]> {
    const path = this.pathOf(dir);
    const reply = await this.scheduler.fetch();
    const found = this.find(reply.config, path);
    if (!found || found.kind !== 'dir') throw new FsError(E.ENOTDIR);
    return this.children(reply.config, path).map((name) => {
      const child = this.find(reply.config, [...path, name])!;
      return { name, ino: this.inoOf(child.path), mode: modeOf(child.kind) };
    });
  }

  async mkdir(parent: number, name: string): Promise<Attr> {
    const path = [...this.pathOf(parent), name];
    if (!MODULE_NAME.test(name)) throw new FsError(E.EINVAL);
    let reply: Reply;
    if (path.length === 2 && path[0] === 'probes') {
      reply = await this.scheduler.change({ op: 'load-probe', name, info: await this.scheduler.describe(name, 'probe') });
    } else if (path.length === 2 && path[0] === 'schedulers') {
      reply = await this.scheduler.change({ op: 'make-scheduler', name });
    } else if (path.length === 3 && path[0] === 'schedulers') {
      reply = await this.scheduler.change({ op: 'load-policy', scheduler: path[1], name, info: await this.scheduler.describe(name, 'policy') });
    } else {
      throw new FsError(E.EPERM);
    }
    return this.attr({ kind: 'dir', path }, reply);
  }

  async rmdir(parent: number, name: string): Promise<void> {
    const path = [...this.pathOf(parent), name];
    if (path.length === 2 && path[0] === 'probes') await this.scheduler.change({ op: 'unload-probe', name });
    else if (path.length === 2 && path[0] === 'schedulers') await this.scheduler.change({ op: 'remove-scheduler', name });
    else if (path.length === 3 && path[0] === 'schedulers') await this.scheduler.change({ op: 'unload-policy', scheduler: path[1], name });
    else throw new FsError((await this.exists(path)) ? E.EPERM : E.ENOENT);
  }

  /** ln -s SOURCE PORT in a policy's directory: SOURCE names a probe's value directory. */
  async symlink(parent: number, name: string, target: string): Promise<Attr> {
    const path = [...this.pathOf(parent), name];
    if (path.length !== 4 || path[0] !== 'schedulers') throw new FsError(E.EPERM);
    const source = /(?:^|\/)probes\/([^/]+)\/([^/]+)\/?$/.exec(target);
    if (!source) throw new FsError(E.EINVAL, `not a probe's value: ${target}`);
    const reply = await this.scheduler.change({ op: 'link', scheduler: path[1], policy: path[2], port: name, probe: source[1], value: source[2] });
    return this.attr({ kind: 'link', path }, reply);
  }

  async unlink(parent: number, name: string): Promise<void> {
    const path = [...this.pathOf(parent), name];
    const reply = await this.scheduler.fetch();
    const found = this.find(reply.config, path);
    if (!found) throw new FsError(E.ENOENT);
    if (found.kind !== 'link') throw new FsError(found.kind === 'dir' ? E.EISDIR : E.EPERM);
    await this.scheduler.change({ op: 'unlink', scheduler: path[1], policy: path[2], port: name });
  }

  async readlink(ino: number): Promise<string> {
    const path = this.pathOf(ino);
    const reply = await this.scheduler.fetch();
    const link = reply.config.schedulers[path[1]]?.policies[path[2]]?.links[path[3]];
    if (path.length !== 4 || !link) throw new FsError(E.EINVAL);
    return `../../../probes/${link}`;
  }

  /** The content of a file of the tree. */
  async read(ino: number): Promise<Buffer> {
    const path = this.pathOf(ino);
    const reply = await this.scheduler.fetch();
    const found = this.find(reply.config, path);
    if (!found) throw new FsError(E.ENOENT);
    if (found.kind === 'dir' || found.kind === 'link') throw new FsError(E.EISDIR);
    return Buffer.from(await this.content(reply, path) + '\n');
  }

  /** echo VALUE > ATTR. */
  async write(ino: number, data: Buffer): Promise<void> {
    const path = this.pathOf(ino);
    const reply = await this.scheduler.fetch();
    const found = this.find(reply.config, path);
    if (!found) throw new FsError(E.ENOENT);
    if (found.kind !== 'attr') throw new FsError(E.EACCES);
    const value = data.toString('utf8');
    if (path[0] === 'probes') await this.scheduler.change({ op: 'set', scheduler: null, name: path[1], attr: path[2], value });
    else await this.scheduler.change({ op: 'set', scheduler: path[1], name: path[2], attr: path[3], value });
  }

  private async exists(path: string[]): Promise<boolean> {
    return this.find((await this.scheduler.fetch()).config, path) !== null;
  }

  private async content(reply: Reply, path: string[]): Promise<string> {
    const { config } = reply;
    if (path[0] === 'probes') {
      const probe = config.probes[path[1]];
      if (path.length === 3 && path[2] === DESCRIPTION) return probe.info.description;
      if (path.length === 3 && path[2] === SAMPLES) return String(this.scheduler.sampleCount(path[1]));
      if (path.length === 3) return attributeValues(probe)[path[2]];
      if (path[3] === VALUE) return formatValue(await this.scheduler.localValue(path[1], path[2]));
      return Object.entries(reply.values).sort(([a], [b]) => Number(a) - Number(b))
        .map(([node, v]) => `${node} ${v.probes[path[1]]?.[path[2]] === undefined ? '-' : formatValue(v.probes[path[1]][path[2]])}`).join('\n');
    }
    const policy = config.schedulers[path[1]].policies[path[2]];
    if (path[3] === DESCRIPTION) return policy.info.description;
    if (path[3] === WEIGHTS) {
      const weights = reply.weights[path[1]] ?? {};
      return Object.keys(weights).length === 0 ? 'none (placing by round-robin)' : Object.entries(weights).map(([node, w]) => `${node} ${formatValue(w)}`).join('\n');
    }
    return attributeValues(policy)[path[3]];
  }

  /** What `path` is in the configuration, or null if nothing. */
  private find(config: SchedulerConfig, path: string[]): Found | null {
    const dir = { kind: 'dir' as const, path };
    if (path.length === 0) return dir;
    const [top, name, sub, leaf] = path;
    if (top === 'probes') {
      if (path.length === 1) return dir;
      const probe = config.probes[name];
      if (!probe) return null;
      if (path.length === 2) return dir;
      if (path.length === 3) {
        if (sub === DESCRIPTION || sub === SAMPLES) return { kind: 'ro', path };
        if (sub in attributesOf(probe.info)) return { kind: 'attr', path };
        return probe.info.values.includes(sub) ? dir : null;
      }
      if (path.length === 4 && probe.info.values.includes(sub) && (leaf === VALUE || leaf === NODES)) return { kind: 'ro', path };
      return null;
    }
    if (top === 'schedulers') {
      if (path.length === 1) return dir;
      const scheduler = config.schedulers[name];
      if (!scheduler) return null;
      if (path.length === 2) return dir;
      const policy = scheduler.policies[sub];
      if (!policy) return null;
      if (path.length === 3) return dir;
      if (path.length === 4) {
        if (leaf === DESCRIPTION || leaf === WEIGHTS) return { kind: 'ro', path };
        if (leaf in attributesOf(policy.info)) return { kind: 'attr', path };
        if (policy.links[leaf]) return { kind: 'link', path };
      }
      return null;
    }
    return null;
  }

  private children(config: SchedulerConfig, path: string[]): string[] {
    if (path.length === 0) return ['probes', 'schedulers'];
    const [top, name, sub] = path;
    if (top === 'probes') {
      if (path.length === 1) return Object.keys(config.probes).sort();
      const probe = config.probes[name];
      if (path.length === 2) return [DESCRIPTION, SAMPLES, ...Object.keys(attributesOf(probe.info)), ...probe.info.values];
      return [VALUE, NODES];
    }
    if (path.length === 1) return Object.keys(config.schedulers).sort();
    if (path.length === 2) return Object.keys(config.schedulers[name].policies).sort();
    const policy = config.schedulers[name].policies[sub];
    return [DESCRIPTION, WEIGHTS, ...Object.keys(attributesOf(policy.info)), ...Object.keys(policy.links)];
  }

  private attr(found: Found, _reply: Reply): Attr {
    const time = now();
    const dir = found.kind === 'dir';
    return {
      ino: this.inoOf(found.path), mode: modeOf(found.kind), uid: 0, gid: 0, nlink: dir ? 2 : 1,
      size: found.kind === 'link' ? 64 : dir ? 4096 : 4096, rdev: 0, atime: time, mtime: time, ctime: time, blocks: 0,
    };
  }

  private inoOf(path: string[]): number {
    if (path.length === 0) return this.rootIno;
    const key = path.join('/');
    let ino = this.inos.get(key);
    if (ino === undefined) {
      if (this.paths.length >= VIRTUAL_INOS_MAX) throw new FsError(E.ENOSPC, 'too many paths in the scheduler tree');
      ino = VIRTUAL_INO_BASE + this.paths.length;
      this.paths.push(path);
      this.inos.set(key, ino);
    }
    return ino;
  }

  private pathOf(ino: number): string[] {
    if (ino === this.rootIno) return [];
    const path = this.paths[ino - VIRTUAL_INO_BASE];
    if (!path) throw new FsError(E.ENOENT);
    return path;
  }
}

function modeOf(kind: Kind): number {
  switch (kind) {
    case 'dir': return S_IFDIR | 0o755;
    case 'attr': return S_IFREG | 0o644;
    case 'ro': return S_IFREG | 0o444;
    case 'link': return S_IFLNK | 0o777;
  }
}

function formatValue(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(3);
}
