// The last closes of files on this node, told to the metadata service in
// batches rather than one call each: nobody waits for them but a new open of
// the same inode on this node (which must come after its close), and that one
// sends the batch at once.
import { log } from '../common/log.js';
import type { MetaClient } from '../meta/client.js';

/** How long a close may wait for others to go with it, and how many go at most. */
const CLOSE_BATCH_MS = 5;
const CLOSE_BATCH_MAX = 256;

export class Closer {
  private pending: number[] = [];
  private sent: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  /** The batch each inode waiting or in flight goes with. */
  private readonly batches = new Map<number, Promise<void>>();
  private next: { promise: Promise<void>; resolve: () => void } | null = null;

  constructor(private readonly meta: MetaClient, private readonly nodeId: number) {}

  /** Resolves once the service heard of the close (failures are logged: the
   *  node tells what it holds open at its next registration anyway). */
  close(ino: number): Promise<void> {
    if (!this.next) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.next = { promise, resolve };
    }
    this.pending.push(ino);
    const batch = this.next.promise;
    this.batches.set(ino, batch);
    void batch.finally(() => {
      if (this.batches.get(ino) === batch) this.batches.delete(ino);
    });
    if (this.pending.length >= CLOSE_BATCH_MAX) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), CLOSE_BATCH_MS);
    return batch;
  }

  /** Resolves once a close of ino on its way reached the service; false if none was. */
  async closed(ino: number): Promise<boolean> {
    const batch = this.batches.get(ino);
    if (!batch) return false;
    if (this.pending.includes(ino)) this.flush();
    await batch;
    return true;
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const inos = this.pending;
    const batch = this.next;
    this.pending = [];
    this.next = null;
    if (!batch || inos.length === 0) return;
    // in order: a close never overtakes the one before it
    this.sent = this.sent.then(() => this.meta.close(inos, this.nodeId)).catch((err) => {
      log.warn(`closing ${inos.length} inode(s): ${(err as Error).message}`);
    }).finally(batch.resolve);
  }
}
