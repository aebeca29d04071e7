// Inodes whose last link went (or whose last known open closed), kept a moment
// before they are freed: a node whose kernel found the name just before it went
// may send its open after the unlink's callbacks were answered (a reader of a
// file replaced by rename, or its walk again after ESTALE: see
// src/vfs/staleNames.ts). On one machine that open succeeds, with the unlinked
// file; here too, if it comes within the grace. The frees that fall due
// together go in one transaction: a transaction each made removes from another
// node 40% slower (measured).
import assert from 'node:assert';
import { log } from '../common/log.js';

/** How long an unlinked inode is kept for opens on their way. */
export const UNLINKED_GRACE_MS = 1000;
/** Inodes kept so at most: past it they are freed at once (the opens on their way then fail with ESTALE). */
const KEPT_MAX = 65_536;
/** How often the frees that fell due are made. */
const SWEEP_EVERY_MS = 250;

export class GracedFrees {
  private readonly due: { ino: number; atMs: number }[] = [];
  private timer: NodeJS.Timeout | null = null;

  /** free: frees those of the inodes still unlinked and not open, in one transaction. */
  constructor(private readonly free: (inos: number[]) => Promise<void>) {}

  /** Frees ino after the grace; false if too many are kept already (free it now). */
  keep(ino: number): boolean {
    if (this.due.length >= KEPT_MAX) return false;
    this.due.push({ ino, atMs: Date.now() + UNLINKED_GRACE_MS });
    this.timer ??= setTimeout(() => this.sweep(), SWEEP_EVERY_MS).unref();
    return true;
  }

  private sweep(): void {
    this.timer = null;
    const nowMs = Date.now();
    let count = 0;
    while (count < this.due.length && this.due[count].atMs <= nowMs) count++;
    const inos = this.due.splice(0, count).map((entry) => entry.ino);
    assert(this.due.every((entry) => entry.atMs > nowMs));
    if (this.due.length > 0) this.timer = setTimeout(() => this.sweep(), SWEEP_EVERY_MS).unref();
    // (a failed write is made again at the next start: the inodes stay listed as unlinked)
    if (inos.length > 0) this.free(inos).catch((err: Error) => log.debug(`freeing ${inos.length} unlinked inodes: ${err.message}`));
  }
}
