// Directories whose every entry this node knows, while the metadata service
// grants it their entries (it calls the node back before another node changes
// one): a name they lack is answered "no such entry" without a call (the lookup
// the kernel makes before every creation, which otherwise costs a round trip to
// the root from any other node), and a name they have gives its inode. A
// directory is known from its creation by this node, or from a listing of it
// (statahead.ts); the knowledge holds while grants follow each other without a
// gap, and goes at the first change made elsewhere. A directory known, whose
// parent is known too, is also listed without a call (readdir).
import { S_IFDIR } from '../common/mode.js';
import type { DirEntry } from '../rpc/messages.js';

/** Directories known, and names in one, at most: past these, knowledge is dropped. */
const DIRS_MAX = 1024;
export const NAMES_MAX = 65_536;

/** A name's inode and file type in one number: ino * TYPES + (mode >>> 12). */
const TYPES = 16;
const entryOf = (ino: number, mode: number): number => ino * TYPES + ((mode >>> 12) & (TYPES - 1));


/** parent: the directory's "..", 0 if not known (then it is not listed here),
 *  until parentUntilMs: the grant of the directory's own attributes, which calls
 *  this node back when another node moves it (the names' grant is renewed by
 *  lookups alone, which do not grant the directory's attributes). */
interface Known { names: Map<string, number>; untilMs: number; parent: number; parentUntilMs: number }

export class DirKnowledge {
  /** The inode of an entry as `entry` gives it. */
  static inoOf(entry: number): number {
    return Math.floor(entry / TYPES);
  }

  private readonly dirs = new Map<number, Known>();
  /** Directories being listed: the names gathered so far (a change drops them). */
  private readonly filling = new Map<number, { names: Map<string, number>; parent: number }>();

  /** This node made the directory, empty, in parent; its entries are granted for cacheMs. */
  created(dir: number, parent: number, cacheMs: number): void {
    const untilMs = Date.now() + cacheMs;
    if (cacheMs > 0) this.install(dir, { names: new Map(), untilMs, parent, parentUntilMs: untilMs });
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
    this.filling.set(dir, { names: new Map(), parent: 0 });
  }

  /** A page of the listing; false if the listing is no longer wanted (a change
   *  came meanwhile, or the directory is too large to keep). */
  fillPage(dir: number, parent: number, entries: { name: string; ino: number; mode: number }[]): boolean {
    const fill = this.filling.get(dir);
    if (!fill) return false;
    fill.parent = parent;
    for (const { name, ino, mode } of entries) fill.names.set(name, entryOf(ino, mode));
    if (fill.names.size <= NAMES_MAX) return true;
    this.filling.delete(dir);
    return false;
  }

  /** The listing reached its end: dir is known until untilMs (the first
   *  page's grant). */
  endFill(dir: number, untilMs: number): void {
    const fill = this.filling.get(dir);
    this.filling.delete(dir);
    if (fill && untilMs > Date.now()) this.install(dir, { names: fill.names, untilMs, parent: fill.parent, parentUntilMs: untilMs });
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
    const entry = this.entry(dir, name);
    return entry === null || entry === 0 ? entry : DirKnowledge.inoOf(entry);
  }

  /** The inode and file type under `name` (see lookup), to give to added. */
  entry(dir: number, name: string): number | null {
    const known = this.current(dir);
    if (!known) return this.filling.get(dir)?.names.get(name) ?? null;
    return known.names.get(name) ?? 0;
  }

  /** Every entry of dir, "." and ".." first, the names in the service's order
   *  (byte order): null unless dir and its parent are known. */
  list(dir: number): DirEntry[] | null {
    const known = this.current(dir);
    if (!known || known.parent === 0 || known.parentUntilMs <= Date.now()) return null;
    const entries: DirEntry[] = [{ name: '.', ino: dir, mode: S_IFDIR }, { name: '..', ino: known.parent, mode: S_IFDIR }];
    // each name's bytes made once, not at every comparison
    const sorted = [...known.names].map(([name, entry]) => ({ name, entry, bytes: Buffer.from(name) }));
    sorted.sort((a, b) => Buffer.compare(a.bytes, b.bytes));
    for (const { name, entry } of sorted) entries.push({ name, ino: DirKnowledge.inoOf(entry), mode: (entry % TYPES) << 12 });
    return entries;
  }

  private current(dir: number): Known | null {
    const known = this.dirs.get(dir);
    if (!known) return null;
    if (known.untilMs > Date.now()) return known;
    this.dirs.delete(dir);
    return null;
  }

  /** This node added a name (of inode ino, of type mode) or removed one. */
  added(dir: number, name: string, ino: number, mode: number): void {
    this.put(dir, name, entryOf(ino, mode));
  }

  /** added, with an entry as `entry` gave it (a rename by this node). */
  moved(dir: number, name: string, entry: number): void {
    this.put(dir, name, entry);
  }

  private put(dir: number, name: string, entry: number): void {
    this.filling.get(dir)?.names.set(name, entry);
    const known = this.dirs.get(dir);
    if (!known) return;
    known.names.set(name, entry);
    if (known.names.size > NAMES_MAX) this.dirs.delete(dir);
  }

  /** This node moved dir into parent. */
  reparented(dir: number, parent: number): void {
    const known = this.dirs.get(dir);
    if (known) known.parent = parent;
  }

  /** dir's attributes changed elsewhere (it may have been moved): its ".." is not known. */
  parentChanged(dir: number): void {
    const known = this.dirs.get(dir);
    if (known) known.parent = 0;
  }

  removed(dir: number, name: string): void {
    this.filling.get(dir)?.names.delete(name);
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
