// The scrub the metadata service runs by itself: every copy of every file read
// at a bounded rate (scrub_rate, MiB/s), one pass every scrub_interval, so that
// a block gone bad on a disk is found before the other copies are lost too,
// not only when someone reads it. What it finds is marked stale and repaired
// (see repair.ts); the agents count the checksum mismatches.
import { log } from '../common/log.js';
import { isReg } from '../common/mode.js';
import type { MetaStore } from '../meta/store.js';
import type { Inode } from '../rpc/messages.js';
import type { AgentSource } from './objects.js';
import { scrubFile } from './scrub.js';

export const SCRUB_RATE_DEFAULT_BYTES_PER_S = 8 * 1024 * 1024;
export const SCRUB_INTERVAL_DEFAULT_MS = 24 * 3600 * 1000;
/** The first pass begins this long after the service starts, at most (or one interval, if shorter). */
const SCRUB_FIRST_DELAY_MS = 10 * 60 * 1000;
/** Inodes read from the store at a time. */
const SCRUB_BATCH_INODES = 256;

export interface ScrubSettings { bytesPerS: number; intervalMs: number }

export class BackgroundScrub {
  private timer: NodeJS.Timeout | null = null;
  private pass: Promise<void> | null = null;
  private stopped = false;
  /** Passes completed since the service started. */
  passes = 0;

  constructor(
    private readonly store: MetaStore,
    private readonly agents: AgentSource,
    /** Whether a node holds the file open: it is left for the next pass. */
    private readonly isOpen: (ino: number) => boolean,
    /** Whether a node answers now: copies on others are not read. */
    private readonly isLive: (nodeId: number) => boolean,
    /** Copies found bad: to mark stale (and have repaired). */
    private readonly reportBad: (ino: number, slots: number[]) => Promise<void>,
    private readonly settings: ScrubSettings,
  ) {}

  start(): void {
    if (this.settings.bytesPerS <= 0) return;
    this.schedule(Math.min(SCRUB_FIRST_DELAY_MS, this.settings.intervalMs));
  }

  /** Stops; resolves once the file being scrubbed is done. */
  async close(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    await this.pass;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      const startedMs = Date.now();
      this.pass = this.runPass()
        .catch((err) => log.warn(`background scrub: ${(err as Error).message}`))
        .finally(() => {
          this.pass = null;
          this.schedule(Math.max(0, startedMs + this.settings.intervalMs - Date.now()));
        });
    }, delayMs);
    this.timer.unref();
  }

  private async runPass(): Promise<void> {
    const startedMs = Date.now();
    let bytes = 0;
    // sleeps whenever the pass is ahead of the rate
    const throttle = async (read: number) => {
      if (this.stopped) throw new Error('the service is stopping');
      bytes += read;
      const aheadMs = (bytes / this.settings.bytesPerS) * 1000 - (Date.now() - startedMs);
      if (aheadMs > 0) await new Promise((resolve) => setTimeout(resolve, aheadMs));
    };
    let files = 0;
    // in batches: an iterator open for a whole pass would hold the store's snapshot for hours
    for (let fromIno = 0; ;) {
      const batch = await this.store.inodesFrom(fromIno, SCRUB_BATCH_INODES);
      if (batch.length === 0) break;
      for (const inode of batch) {
        if (this.stopped) return;
        if (!this.scrubbable(inode)) continue;
        await this.scrubOne(inode, throttle);
        files++;
      }
      fromIno = batch[batch.length - 1].attr.ino + 1;
    }
    this.passes++;
    log.info(`background scrub: ${files} files, ${Math.round(bytes / 2 ** 20)} MiB checked in ${Math.round((Date.now() - startedMs) / 1000)} s`);
  }

  private scrubbable(inode: Inode): boolean {
    return isReg(inode.attr.mode) && !inode.inlined && inode.layout !== null && inode.layout.nodes.length > 0 && !this.isOpen(inode.attr.ino);
  }

  /** Scrubs one file; copies found bad are marked stale (those that only differ,
   *  if the file did not change meanwhile: a write may have been half done). */
  private async scrubOne(inode: Inode, throttle: (bytes: number) => Promise<void>): Promise<void> {
    const { ino } = inode.attr;
    const live: AgentSource = {
      get: async (nodeId) => {
        if (!this.isLive(nodeId)) throw new Error(`node ${nodeId} is not live`);
        return this.agents.get(nodeId);
      },
    };
    const verdicts = await scrubFile(live, ino, inode.layout!, inode.attr.size, throttle);
    const corrupt = verdicts.flatMap((v) => v.copies.filter((c) => c.state === 'corrupt').map((c) => c.slot));
    const layoutStale = new Set(inode.layout!.stale ?? []);
    let differing = verdicts.flatMap((v) => v.copies.filter((c) => c.state === 'stale' && !layoutStale.has(c.slot)).map((c) => c.slot));
    if (corrupt.length === 0 && differing.length === 0) return;
    const now = await this.store.run((tx) => tx.inode(ino), false);
    // the slots name the copies of the layout scrubbed: nothing is marked if it changed
    if (!now?.layout || JSON.stringify(now.layout) !== JSON.stringify(inode.layout)) return;
    const unchanged = !this.isOpen(ino) && now.attr.size === inode.attr.size
      && now.attr.ctime?.sec === inode.attr.ctime?.sec && now.attr.ctime?.nsec === inode.attr.ctime?.nsec;
    if (!unchanged) differing = [];
    const slots = [...corrupt, ...differing];
    if (slots.length === 0) return;
    log.warn(`background scrub: inode ${ino}: ${corrupt.length} corrupt and ${differing.length} differing copies; repairing them`);
    await this.reportBad(ino, slots);
  }
}
