// Regular files this node creates by itself. The metadata service delegates to
// a node the creates in a directory no other node is looking at (see Delegation
// in proto/kdfs.proto): the node answers them without a round trip, with inode
// numbers from a range of its own, and sends them with its next call to the
// service, the commit at close of the file in the common case: one call and
// one transaction per small file instead of two. Before any other call of this
// node, its creates are sent first, so that the service never sees a call
// about a file it does not know yet; before another node is served anything
// about the directory, the service recalls the delegation, which this node
// answers once it has sent its creates.
import assert from 'node:assert';
import { NAME_MAX_BYTES } from '../common/limits.js';
import { log } from '../common/log.js';
import { makeLayout } from '../layout/placement.js';
import { namedBy } from '../rpc/targets.js';
import type { PendingCreates } from '../meta/client.js';
import type { Attr, Delegation, DelegatedCreate, FailedCreate, Layout, MetaMethods, StripePolicy } from '../rpc/messages.js';

/** A delegation is not used closer than this to its end or to the lease's. */
const DELEGATION_MARGIN_MS = 500;
/** Inode numbers asked for when fewer than INOS_LOW are left. */
export const INOS_WANTED = 1024;
const INOS_LOW = 256;
/** Creates waiting to be sent, at most: past it, creates are made by the service. */
const PENDING_MAX = 4096;
/** Delegated directories remembered, at most (as many as the service gives in all):
 *  a node making a large tree gets one per directory it makes. */
const DIRS_MAX = 65_536;
/** Refused creates remembered, for the close of their files (see wasRefused):
 *  as many as one call can carry, all of which the service may refuse at once. */
const REFUSED_KEPT = PENDING_MAX;
/** Calls carrying a create that a call naming it waits for, one after the other,
 *  at most (each fails within its bound while the service is away). */
const FLIGHT_WAITS_MAX = 8;

/** Calls that do not name the namespace: they need not wait for this node's creates. */
const UNRELATED = new Set<keyof MetaMethods>(['Register', 'ListNodes', 'Statfs', 'CancelLock', 'ReclaimLocks', 'Publish', 'ReserveInos']);

interface Held {
  untilMs: number; policy: StripePolicy | null; nodeIds: number[]; domains: Map<number, string>; weights: Map<number, number> | null;
  parentMode: number; parentGid: number;
}

export interface DelegatedEntry { ino: number; layout: Layout; gid: number; cacheMs: number }

export class Delegations implements PendingCreates {
  private readonly dirs = new Map<number, Held>();
  private readonly inos: { next: number; end: number }[] = [];
  /** Creates not sent yet, by inode, in the order made. */
  private readonly pending = new Map<number, DelegatedCreate>();
  private refilling: Promise<void> | null = null;
  /** Creates sent and not yet answered: the calls that carry each (a commit
   *  carries its file's create again rather than wait for another call), and
   *  whether one of them was answered with the create made (it is not carried
   *  again then: the service would take it, but it could outlive a rename). */
  private readonly inFlight = new Map<number, { create: DelegatedCreate; calls: Set<Promise<void>>; made: boolean }>();
  /** Creates taken for a call, until it is answered: what tells their waiters. */
  private readonly launched = new WeakMap<DelegatedCreate[], { landed: () => void; settled: Promise<void> }>();

  /** publish: sends creates on their own; failed: a create the service refused
   *  (its file does not exist: the node drops what it told its kernel). */
  constructor(
    private readonly publish: (creates: DelegatedCreate[]) => Promise<MetaMethods['Publish'][1]>,
    private readonly reserve: (count: number) => Promise<{ inoFirst: number; inoCount: number }>,
    private readonly failed: (create: DelegatedCreate, errno: number) => void,
    /** This node: the writer of the files it creates (local-first placement). */
    private readonly nodeId: number,
  ) {}

  /** Creates of this node the service refused, by inode (the latest REFUSED_KEPT). */
  private readonly refused = new Map<number, number>();

  private refuse(create: DelegatedCreate, errno: number): void {
    this.refused.set(create.ino, errno);
    if (this.refused.size > REFUSED_KEPT) this.refused.delete(this.refused.keys().next().value!);
    this.failed(create, errno);
  }

  /** Whether the service refused this node's create of ino: its file never existed. */
  wasRefused(ino: number): boolean {
    return this.refused.has(ino);
  }

  /** Inode numbers to ask for with the next synchronous create. */
  inosWanted(): number {
    let left = 0;
    for (const range of this.inos) left += range.end - range.next;
    return left < INOS_LOW && !this.refilling ? INOS_WANTED : 0;
  }

  /** Asks for more inode numbers before they run out (one request at a time). */
  private refill(): void {
    if (this.refilling || this.inosWanted() === 0) return;
    this.refilling = this.reserve(INOS_WANTED).then(({ inoFirst, inoCount }) => {
      this.inos.push({ next: inoFirst, end: inoFirst + inoCount });
    }, (err: unknown) => log.debug(`reserving inode numbers: ${(err as Error).message}`)).finally(() => (this.refilling = null));
  }

  /** What a Create's reply granted. */
  granted(delegation: Delegation | null | undefined): void {
    if (!delegation) return;
    if (delegation.inoCount > 0) this.inos.push({ next: delegation.inoFirst, end: delegation.inoFirst + delegation.inoCount });
    if (delegation.dir && delegation.cacheMs > 0) {
      if (this.dirs.size >= DIRS_MAX && !this.dirs.has(delegation.dir)) this.forgetExpired();
      this.dirs.set(delegation.dir, {
        untilMs: Date.now() + delegation.cacheMs, policy: delegation.policy, nodeIds: [...delegation.nodeIds],
        domains: new Map(delegation.nodeIds.map((id, i) => [id, delegation.nodeDomains?.[i] ?? ''])),
        weights: delegation.nodeWeights?.length === delegation.nodeIds.length ? new Map(delegation.nodeIds.map((id, i) => [id, delegation.nodeWeights![i]])) : null,
        parentMode: delegation.parentMode, parentGid: delegation.parentGid,
      });
    }
  }

  held(dir: number): boolean {
    return this.dirs.has(dir);
  }

  /** Drops the delegations past their end, and the oldest if none is. */
  private forgetExpired(): void {
    const nowMs = Date.now();
    for (const [dir, held] of this.dirs) if (held.untilMs <= nowMs) this.dirs.delete(dir);
    if (this.dirs.size >= DIRS_MAX) this.dirs.delete(this.dirs.keys().next().value!);
  }

  /** Makes a create in dir here, if the delegation holds for longer than the
   *  margin (and the lease too); null if the service must make it. */
  create(dir: number, name: string, mode: number, uid: number, gid: number, time: DelegatedCreate['time'], leaseRemainingMs: number): DelegatedEntry | null {
    const held = this.dirs.get(dir);
    // a name the service would refuse: it says why
    if (!held || Buffer.byteLength(name) > NAME_MAX_BYTES) return null;
    const remainingMs = Math.min(held.untilMs - Date.now(), leaseRemainingMs) - DELEGATION_MARGIN_MS;
    if (remainingMs <= 0) {
      if (held.untilMs - Date.now() <= DELEGATION_MARGIN_MS) this.dirs.delete(dir);
      return null;
    }
    if (this.pending.size >= PENDING_MAX) return null;
    const range = this.inos[0];
    this.refill();
    if (!range) return null;
    const ino = range.next++;
    if (range.next >= range.end) this.inos.shift();
    // BSD group semantics in set-group-ID directories, as the service applies them
    const ownerGid = held.parentMode & 0o2000 ? held.parentGid : gid;
    const layout = makeLayout(ino, held.policy, null, {
      nodeIds: held.nodeIds, domainOf: (id) => held.domains.get(id) ?? '', writerNodeId: this.nodeId, weightsOf: () => held.weights,
    });
    this.pending.set(ino, { entry: { ino: dir, name }, mode, uid, gid: ownerGid, ino, layout, time });
    return { ino, layout, gid: ownerGid, cacheMs: remainingMs };
  }

  /** A setattr of a file created here and not sent yet: it goes with the
   *  create, as the attributes after it, which changed makes and this returns
   *  (null if the create went already). */
  change(ino: number, changed: () => Attr): Attr | null {
    const create = this.pending.get(ino);
    if (!create) return null;
    create.changed = changed();
    return create.changed;
  }

  /** A file created here and not sent yet outgrows its inode: it is made with
   *  its data in its stripe objects (false if the create went already). */
  spill(ino: number): boolean {
    const create = this.pending.get(ino);
    if (!create) return false;
    create.spilled = true;
    return true;
  }

  /** Whether ino was created here and the service may not know it yet. */
  unsent(ino: number): boolean {
    return this.pending.has(ino) || this.inFlight.has(ino);
  }

  /** The service recalled the delegation of dir, or this node changes the
   *  directory itself: no more creates there without asking. */
  drop(dir: number): void {
    this.dirs.delete(dir);
  }

  /** The session was lost: delegations went with it (the creates made stay to be sent). */
  clear(): void {
    this.dirs.clear();
  }

  /** Sends every create made so far, and waits for those on their way. A send
   *  that fails fails the flush only once the other calls carrying creates are
   *  answered: a recall answered before them would let another node look at
   *  the directory while they may still make files in it. */
  async flush(): Promise<void> {
    while (this.pending.size > 0 || this.inFlight.size > 0) {
      if (this.pending.size === 0) {
        await this.carried();
        continue;
      }
      try {
        await this.send(this.take());
      } catch (err) {
        await this.carried();
        throw err;
      }
    }
  }

  /** Resolves once every call carrying creates now is answered or failed. */
  private async carried(): Promise<void> {
    await Promise.allSettled(new Set([...this.inFlight.values()].flatMap((flight) => [...flight.calls])));
  }

  /** Sends creates on their own (taken: see launch). */
  private async send(creates: DelegatedCreate[]): Promise<void> {
    await this.carry(creates, this.publish(creates).then((reply) => {
      // the service refused the whole call: the creates were not made
      if (reply.errno !== 0) return { ...reply, failed: creates.map((c) => ({ ino: c.ino, errno: reply.errno })) };
      return reply;
    }));
  }

  /** Before a call: waits until the service knows what it may name; returns the
   *  creates a CommitWrite takes along (null: none). */
  before(method: keyof MetaMethods, request: unknown): Promise<DelegatedCreate[] | null> | null {
    if (UNRELATED.has(method) || (this.pending.size === 0 && this.inFlight.size === 0)) return null;
    return this.ready(method, request);
  }

  private async ready(method: keyof MetaMethods, request: unknown): Promise<DelegatedCreate[] | null> {
    // a directory removed or moved: its emptiness, and the creates below it, count
    const named = method === 'Remove' || method === 'Rename' ? null : namedInodes(request);
    if (!named) {
      await this.flush();
      return null;
    }
    const concerned = (create: DelegatedCreate) => named.has(create.ino) || named.has(create.entry.ino ?? 0);
    // A commit names its file alone. Its create on its way with another call
    // (the commit of a file made just before) goes again with this one instead
    // of being waited for: the service takes a create it made already, and the
    // commits of files made one after the other go together, not one round trip
    // after the other. Calls that wait for creates wait for both calls.
    if (method === 'CommitWrite') {
      const again = [...this.inFlight.values()].filter((flight) => !flight.made && concerned(flight.create)).map((flight) => flight.create);
      return this.pending.size > 0 || again.length > 0 ? this.take(again) : null;
    }
    // on their way: the service knows them once their call is answered. A call
    // that failed puts them back, and another call may take them before this one
    // goes on: waited for again, so that this one never overtakes them.
    for (let round = 0; round < FLIGHT_WAITS_MAX; round++) {
      const flights = new Set<Promise<unknown>>();
      for (const flight of this.inFlight.values()) if (concerned(flight.create)) for (const call of flight.calls) flights.add(call);
      if (flights.size === 0) break;
      await Promise.allSettled(flights);
    }
    const creates = [...this.pending.values()].filter(concerned);
    if (creates.length > 0) await this.send(this.launch(creates));
    return null;
  }

  /** A call carrying creates taken (take, send) was answered, or not (they go again). */
  async carry<T extends { errno: number; failed?: FailedCreate[] }>(creates: DelegatedCreate[], call: Promise<T>): Promise<T> {
    const flight = this.launched.get(creates);
    assert(flight, 'creates carried that were not taken');
    this.launched.delete(creates);
    // This call is done with the create: whether it still goes again is for the
    // last call carrying it to say, unless one was answered with it made, or it
    // was refused.
    const landedAgain = (create: DelegatedCreate, made: boolean): boolean => {
      const carried = this.inFlight.get(create.ino);
      if (!carried?.calls.delete(flight.settled)) return false;
      carried.made ||= made;
      if (carried.calls.size > 0) return false;
      this.inFlight.delete(create.ino);
      return !carried.made && !this.refused.has(create.ino);
    };
    try {
      const reply = await call;
      const refused = new Map((reply.failed ?? []).map((f) => [f.ino, f.errno]));
      // refused as a whole (a CommitWrite): none of them was made
      const wholeRefused = reply.errno !== 0 && !reply.failed?.length;
      for (const create of creates) {
        const errno = refused.get(create.ino);
        const made = errno === undefined && !wholeRefused;
        const carried = this.inFlight.get(create.ino);
        // made by another call carrying it: a refusal here is of a duplicate
        if (errno !== undefined && !carried?.made && !this.refused.has(create.ino)) this.refuse(create, errno);
        // with the next call
        if (landedAgain(create, made)) this.pending.set(create.ino, create);
      }
      return reply;
    } catch (err) {
      // not answered: sent again with the next call (the service takes a create it made already)
      for (const create of creates) if (landedAgain(create, false)) this.pending.set(create.ino, create);
      log.debug(`creates of this node not sent yet: ${(err as Error).message}`);
      throw err;
    } finally {
      flight.landed();
    }
  }

  /** Creates leave pending for a call: from now until that call is answered,
   *  calls that name them wait for it (the service may serve calls of one node
   *  in another order than sent, a transaction waiting for a read from disk). */
  private launch(creates: DelegatedCreate[]): DelegatedCreate[] {
    assert(!this.launched.has(creates), 'creates taken twice for one call');
    let landed!: () => void;
    const settled = new Promise<void>((resolve) => (landed = resolve));
    for (const create of creates) {
      this.pending.delete(create.ino);
      const flight = this.inFlight.get(create.ino);
      if (flight) flight.calls.add(settled);
      else this.inFlight.set(create.ino, { create, calls: new Set([settled]), made: false });
    }
    this.launched.set(creates, { landed, settled });
    return creates;
  }

  /** Takes every create not sent yet, and `again`, on their way already. */
  private take(again: DelegatedCreate[] = []): DelegatedCreate[] {
    return this.launch([...this.pending.values(), ...again]);
  }
}

/** The inodes a request names, or null if it may concern any (a path, or none named). */
function namedInodes(request: unknown): Set<number> | null {
  const { inos, path } = namedBy(request);
  return path || inos.length === 0 ? null : new Set(inos);
}
