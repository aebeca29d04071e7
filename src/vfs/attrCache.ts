// Attributes this node may answer the kernel with by itself: those the metadata
// service granted it (see src/meta/coherence.ts), until the grant expires or the
// service calls back. The kernel forgets attributes after every write to a file
// (its size and times are no longer its own), and asks again at the next stat:
// without this, that stat costs a round trip to the root from any other node.
import { RecentMap } from '../common/recentMap.js';
import type { Attr } from '../rpc/messages.js';

/** Inodes remembered; the oldest are forgotten first. */
const INODES_MAX = 100_000;

export class AttrCache {
  private readonly entries = new RecentMap<number, { attr: Attr; untilMs: number; noXattrs: boolean }>(INODES_MAX);
  /** Told of every grant of attributes (what depends on their coverage follows it). */
  onGranted: ((ino: number, cacheMs: number) => void) | null = null;

  /** The attributes and how long they stay valid (ms), if they are. */
  get(ino: number): { attr: Attr; remainingMs: number; noXattrs: boolean } | null {
    const entry = this.entries.get(ino);
    if (!entry) return null;
    const remainingMs = entry.untilMs - Date.now();
    if (remainingMs <= 0) {
      this.entries.delete(ino);
      return null;
    }
    return { attr: entry.attr, remainingMs, noXattrs: entry.noXattrs };
  }

  /** noXattrs: the service said the inode has no extended attributes (any
   *  change of them changes the inode, and so ends the grant). */
  put(attr: Attr, cacheMs: number, noXattrs = false): void {
    this.onGranted?.(attr.ino, cacheMs);
    if (cacheMs <= 0) {
      this.entries.delete(attr.ino);
      return;
    }
    this.entries.set(attr.ino, { attr, untilMs: Date.now() + cacheMs, noXattrs });
  }

  /** Whether the inode is granted and known to have no extended attributes. */
  hasNoXattrs(ino: number): boolean {
    return this.get(ino)?.noXattrs ?? false;
  }

  drop(ino: number): void {
    this.entries.delete(ino);
  }

  clear(): void {
    this.entries.clear();
  }
}
