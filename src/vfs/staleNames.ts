// Names another node removed or replaced that this node's kernel may still
// hold. The kernel drops an entry only once it holds the directory's lock,
// which a request of this node there may hold while the service answers the
// other node without waiting for this kernel (two removals at once: see
// Coherence.callBack). Until then a path walk can still end at the old inode
// through the old name, and O_TRUNC would empty the renamed file. So the first
// open of that inode is turned away with ESTALE, on which the kernel walks the
// path again looking every name up (LOOKUP_REVAL): through the old name the
// open then fails (or creates a new file), through another name it goes on.
//
// The mark outlives the kernel's drop by STALE_OPEN_GRACE_MS: a walk that found
// the old name just before the drop sends its FUSE_OPEN after it (measured: an
// open 3 ms after the drop cleared a mark that ended with it).
import { E, FsError } from '../common/errno.js';
import { RecentMap } from '../common/recentMap.js';

/** Names the kernel was told of, remembered at most (the oldest go first). */
const TOLD_NAMES_MAX = 65_536;
/** Inodes marked at most; past it the oldest mark goes (an open then goes through, as before marks). */
const MARKS_MAX = 4096;
/** How long after the kernel dropped the name an open of its inode is still turned away (once). */
export const STALE_OPEN_GRACE_MS = 1000;

/** What a request turned away is answered with: the kernel walks the path again. */
export const staleName = (ino: number): FsError => new FsError(E.ESTALE, `inode ${ino}: reached through a name removed elsewhere, maybe`);

const keyOf = (parent: number, name: string): string => `${parent}/${name}`;

interface Mark {
  /** Removed names of the inode the kernel has yet to drop. */
  drops: number;
  /** When the mark ends, once drops is 0. */
  untilMs: number;
  turnedAway: boolean;
}

export class StaleNames {
  private readonly told = new RecentMap<string, number>(TOLD_NAMES_MAX);
  private readonly marks = new RecentMap<number, Mark>(MARKS_MAX);

  constructor(private readonly nowMs: () => number = Date.now) {}

  /** The kernel was told that name in parent is ino. */
  tell(parent: number, name: string, ino: number): void {
    this.told.set(keyOf(parent, name), ino);
  }

  /** This node removed or moved the name itself (its kernel follows). */
  forget(parent: number, name: string): void {
    this.told.delete(keyOf(parent, name));
  }

  /** Another node removed or replaced name in parent; the returned function is
   *  called once the kernel dropped it. */
  removed(parent: number, name: string): () => void {
    const key = keyOf(parent, name);
    const ino = this.told.get(key);
    if (ino === undefined) return () => {};
    this.told.delete(key);
    let mark = this.marks.get(ino);
    if (!mark || this.ended(mark)) this.marks.set(ino, (mark = { drops: 0, untilMs: Infinity, turnedAway: false }));
    mark.drops++;
    mark.untilMs = Infinity;
    mark.turnedAway = false;
    const marked = mark;
    let dropped = false;
    return () => {
      if (dropped) return;
      dropped = true;
      if (--marked.drops === 0) marked.untilMs = this.nowMs() + STALE_OPEN_GRACE_MS;
    };
  }

  /** Whether to turn an open of ino away: once while a mark of it lasts. */
  turnAway(ino: number): boolean {
    const mark = this.marks.get(ino);
    if (!mark) return false;
    if (mark.turnedAway || this.ended(mark)) {
      if (mark.drops === 0) this.marks.delete(ino);
      return false;
    }
    mark.turnedAway = true;
    return true;
  }

  private ended(mark: Mark): boolean {
    return mark.drops === 0 && this.nowMs() >= mark.untilMs;
  }
}
