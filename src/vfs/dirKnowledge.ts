// Directories whose every entry this node knows, while the metadata service
// grants it their entries (it calls the node back before another node changes
// one): a name they lack is answered "no such entry" without a call (the lookup
// the kernel makes before every creation, which otherwise costs a round trip to
// the root from any other node), and a name they have gives its inode. A
// directory is known from its creation by this node, or from a listing of it
// (statahead.ts); the knowledge holds while grants follow each other without a
// gap, and goes at the first change made elsewhere.

/** Directories known, and names in one, at most: past these, knowledge is dropped. */
const DIRS_MAX = 1024;
export const NAMES_MAX = 65_536;

interface Known { names: Map<string, number>; untilMs: number }

export class DirKnowledge {
  private readonly dirs = new Map<number, Known>();
  /** Directories being listed: the names gathered so far (a change drops them). */
  private readonly filling = new Map<number, Map<string, number>>();

  /** This node made the directory, empty; its entries are granted for cacheMs. */
  created(dir: number, cacheMs: number): void {
    if (cacheMs > 0) this.install(dir, { names: new Map(), untilMs: Date.now() + cacheMs });
  }

  /** dir is known as `known`, the most recent of at most DIRS_MAX. */
  private install(dir: number, known: Known): void {
    this.dirs.delete(dir);
    this.dirs.set(dir, known);
    if (this.dirs.size > DIRS_MAX) this.dirs.delete(this.dirs.keys().next().value as number);
  }

  /** A listing of dir begins (at most DIRS_MAX at once). */
  beginFill(dir: number): void {
    if (this.filling.size >= DIRS_MAX) return;
    this.filling.set(dir, new Map());
  }

  /** A page of the listing; false if the listing is no longer wanted (a change
   *  came meanwhile, or the directory is too large to keep). */
  fillPage(dir: number, entries: { name: string; ino: number }[]): boolean {
    const names = this.filling.get(dir);
    if (!names) return false;
    for (const { name, ino } of entries) names.set(name, ino);
    if (names.size <= NAMES_MAX) return true;
    this.filling.delete(dir);
    return false;
  }

  /** The listing reached its end: dir is known until untilMs (the first
   *  page's grant). */
  endFill(dir: number, untilMs: number): void {
    const names = this.filling.get(dir);
    this.filling.delete(dir);
    if (names && untilMs > Date.now()) this.install(dir, { names, untilMs });
  }

  abandonFill(dir: number): void {
    this.filling.delete(dir);
  }

  /** The entries of dir are granted again for cacheMs: the knowledge goes on if
   *  the last grant had not expired (no change could be missed in between). */
  granted(dir: number, cacheMs: number): void {
    const known = this.dirs.get(dir);
    if (!known) return;
    const now = Date.now();
    if (known.untilMs <= now || cacheMs <= 0) this.dirs.delete(dir);
    else known.untilMs = Math.max(known.untilMs, now + cacheMs);
  }

  /** What the directory has under `name`: its inode, 0 if nothing, or null if
   *  the directory is not known (while it is listed, only the names listed so
   *  far are). */
  lookup(dir: number, name: string): number | null {
    const known = this.dirs.get(dir);
    if (!known) return this.filling.get(dir)?.get(name) ?? null;
    if (known.untilMs <= Date.now()) {
      this.dirs.delete(dir);
      return null;
    }
    return known.names.get(name) ?? 0;
  }

  /** This node added a name (of inode ino) or removed one. */
  added(dir: number, name: string, ino: number): void {
    this.filling.get(dir)?.set(name, ino);
    const known = this.dirs.get(dir);
    if (!known) return;
    known.names.set(name, ino);
    if (known.names.size > NAMES_MAX) this.dirs.delete(dir);
  }

  removed(dir: number, name: string): void {
    this.filling.get(dir)?.delete(name);
    this.dirs.get(dir)?.names.delete(name);
  }

  /** Another node changed the directory (or this node is unsure of it). */
  forget(dir: number): void {
    this.dirs.delete(dir);
    this.filling.delete(dir);
  }

  clear(): void {
    this.dirs.clear();
    this.filling.clear();
  }
}
