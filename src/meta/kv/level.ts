// The embedded engine: a level database on the root node's disk.
import { Level } from 'level';
import { E } from '../../common/errno.js';
import type { BatchOp, KeyRange, KvEngine } from './engine.js';

export class LevelEngine implements KvEngine {
  readonly description: string;

  private constructor(private readonly db: Level<Buffer, Buffer>, location: string) {
    this.description = `the root meta-file ${location}`;
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

  range(range: KeyRange): AsyncIterable<[Buffer, Buffer]> {
    return this.db.iterator({ gte: range.gte, lt: range.lt, limit: range.limit ?? -1 });
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
    await this.db.close().catch(() => {});
  }

  /** ENOSPC if level failed for want of space, else EIO. */
  errnoOf(err: Error): number {
    const text = `${err.message} ${String((err as Error & { cause?: unknown }).cause ?? '')}`;
    return /no space/i.test(text) ? E.ENOSPC : E.EIO;
  }
}
