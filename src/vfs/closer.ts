// The opens and last closes of files on this node, told to the metadata service
// in batches rather than one call each. Nobody waits for a close but a new open
// of the same inode on this node (which must come after its close), and that
// one sends the batch at once. An open made by this node alone (see
// ContentCache) is told the same way: until it is, the node's grant of the
// file's attributes covers it (the service calls the node back before any
// change, and keeps an unlinked file a grant holder may have open until the
// node answered). An open and its close in one batch cancel out: a small file
// read and closed within the batch's few milliseconds costs no call at all.
import { log } from '../common/log.js';
import { RecentMap } from '../common/recentMap.js';
import type { MetaClient } from '../meta/client.js';

/** How long a close may wait for others to go with it, and how many go at most. */
const CLOSE_BATCH_MS = 5;
const CLOSE_BATCH_MAX = 256;
/** Inodes whose last close sent is remembered (an open in flight longer than
 *  this many closes takes its close as later: told again, harmless). */
const EPOCHS_MAX = 65_536;

export class Closer {
  private pending: number[] = [];
  private readonly opens = new Set<number>();
  private readonly opensSent = new Set<number>();
  private readonly closesSent = new Map<number, number>();
  private readonly epochs = new RecentMap<number, number>(EPOCHS_MAX);
  private sent: Promise<void> = Promise.resolve();
  private timer: NodeJS.Timeout | null = null;
  /** The batch each inode waiting or in flight goes with. */
  private readonly batches = new Map<number, Promise<void>>();
  private next: { promise: Promise<void>; resolve: () => void } | null = null;
  private closesCounted = 0;

  constructor(private readonly meta: MetaClient, private readonly nodeId: number) {}

  /** Resolves once the service heard of the close (failures are logged: the
   *  node tells what it holds open at its next registration anyway). */
  close(ino: number): Promise<void> {
    // opened and closed before the service heard of either
    if (this.opens.delete(ino)) return Promise.resolve();
    this.pending.push(ino);
    const batch = this.batch();
    this.batches.set(ino, batch);
    void batch.finally(() => {
      if (this.batches.get(ino) === batch) this.batches.delete(ino);
    });
    return batch;
  }

  /** This node holds the inode open again. A close of it still waiting here
   *  is dropped (the service still counts the open it was to end); after one
   *  on its way, which may reach the service after the open that made this
   *  handle, the open is told again. untold: the service never heard of this
   *  open (made without a call): it goes with the next batch. */
  opened(ino: number, untold: boolean, since = this.epoch(ino)): void {
    const waiting = this.pending.indexOf(ino);
    if (waiting >= 0) {
      this.pending.splice(waiting, 1);
      this.batches.delete(ino);
    }
    if ((untold && waiting < 0) || this.closesSent.has(ino) || this.epoch(ino) > since) {
      this.opens.add(ino);
      this.batch();
    }
  }

  /** When the last close of ino was sent, counted in closes sent (as far as
   *  remembered): an open or create asked of the service takes closesSoFar
   *  before, and a later close of the inode it opened is told again (see opened). */
  epoch(ino: number): number {
    return this.epochs.get(ino) ?? 0;
  }

  closesSoFar(): number {
    return this.closesCounted;
  }

  /** Opens the service has not counted yet: to send, or sent and not answered. */
  untoldCount(): number {
    return this.opens.size + this.opensSent.size;
  }

  untold(ino: number): boolean {
    return this.opens.has(ino) || this.opensSent.has(ino);
  }

  /** Sends the batch now; resolves once the service has it (and every batch before). */
  async tellNow(): Promise<void> {
    if (this.pending.length === 0 && this.opens.size === 0) return this.sent;
    const batch = this.batch();
    this.flush();
    await batch;
  }

  /** Resolves once a close of ino on its way reached the service; false if none was. */
  async closed(ino: number): Promise<boolean> {
    const batch = this.batches.get(ino);
    if (!batch) return false;
    if (this.pending.includes(ino)) this.flush();
    await batch;
    return true;
  }

  private batch(): Promise<void> {
    if (!this.next) {
      let resolve!: () => void;
      const promise = new Promise<void>((r) => (resolve = r));
      this.next = { promise, resolve };
    }
    const promise = this.next.promise;
    if (this.pending.length + this.opens.size >= CLOSE_BATCH_MAX) this.flush();
    else this.timer ??= setTimeout(() => this.flush(), CLOSE_BATCH_MS);
    return promise;
  }

  private flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const inos = this.pending;
    const opens = [...this.opens];
    const batch = this.next;
    this.pending = [];
    this.opens.clear();
    this.next = null;
    if (!batch) return;
    if (inos.length === 0 && opens.length === 0) {
      batch.resolve();
      return;
    }
    for (const ino of opens) this.opensSent.add(ino);
    for (const ino of inos) {
      this.closesSent.set(ino, (this.closesSent.get(ino) ?? 0) + 1);
      this.epochs.set(ino, ++this.closesCounted);
    }
    // in order: a close never overtakes the one before it
    this.sent = this.sent.then(() => this.meta.close(inos, this.nodeId, opens)).catch((err) => {
      log.warn(`telling ${opens.length} open(s) and ${inos.length} close(s): ${(err as Error).message}`);
    }).finally(() => {
      for (const ino of opens) this.opensSent.delete(ino);
      for (const ino of inos) {
        const count = this.closesSent.get(ino)! - 1;
        if (count > 0) this.closesSent.set(ino, count);
        else this.closesSent.delete(ino);
      }
      batch.resolve();
    });
  }
}
