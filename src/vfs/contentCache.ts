// What this node knows of files it closed, or listed (statahead.ts): their layout and, for a small file,
// its whole content (kept in its inode). With it, and attributes the metadata
// service granted, the next open of the file on this node needs no call: the
// service calls this node back before another node changes the file, for as
// long as a grant covers it. An entry is kept only while grants follow each
// other without a gap (a change made in a gap would not have been told), and
// goes at the first change made elsewhere.
import { RecentMap } from '../common/recentMap.js';
import type { Layout } from '../rpc/messages.js';

/** Entries and bytes of content kept, at most; the oldest go first. */
const ENTRIES_MAX = 65_536;
const BYTES_MAX = 32 * 1024 * 1024;

export interface Content { layout: Layout; inlined: boolean; inlineData: Buffer }

interface Entry extends Content { untilMs: number }

export class ContentCache {
  private readonly entries = new RecentMap<number, Entry>();
  private bytes = 0;

  /** The file as this node left it at its last close, covered by a grant for coverMs. */
  put(ino: number, content: Content, coverMs: number): void {
    this.drop(ino);
    if (coverMs <= 0) return;
    this.entries.set(ino, { ...content, untilMs: Date.now() + coverMs });
    this.bytes += content.inlineData.length;
    while (this.entries.size > ENTRIES_MAX || this.bytes > BYTES_MAX) this.bytes -= this.entries.removeOldest()![1].inlineData.length;
  }

  /** The service granted the file's attributes again: coverage goes on if it had not lapsed. */
  granted(ino: number, cacheMs: number): void {
    const entry = this.entries.get(ino);
    if (!entry) return;
    const now = Date.now();
    if (entry.untilMs <= now || cacheMs <= 0) this.drop(ino);
    else entry.untilMs = Math.max(entry.untilMs, now + cacheMs);
  }

  get(ino: number): Content | null {
    const entry = this.entries.get(ino);
    if (!entry) return null;
    if (entry.untilMs <= Date.now()) {
      this.drop(ino);
      return null;
    }
    return entry;
  }

  drop(ino: number): void {
    const entry = this.entries.get(ino);
    if (!entry) return;
    this.entries.delete(ino);
    this.bytes -= entry.inlineData.length;
  }

  clear(): void {
    this.entries.clear();
    this.bytes = 0;
  }
}
