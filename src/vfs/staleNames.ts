// Names another node removed or replaced that this node's kernel may still
// hold. The kernel drops an entry only once it holds the directory's lock,
// which a request of this node there may hold while the service answers the
// other node without waiting for this kernel (two removals at once: see
// Coherence.callBack). Until then a path walk can still end at the old inode
// through the old name (or through a directory's old name, at a file below
// it): O_TRUNC would empty the renamed file, chmod change it, an unlink or a
// create through the directory's old name act in the renamed directory.
//
// So while an inode, or a directory above it, has a removed name marked, a
// request that reached it by a path walk (an open or opendir, a setattr or a
// change of extended attributes without a file handle, or a change of the
// entries of a directory: unlink, rmdir, rename, link, create, mkdir, mknod,
// symlink) is answered ESTALE, on which the kernel
// walks the path again asking the daemon for every name (LOOKUP_REVAL): the
// daemon answers the lookup of every name on the path, so through the old
// name the walk fails, and the request that follows, by the same thread, goes
// on without a question, whatever it reached (a name this node's kernel made
// in the meantime, by a rename here, is not looked up again; a file replaced
// since is then opened as if the open came first, as it may: the two were
// concurrent). The kernel tries a walk again once (retry_estale): a request
// through a good name goes on at its second try, and no ESTALE reaches the
// application.
//
// The kernel's walk again may also follow a failure of its own (a directory
// found under a new parent while its old entry is locked, being dropped:
// d_splice_alias answers ESTALE): then its request, reached by lookups of
// every name from the root, none removed since, goes on; turned away, it
// would be the application's ESTALE (measured: 68-92 in 44,000 opens while
// another node moved their directory every 5 ms, 0-11 after).
//
// A mark outlives the kernel's drop by STALE_OPEN_GRACE_MS: a walk that found
// the old name just before the drop sends its request after it (measured: an
// open 3 ms after the drop cleared a mark that ended with it).
import { E, FsError } from '../common/errno.js';
import { S_IFLNK, S_IFMT, isDir, isReg } from '../common/mode.js';
import { RecentMap } from '../common/recentMap.js';

/** Names the kernel was told of, remembered at most (the oldest go first). */
const TOLD_NAMES_MAX = 65_536;
/** Marks remembered, at most; past it the oldest go (an open of its inode then goes through, as before marks). */
const MARKS_MAX = 4096;
/** Threads turned away remembered, at most. */
const THREADS_MAX = 1024;
/** Inodes looked at, walking up from one looking for a mark, at most. */
const WALKED_MAX = 64;
/** Directories of an inode's names (hard links) remembered, at most. */
const PARENTS_MAX = 4;
/** How long a thread's walk again may pause between its steps (its lookups), at most (a lookup failing for good ends it sooner). */
const WALK_AGAIN_MS = 1000;
/** How long after the kernel dropped the name an open of its inode is still turned away. */
export const STALE_OPEN_GRACE_MS = 1000;
const ROOT_INO = 1;

/** What a request that reached an inode by a path walk does: goes on, or is turned away to be walked again. */
export type Verdict = 'go' | 'stale';

/** What a request turned away is answered with: the kernel walks the path again. */
export const staleName = (ino: number): FsError => new FsError(E.ESTALE, `inode ${ino}: reached through a name removed elsewhere, maybe`);

const keyOf = (parent: number, name: string): string => `${parent}/${name}`;

/** A thread turned away: when, and the name its walk again last failed to find, if any. */
interface WalkAgain {
  sinceMs: number;
  failedAt?: string;
}

/** Where the kernel was told an inode is, and its type. */
interface Place {
  /** The directories of its names, the last told first. */
  parents: number[];
  /** Its name in parents[0]. */
  name: string;
  mode: number;
}

/** A walk of every name from the root (see walkedFromRoot): the names it
 *  found and what each was, the inode it reached, and the name its last
 *  lookup did not find there, if any. */
interface FromRoot {
  found: { key: string; ino: number }[];
  at: number;
  missing?: string;
}

interface Mark {
  /** Removed names of the inode the kernel has yet to drop. */
  drops: number;
  /** When the mark ends, once drops is 0. */
  untilMs: number;
}

export class StaleNames {
  private readonly told = new RecentMap<string, number>(TOLD_NAMES_MAX);
  private readonly places = new RecentMap<number, Place>(TOLD_NAMES_MAX);
  private readonly marks = new RecentMap<number, Mark>(MARKS_MAX);
  /** Threads whose open was turned away, and when: their walk again follows. */
  private readonly retrying = new RecentMap<number, WalkAgain>(THREADS_MAX);
  /** Where each thread's lookups since its last request led, while marks are
   *  kept, if each looked a name up in the directory the one before found, the
   *  first in the root: a walk of every name of the path, as the kernel's walk
   *  again (LOOKUP_REVAL) makes, whatever turned its first walk away (itself
   *  too: a directory found under a new parent while its old entry is busy). */
  private readonly walkedFromRoot = new RecentMap<number, FromRoot>(THREADS_MAX);

  constructor(private readonly nowMs: () => number = Date.now) {}

  /** The kernel was told that name in parent is ino, of that mode. */
  tell(parent: number, name: string, ino: number, mode: number): void {
    this.told.set(keyOf(parent, name), ino);
    const place = this.places.get(ino);
    if (!place) {
      this.places.set(ino, { parents: [parent], name, mode });
      return;
    }
    place.mode = mode;
    place.name = name;
    // a directory has one name: where it was before is no place of it now
    if (isDir(mode)) place.parents = [parent];
    else if (place.parents[0] !== parent) place.parents = [parent, ...place.parents.filter((p) => p !== parent)].slice(0, PARENTS_MAX);
  }

  /** The names from the root down to directory ino, as the kernel was told
   *  them and still holds them; null if this node does not know them all. */
  pathOf(ino: number): string[] | null {
    const names: string[] = [];
    for (let at = ino; at !== ROOT_INO; ) {
      const place = this.places.get(at);
      if (!place || names.length >= WALKED_MAX || this.told.get(keyOf(place.parents[0]!, place.name)) !== at) return null;
      names.unshift(place.name);
      at = place.parents[0]!;
    }
    return names;
  }

  /** Whether the kernel holds name in parent as a directory. */
  holdsDir(parent: number, name: string): boolean {
    const ino = this.told.get(keyOf(parent, name));
    const mode = ino === undefined ? undefined : this.places.get(ino)?.mode;
    return mode !== undefined && isDir(mode);
  }

  /** Whether the kernel's opens of ino come to the daemon, or it has none
   *  (a symbolic link: its attributes change by path only): not a FIFO,
   *  socket or device (whose fchmod comes by a descriptor the daemon never
   *  saw). Unknown: as if they did. */
  opensSeen(ino: number): boolean {
    const mode = this.places.get(ino)?.mode;
    return mode === undefined || isReg(mode) || isDir(mode) || (mode & S_IFMT) === S_IFLNK;
  }

  /** A lookup by thread pid of name in parent failed. In a walk again the
   *  kernel asks again at once when its revalidation of an entry it holds
   *  fails: the walk goes on if the second lookup finds the name (it came
   *  back meanwhile) or if the request makes that name (a create, mkdir,
   *  rename or link to it); a lookup of any other name after a failed one
   *  is no walk again (the walk failed; that thread's later requests are
   *  new ones). */
  lookupFailed(pid: number, parent: number, name: string): void {
    if (this.marks.size > 0) this.walkOn(pid, parent, null, name);
    const walk = this.retrying.get(pid);
    if (!walk) return;
    const key = keyOf(parent, name);
    if (walk.failedAt !== undefined && walk.failedAt !== key) this.retrying.delete(pid);
    else {
      walk.failedAt = key;
      walk.sinceMs = this.nowMs();
    }
  }

  /** A lookup by thread pid of name in parent found it, inode ino. */
  found(pid: number, parent: number, name: string, ino: number): void {
    if (this.marks.size > 0) this.walkOn(pid, parent, ino, name);
    const walk = this.retrying.get(pid);
    if (!walk) return;
    // a slow walk (a metadata failover) goes on: the bound is per step
    walk.sinceMs = this.nowMs();
    if (walk.failedAt === undefined) return;
    if (walk.failedAt === keyOf(parent, name)) walk.failedAt = undefined;
    else this.retrying.delete(pid);
  }

  /** A lookup by thread pid in parent: found (ino) or not (null). */
  private walkOn(pid: number, parent: number, ino: number | null, name: string): void {
    const walked = parent === ROOT_INO ? { found: [], at: ROOT_INO } : this.walkedFromRoot.get(pid);
    if (walked === undefined || walked.missing !== undefined || walked.at !== parent || walked.found.length >= WALKED_MAX) {
      this.walkedFromRoot.delete(pid);
      return;
    }
    if (ino === null) walked.missing = name;
    else {
      walked.found.push({ key: keyOf(parent, name), ino });
      walked.at = ino;
    }
    this.walkedFromRoot.set(pid, walked);
  }

  /** Whether a request that reached ino (making a name in it) came right after
   *  lookups that found every name of its path, none of them removed since. */
  private walkedTo(walked: FromRoot | undefined, ino: number, making?: { parent: number; name: string }): boolean {
    if (walked?.at !== ino) return false;
    if (walked.missing !== undefined && (making?.parent !== ino || making.name !== walked.missing)) return false;
    return walked.found.every(({ key, ino: was }) => this.told.get(key) === was);
  }

  /** This node removed the name itself (its kernel follows). */
  forget(parent: number, name: string): void {
    this.told.delete(keyOf(parent, name));
  }

  /** This node renamed a name itself: its kernel moved the entry. */
  moved(parent: number, name: string, newParent: number, newName: string): void {
    const ino = this.told.get(keyOf(parent, name));
    this.forget(parent, name);
    this.forget(newParent, newName);
    if (ino !== undefined) this.tell(newParent, newName, ino, this.places.get(ino)?.mode ?? 0);
  }

  /** This node swapped two names itself (RENAME_EXCHANGE): so did its kernel. */
  exchanged(parent: number, name: string, otherParent: number, otherName: string): void {
    const ino = this.told.get(keyOf(parent, name));
    const other = this.told.get(keyOf(otherParent, otherName));
    this.forget(parent, name);
    this.forget(otherParent, otherName);
    if (other !== undefined) this.tell(parent, name, other, this.places.get(other)?.mode ?? 0);
    if (ino !== undefined) this.tell(otherParent, otherName, ino, this.places.get(ino)?.mode ?? 0);
  }

  /** Another node removed or replaced name in parent; the returned function is
   *  called once the kernel dropped it. */
  removed(parent: number, name: string): () => void {
    const key = keyOf(parent, name);
    const ino = this.told.get(key);
    if (ino === undefined) return () => {};
    this.told.delete(key);
    let mark = this.marks.get(ino);
    if (!mark || !this.lasts(mark)) this.marks.set(ino, (mark = { drops: 0, untilMs: Infinity }));
    mark.drops++;
    mark.untilMs = Infinity;
    const marked = mark;
    let dropped = false;
    return () => {
      if (dropped) return;
      dropped = true;
      if (--marked.drops === 0) marked.untilMs = this.nowMs() + STALE_OPEN_GRACE_MS;
    };
  }

  /** What a request of thread pid that reached inos (one, or two for a
   *  rename or a link) by path walks does; making names the entry it makes
   *  (whose lookup failed in the walk, as it should). */
  reached(inos: number | readonly number[], pid: number, making?: { parent: number; name: string }): Verdict {
    // a caller the kernel cannot name (a daemon in another pid namespace): its
    // walk again could not be told from another thread's request
    if (pid === 0) return 'go';
    // (the walk again of a thread ends with its next request, as its lookups do)
    const walk = this.retrying.get(pid);
    if (walk) this.retrying.delete(pid);
    const walked = this.walkedFromRoot.get(pid);
    if (walked) this.walkedFromRoot.delete(pid);
    const failed = walk?.failedAt !== undefined && (!making || walk.failedAt !== keyOf(making.parent, making.name));
    const walkedAgain = walk !== undefined && !failed && this.nowMs() - walk.sinceMs <= WALK_AGAIN_MS;
    if (this.marks.size === 0 || walkedAgain) return 'go';
    const marked = typeof inos === 'number' ? this.markedAbove(inos) : inos.some((ino) => this.markedAbove(ino));
    if (!marked) return 'go';
    // every name on its path was just looked up: none is a removed one the kernel still holds
    if (typeof inos === 'number' && this.walkedTo(walked, inos, making)) return 'go';
    this.retrying.set(pid, { sinceMs: this.nowMs() });
    return 'stale';
  }

  /** Whether ino, or a directory above one of its names as the kernel was
   *  told, has a mark that lasts. */
  private markedAbove(ino: number): boolean {
    const toSee = [ino];
    for (let walked = 0; toSee.length > 0 && walked < WALKED_MAX; walked++) {
      const at = toSee.pop()!;
      const mark = this.marks.get(at);
      if (mark) {
        if (this.lasts(mark)) return true;
        this.marks.delete(at);
      }
      if (at !== ROOT_INO) toSee.push(...(this.places.get(at)?.parents ?? []));
    }
    return false;
  }

  private lasts(mark: Mark): boolean {
    return mark.drops > 0 || this.nowMs() < mark.untilMs;
  }
}
