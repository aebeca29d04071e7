// Space kept aside on the root node's disk for the metadata store: a file of
// META_RESERVE_BYTES, given back when level cannot write for want of space, so
// that level reopens and removals go on; meanwhile the service refuses what
// would take more space (see SPACE_TAKING_METHODS in service.ts). Once the disk
// has room again (removals free stripe objects), the reserve is taken back and
// everything is served again. Without it, one full disk stopped every call,
// ls and rm included: no space could be freed through kDFS.
import { closeSync, fsyncSync, openSync, rmSync, statSync, statfsSync, writeSync } from 'node:fs';
import path from 'node:path';
import { log } from '../common/log.js';

export const META_RESERVE_BYTES = 8 * 1024 * 1024;
/** Free space, beyond the reserve itself, needed to take it back. */
const RETAKE_MARGIN_BYTES = 4 * 1024 * 1024;
const WRITE_CHUNK_BYTES = 1024 * 1024;
/** How often a low-space store checks whether the disk has room again. */
const CHECK_INTERVAL_MS = 1000;

export class SpaceReserve {
  private readonly file: string;
  /** The reserve was given back: only what frees space is served. */
  low = false;
  private timer: NodeJS.Timeout | null = null;

  /** location: the level directory; the reserve sits beside it (nodePaths().metaReserve). */
  constructor(location: string) {
    this.file = `${location}.reserve`;
  }

  /** Takes the reserve if it is not there (at start: a disk already full leaves
   *  the store low; one that cannot hold the file for another reason does not). */
  take(): void {
    try {
      const stat = statSync(this.file);
      if (stat.size === META_RESERVE_BYTES && stat.blocks * 512 >= META_RESERVE_BYTES) return;
    } catch {
      // not there yet
    }
    const written = this.write();
    if (written === 'full') this.enterLow();
    else if (written !== 'ok') log.error(`cannot keep a metadata reserve at ${this.file}: ${written.message}`);
  }

  /** Level failed for want of space: gives the reserve back. */
  giveBack(): void {
    if (this.low) return;
    rmSync(this.file, { force: true });
    log.warn(`the root node's disk is full: metadata reserve given back; only removals are served until space is freed`);
    this.enterLow();
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private enterLow(): void {
    this.low = true;
    this.timer ??= setInterval(() => this.retake(), CHECK_INTERVAL_MS);
    this.timer.unref();
  }

  private retake(): void {
    const stat = statfsSync(path.dirname(this.file));
    if (stat.bavail * stat.bsize < META_RESERVE_BYTES + RETAKE_MARGIN_BYTES) return;
    if (this.write() !== 'ok') return;
    this.low = false;
    this.close();
    log.info(`the root node's disk has room again: metadata reserve taken back`);
  }

  /** Writes the whole reserve (real blocks, not a hole): 'full' if the disk has
   *  no room for it, the error if it failed otherwise. */
  private write(): 'ok' | 'full' | Error {
    let fd: number | null = null;
    try {
      fd = openSync(this.file, 'w', 0o600);
      const chunk = Buffer.alloc(WRITE_CHUNK_BYTES);
      for (let written = 0; written < META_RESERVE_BYTES; written += chunk.length) writeSync(fd, chunk);
      fsyncSync(fd);
      return 'ok';
    } catch (err) {
      rmSync(this.file, { force: true });
      return (err as NodeJS.ErrnoException).code === 'ENOSPC' ? 'full' : (err as Error);
    } finally {
      if (fd !== null) closeSync(fd);
    }
  }
}
