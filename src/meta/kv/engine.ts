// The metadata store's engine: an ordered map of byte keys to byte values, read
// by key or by range, written by batches of transactions that each apply
// atomically and in order. The store (../store.ts) keeps the namespace logic,
// the cache and the batching; an engine only keeps bytes. Two engines: level
// (embedded, on the root node's disk) and etcd (replicated, see etcd.ts).

export type BatchOp = { type: 'put'; key: Buffer; value: Buffer } | { type: 'del'; key: Buffer };

export interface KeyRange {
  gte: Buffer;
  lt: Buffer;
  /** Most entries to give (absent: all). */
  limit?: number;
}

export interface KvEngine {
  /** For messages: where the records are ("the root meta-file DIR/meta", "etcd at ..."). */
  readonly description: string;
  get(key: Buffer): Promise<Buffer | undefined>;
  /** Entries in key order. */
  range(range: KeyRange): AsyncIterable<[Buffer, Buffer]>;
  /** Writes transactions, each atomically, in order; a failure may leave a
   *  prefix of them written, never part of one. sync: durable before return
   *  (etcd's commits always are). */
  write(transactions: BatchOp[][], sync: boolean): Promise<void>;
  /** Stops after a failed write, until reopen (level refuses every write after a failed one). */
  halt(): Promise<void>;
  /** Opens again after a failure. */
  reopen(): Promise<void>;
  close(): Promise<void>;
  /** The errno a failed write or read stands for (ENOSPC for a full disk or quota, else EIO). */
  errnoOf(err: Error): number;
  /** Keeps calls' marks ("Q" records, see ../replay.ts), expiring them itself. */
  readonly marksRequests?: boolean;
  /** How long a write may wait for more transactions to carry (absent: none). */
  readonly gatherMs?: number;
}
