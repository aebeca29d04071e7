// Statahead: when lookups keep missing in one directory (a stat of each file,
// `ls -l`, a walk of a tree this node has not seen), the directory is listed
// with its entries' attributes, granted, in pages of one call each, instead of
// a round trip to the metadata service per name (as Lustre's statahead, or NFS's
// READDIRPLUS). The listing fills the attribute cache, and the layouts and small
// files' content that let the files open without a call (contentCache.ts);
// once complete and unchanged throughout, it makes the directory known
// (dirKnowledge.ts).
import { RecentMap } from '../common/recentMap.js';
import type { MetaClient } from '../meta/client.js';
import type { AttrCache } from './attrCache.js';
import type { ContentCache } from './contentCache.js';
import { NAMES_MAX, type DirKnowledge } from './dirKnowledge.js';

/** Lookups that need a call in one directory, within MISS_WINDOW_MS, before it is listed. */
const MISSES_BEFORE_LISTING = 2;
const MISS_WINDOW_MS = 1000;
/** A directory is listed again no sooner than this: a directory changed
 *  elsewhere all the time would be listed for nothing. */
const RELIST_MS = 2000;
/** ...and no sooner than this one of more than NAMES_MAX names. */
const TOO_LARGE_RELIST_MS = 60_000;
/** Listings in progress at once; past it, lookups go one by one. */
const LISTINGS_MAX = 4;
/** Directories whose misses are counted. */
const DIRS_TRACKED_MAX = 4096;
const EMPTY = Buffer.alloc(0);

interface Misses { count: number; firstMs: number; listedMs: number }

export class Statahead {
  private readonly misses = new RecentMap<number, Misses>(DIRS_TRACKED_MAX);
  /** Listings in progress: each resolves once its first page is in. */
  private readonly listings = new Map<number, Promise<void>>();

  constructor(private readonly meta: MetaClient, private readonly known: DirKnowledge, private readonly attrs: AttrCache, private readonly contents: ContentCache) {}

  /** A lookup in dir needs a call: true once the first page of a listing of
   *  dir is in (ask what is known again), false if dir is not being listed.
   *  The lookup does not wait for the rest: a large directory takes many pages. */
  async missed(dir: number): Promise<boolean> {
    const listing = this.listings.get(dir);
    if (listing) {
      await listing;
      return true;
    }
    const nowMs = Date.now();
    let misses = this.misses.get(dir);
    if (!misses || nowMs - misses.firstMs > MISS_WINDOW_MS) {
      misses = { count: 0, firstMs: nowMs, listedMs: misses?.listedMs ?? 0 };
      this.misses.set(dir, misses);
    }
    misses.count++;
    if (misses.count < MISSES_BEFORE_LISTING || nowMs - misses.listedMs < RELIST_MS || this.listings.size >= LISTINGS_MAX) return false;
    misses.listedMs = nowMs;
    misses.count = 0;
    const firstPage = new Promise<void>((resolve) => {
      void this.list(dir, resolve).then((tooLarge) => {
        // its first page again would bring the same names: not before long
        const tracked = this.misses.get(dir);
        if (tooLarge && tracked) tracked.listedMs = Date.now() + TOO_LARGE_RELIST_MS;
      }).finally(() => {
        resolve();
        this.listings.delete(dir);
      });
    });
    this.listings.set(dir, firstPage);
    await firstPage;
    return true;
  }

  /** Lists dir page by page. Each page is taken in as it comes, before any
   *  callback that follows it is handled (see SessionClient), so a callback
   *  always drops what it names. True if dir is too large to be known whole. */
  private async list(dir: number, firstPageIn: () => void): Promise<boolean> {
    this.known.beginFill(dir);
    let untilMs = Infinity;
    let after = '';
    try {
      for (;;) {
        const page = await this.meta.readDirPlus(dir, after);
        const cacheMs = page.cacheMs ?? 0;
        // changed while listed: the lookups go on one by one
        if (cacheMs <= 0) return false;
        untilMs = Math.min(untilMs, Date.now() + cacheMs);
        for (const entry of page.entries) {
          if (!entry.attr) continue;
          this.attrs.put(entry.attr, cacheMs, entry.noXattrs === true);
          // what an open needs: the file opens without a call while the grant holds
          if (entry.layout) this.contents.put(entry.ino, { layout: entry.layout, inlined: entry.inlined ?? false, inlineData: entry.inlineData ?? EMPTY }, cacheMs);
        }
        // too large to know whole: what the page brought is kept, no more is asked
        if ((page.names ?? 0) > NAMES_MAX) return true;
        if (!this.known.fillPage(dir, page.parent, page.entries)) return false;
        firstPageIn();
        if (!page.more || page.entries.length === 0) {
          this.known.endFill(dir, untilMs);
          return false;
        }
        after = page.entries[page.entries.length - 1].name;
      }
    } catch {
      // (the directory is gone, the service is away): the lookup itself will say
      return false;
    } finally {
      this.known.abandonFill(dir);
    }
  }
}
