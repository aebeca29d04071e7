// The replicated engine: the records in an etcd cluster, under a key prefix of
// the file system (one etcd cluster can hold several), reached with mutual TLS.
// Every write is a Raft commit: durable on a majority of members before it is
// acknowledged, whatever `sync` says.
//
// Limits: a commit takes at most TXN_OPS_MAX operations and TXN_BYTES_MAX
// bytes, so etcd must run with --max-txn-ops and --max-request-bytes at least
// that (kdfs up's etcd does; docs/metadata.md says so for others). The store's
// transactions are packed into as few commits as the limits allow; one larger
// than the limits is sent alone (etcd refuses it: EIO, and a log line saying
// which limit to raise).
//
// Fencing: while a fence is set (the metadata service's leadership, see
// ../leader/), every commit also checks that the leadership key still has the
// revision it was created with; a deposed leader's commits fail (Fenced) and
// change nothing.
import { Etcd3, type ICompare, type IRequestOp, type KVClient } from 'etcd3';
import { E, FsError } from '../../common/errno.js';
import { log } from '../../common/log.js';
import { KIND_REQUEST } from '../records.js';
import type { BatchOp, KeyRange, KvEngine } from './engine.js';

/** Most operations in one etcd commit (etcd must run with --max-txn-ops at least this). */
export const TXN_OPS_MAX = 8192;
/** Most bytes of keys and values in one etcd commit (etcd's --max-request-bytes must be above, with room for framing). */
export const TXN_BYTES_MAX = 6 * 1024 * 1024;
/** Entries read per range request: 256 inodes of at most 8 KiB inline data and their attributes. */
const RANGE_PAGE = 256;
/** Largest reply the client takes (a page of ranges; etcd's own limit on replies is 2 GiB). */
const REPLY_BYTES_MAX = 64 * 1024 * 1024;
/** Bound on one etcd call: past it, the call fails and the store's caller sees EIO. */
const CALL_TIMEOUT_MS = 5000;
/** Calls' marks (see ../replay.ts) live at least this long: a call is sent again within
 *  its deadline (META_DEADLINE_MS), far less. They are attached to a lease taken
 *  every MARK_LEASE_EVERY_MS that lives MARK_TTL_S, and expire with it. */
const MARK_TTL_S = 600;
const MARK_LEASE_EVERY_MS = 60_000;
/** A commit waits this long at most for as many transactions as the last one
 *  carried: each costs about 2.5 ms of CPU (this client 0.8, the 3 members 1.7,
 *  measured) whatever it carries, so fuller commits leave more for the rest. */
const GATHER_MS = 2;

/** Where and how to reach an etcd cluster. */
export interface EtcdTarget {
  endpoints: string[];
  /** PEM: the authority etcd's server certificates are signed by, and this client's key and certificate. */
  ca: string;
  cert: string;
  key: string;
}

/** A commit refused because this process is no longer the leader it was elected as. */
export class Fenced extends FsError {
  constructor() {
    super(E.EIO, 'this metadata service is no longer the leader: the commit was refused');
  }
}

/** The key prefix of a file system's records in etcd. */
export const fsPrefix = (fsid: string): Buffer => Buffer.from(`kdfs/${fsid}/`);

export function connectEtcd(target: EtcdTarget): Etcd3 {
  return new Etcd3({
    hosts: target.endpoints.map((e) => `https://${e}`),
    credentials: { rootCertificate: Buffer.from(target.ca), privateKey: Buffer.from(target.key), certChain: Buffer.from(target.cert) },
    grpcOptions: { 'grpc.max_receive_message_length': REPLY_BYTES_MAX, 'grpc.max_send_message_length': TXN_BYTES_MAX + 1024 * 1024 },
    defaultCallOptions: () => ({ deadline: Date.now() + CALL_TIMEOUT_MS }),
    dialTimeout: CALL_TIMEOUT_MS,
  });
}

export class EtcdEngine implements KvEngine {
  readonly description: string;
  private readonly kv: KVClient;
  /** The condition every commit carries while set (see the top of this file). */
  private fence: ICompare | null = null;
  /** Told when a commit was refused by the fence, before the commit's caller hears of it. */
  onFenced: (() => void) | null = null;
  readonly marksRequests = true;
  /** Measured (4 processes creating through node 2, medians of 3): 533 creates/s
   *  without, 587 with 1 ms, 578 with 2, 600 with 3; waiting for more than the
   *  last commit carried was slower (503 with 2 ms, 372 with 4). */
  readonly gatherMs = GATHER_MS;
  private markLease: { id: Promise<string>; takenMs: number } | null = null;

  constructor(private readonly client: Etcd3, private readonly prefix: Buffer, endpoints: string[]) {
    this.kv = client.kv;
    this.description = `the metadata in etcd (${endpoints.join(',')}, prefix ${prefix.toString()})`;
  }

  /** Commits from now on only while `key` (full etcd key) has this create revision. */
  fenceOn(key: Buffer, createRevision: string): void {
    this.fence = { key, target: 'Create', result: 'Equal', create_revision: createRevision };
  }

  private full(key: Buffer): Buffer {
    return Buffer.concat([this.prefix, key]);
  }

  async get(key: Buffer): Promise<Buffer | undefined> {
    const reply = await this.kv.range({ key: this.full(key) });
    return reply.kvs[0]?.value;
  }

  async *range(range: KeyRange): AsyncIterable<[Buffer, Buffer]> {
    let from = this.full(range.gte);
    const end = this.full(range.lt);
    let left = range.limit ?? Infinity;
    while (left > 0) {
      const page = Math.min(RANGE_PAGE, left);
      const reply = await this.kv.range({ key: from, range_end: end, limit: page });
      for (const kv of reply.kvs) yield [kv.key.subarray(this.prefix.length), kv.value];
      left -= reply.kvs.length;
      if (!reply.more || reply.kvs.length === 0) return;
      from = Buffer.concat([reply.kvs[reply.kvs.length - 1].key, Buffer.alloc(1)]);
    }
  }

  async write(transactions: BatchOp[][], _sync: boolean): Promise<void> {
    for (const commit of pack(transactions)) await this.commit(commit);
  }

  /** One etcd commit: the last operation on each key (etcd refuses a key twice in one). */
  private async commit(ops: BatchOp[]): Promise<void> {
    const last = new Map<string, BatchOp>();
    for (const op of ops) {
      const name = op.key.toString('latin1');
      last.delete(name); // keeps the order of last writes
      last.set(name, op);
    }
    const marked = [...last.values()].some((op) => op.type === 'put' && op.key[0] === KIND_REQUEST);
    const lease = marked ? await this.leaseForMarks() : undefined;
    const success: IRequestOp[] = [...last.values()].map((op) => op.type === 'put'
      ? { request_put: { key: this.full(op.key), value: op.value, ...(op.key[0] === KIND_REQUEST ? { lease } : {}) } }
      : { request_delete_range: { key: this.full(op.key) } });
    let reply;
    try {
      reply = await this.kv.txn({ compare: this.fence ? [this.fence] : [], success, failure: [] });
    } catch (err) {
      if (/too many operations|request is too large/i.test((err as Error).message)) {
        log.error(`etcd refused a commit of ${success.length} operations: run etcd with --max-txn-ops ${TXN_OPS_MAX * 2} --max-request-bytes ${TXN_BYTES_MAX * 2} or more`);
      }
      throw err;
    }
    if (!reply.succeeded) {
      this.onFenced?.();
      throw new Fenced();
    }
  }

  /** The lease marks are written with now (a new one every MARK_LEASE_EVERY_MS). */
  private leaseForMarks(): Promise<string> {
    if (!this.markLease || Date.now() - this.markLease.takenMs > MARK_LEASE_EVERY_MS) {
      const id = this.client.leaseClient.leaseGrant({ TTL: MARK_TTL_S }).then((reply) => reply.ID);
      this.markLease = { id, takenMs: Date.now() };
      id.catch(() => (this.markLease = null));
    }
    return this.markLease.id;
  }

  /** After a failed write: nothing to stop (the client reconnects by itself). */
  async halt(): Promise<void> {}

  async reopen(): Promise<void> {
    // the client reconnects by itself; a read says whether etcd answers again
    await this.kv.range({ key: this.full(Buffer.from('S')) });
  }

  async close(): Promise<void> {
    this.client.close();
  }

  errnoOf(err: Error): number {
    if (err instanceof FsError) return err.errno;
    return /database space exceeded|NOSPACE/i.test(err.message) ? E.ENOSPC : E.EIO;
  }
}

/** Transactions grouped into commits within the limits, in order, none split. */
export function pack(transactions: BatchOp[][]): BatchOp[][] {
  const commits: BatchOp[][] = [];
  let current: BatchOp[] = [];
  let bytes = 0;
  for (const tx of transactions) {
    const txBytes = tx.reduce((sum, op) => sum + op.key.length + (op.type === 'put' ? op.value.length : 0), 0);
    if (current.length > 0 && (current.length + tx.length > TXN_OPS_MAX || bytes + txBytes > TXN_BYTES_MAX)) {
      commits.push(current);
      current = [];
      bytes = 0;
    }
    current = current.length === 0 ? [...tx] : current.concat(tx);
    bytes += txBytes;
  }
  if (current.length > 0) commits.push(current);
  return commits;
}
