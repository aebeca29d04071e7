// The embedded engine: a level database on the root node's disk.
import { Level } from 'level';
import { E } from '../../common/errno.js';
import { log } from '../../common/log.js';
import { PEER_BOUND_MS } from '../../common/limits.js';
import { KIND_REQUEST, markTimeMs } from '../records.js';
import type { BatchOp, KeyRange, KvEngine } from './engine.js';

/** How long calls' marks (see ../replay.ts) are kept: a node sends a call again
 *  once it reaches the restarted root, within PEER_BOUND_MS of the root going
 *  silent, or the call fails; far more, for a slow restart. */
const MARK_TTL_MS = Math.max(60_000, 10 * PEER_BOUND_MS);
const MARK_SWEEP_EVERY_MS = 30_000;
/** Marks forgotten per sweep, at most, and per level write. */
const MARKS_SWEPT_MAX = 200_000;
const MARKS_PER_DELETE = 1000;
/** Entries a range reads from level at once (it may give fewer: its byte bound). */
const RANGE_BATCH_ENTRIES = 1000;

export class LevelEngine implements KvEngine {
  readonly description: string;
  readonly marksRequests = true;
  private readonly sweeper: NodeJS.Timeout;
  private sweeping = false;

  private constructor(private readonly db: Level<Buffer, Buffer>, location: string) {
    this.description = `the root meta-file ${location}`;
    this.sweeper = setInterval(() => void this.forgetOldMarks(), MARK_SWEEP_EVERY_MS);
    this.sweeper.unref();
  }

  static async open(location: string): Promise<LevelEngine> {
    const db = new Level<Buffer, Buffer>(location, { keyEncoding: 'buffer', valueEncoding: 'buffer', createIfMissing: false });
    try {
      await db.open();
    } catch (err) {
      throw new Error(`cannot open the root meta-file ${location}: ${(err as Error).cause ?? (err as Error).message}`);
    }
    return new LevelEngine(db, location);
  }

  /** mkfs: a new database holding the given records, or an error if one exists. */
  static async create(location: string, ops: BatchOp[]): Promise<void> {
    const db = new Level<Buffer, Buffer>(location, { keyEncoding: 'buffer', valueEncoding: 'buffer', errorIfExists: true });
    await db.open();
    try {
      await db.batch(ops, { sync: true });
    } finally {
      await db.close();
    }
  }

  get(key: Buffer): Promise<Buffer | undefined> {
    return this.db.get(key);
  }

  /** Read in batches (nextv): the iterator's own async iteration costs ~10 us
   *  per entry (measured), a directory listing's main cost. */
  async *range(range: KeyRange): AsyncIterable<[Buffer, Buffer]> {
    const iterator = this.db.iterator({ gte: range.gte, lt: range.lt, limit: range.limit ?? -1 });
    try {
      for (;;) {
        const batch = await iterator.nextv(RANGE_BATCH_ENTRIES);
        if (batch.length === 0) return;
        yield* batch;
      }
    } finally {
      await iterator.close();
    }
  }

  /** One atomic level write for all the transactions. Keys and values are
   *  buffers already: classic-level's own batch (the hook abstract-level calls
   *  after cloning and checking every operation) takes them as they are. */
  write(transactions: BatchOp[][], sync: boolean): Promise<void> {
    const ops = transactions.length === 1 ? transactions[0] : transactions.flat();
    const direct = (this.db as unknown as { _batch?: (ops: BatchOp[], options: { sync: boolean }) => Promise<void> })._batch;
    return direct && this.db.status === 'open' ? direct.call(this.db, ops, { sync }) : this.db.batch(ops, { sync });
  }

  async halt(): Promise<void> {
    await this.db.close().catch(() => {});
  }

  async reopen(): Promise<void> {
    await this.db.close().catch(() => {});
    await this.db.open();
  }

  async close(): Promise<void> {
    clearInterval(this.sweeper);
    await this.db.close().catch(() => {});
  }

  /** Deletes the marks older than MARK_TTL_MS (etcd expires its own with a lease). */
  private async forgetOldMarks(): Promise<void> {
    if (this.sweeping || this.db.status !== 'open') return;
    this.sweeping = true;
    const beforeMs = Date.now() - MARK_TTL_MS;
    let old: BatchOp[] = [];
    let forgotten = 0;
    try {
      for await (const [key, value] of this.range({ gte: Buffer.from([KIND_REQUEST]), lt: Buffer.from([KIND_REQUEST + 1]) })) {
        if (markTimeMs(value) >= beforeMs) continue;
        old.push({ type: 'del', key });
        if (old.length === MARKS_PER_DELETE) {
          await this.db.batch(old);
          forgotten += old.length;
          old = [];
          if (forgotten >= MARKS_SWEPT_MAX) break;
        }
      }
      if (old.length > 0) await this.db.batch(old);
    } catch (err) {
      // closed meanwhile, or the disk is full: the next sweep tries again
      log.warn(`forgetting old calls' marks: ${(err as Error).message}`);
    } finally {
      this.sweeping = false;
    }
  }

  /** ENOSPC if level failed for want of space, else EIO. */
  errnoOf(err: Error): number {
    const text = `${err.message} ${String((err as Error & { cause?: unknown }).cause ?? '')}`;
    return /no space/i.test(text) ? E.ENOSPC : E.EIO;
  }
}
