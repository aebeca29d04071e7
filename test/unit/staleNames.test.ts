// Opens through names removed elsewhere that the kernel still holds (src/vfs/staleNames.ts).
import { describe, expect, it } from 'vitest';
import { STALE_OPEN_GRACE_MS, StaleNames } from '../../src/vfs/staleNames.js';

function clock() {
  let ms = 1_000;
  return { now: () => ms, advance: (byMs: number) => { ms += byMs; } };
}

const DIR = 10;
const REG = 0o100644;
const P = 500; // a thread
const Q = 501; // another

describe('stale names', () => {
  it('turn away every open of an inode whose removed name the kernel holds; the walk again through the old name finds nothing', () => {
    const names = new StaleNames();
    names.tell(DIR, 'a', 100, REG);
    names.tell(DIR, 'b', 200, REG);
    expect(names.reached(100, P)).toBe('go');
    const dropped = names.removed(DIR, 'a');
    expect(names.reached(100, P)).toBe('stale');
    expect(names.reached(100, Q)).toBe('stale');
    expect(names.reached(200, P)).toBe('go');
    dropped();
  });

  it('let the thread whose walk again found the inode through a good name open it, once', () => {
    const names = new StaleNames();
    names.tell(DIR, 'a', 100, REG);
    names.tell(DIR, 'link', 100, REG);
    names.removed(DIR, 'a');
    expect(names.reached(100, P)).toBe('stale');
    names.tell(DIR, 'link', 100, REG);
    expect(names.reached(100, Q)).toBe('stale');
    expect(names.reached(100, P)).toBe('go');
    // its next open through the old name, still in its kernel, is turned away again
    expect(names.reached(100, P)).toBe('stale');
  });

  it('a lookup that was not a walk again after a turned away open lets nothing through', () => {
    const names = new StaleNames();
    names.tell(DIR, 'a', 100, REG);
    names.tell(DIR, 'A', 100, REG);
    names.removed(DIR, 'a');
    // stat A, then open a: the kernel reaches the inode through a
    names.tell(DIR, 'A', 100, REG);
    expect(names.reached(100, P)).toBe('stale');
  });

  it('let the walk again end at another inode than the one turned away: the one it found last goes', () => {
    const names = new StaleNames();
    names.tell(DIR, 'T', 100, REG);
    names.removed(DIR, 'T');
    expect(names.reached(100, P)).toBe('stale');
    // T was replaced by 200, which is replaced in turn before the open
    names.tell(1, 'd', DIR, REG);
    names.tell(DIR, 'T', 200, REG);
    names.removed(DIR, 'T');
    expect(names.reached(200, P)).toBe('go');
  });

  it('a walk again that failed lets nothing through later: the lookups of a stat after it are not a walk again', () => {
    const time = clock();
    const names = new StaleNames(time.now);
    names.tell(1, 'd1', DIR, REG);
    names.tell(DIR, 'f', 100, REG);
    names.tell(1, 'd2', DIR + 1, REG);
    names.tell(DIR + 1, 'f', 200, REG);
    names.removed(1, 'd1');
    expect(names.reached(100, P)).toBe('stale');
    // the walk again through d1 fails
    names.lookupFailed(P, 1, 'd1');
    // stat d2/f, d2 removed elsewhere before the kernel drops it, then an open through the stale d2
    names.found(P, 1, 'd2', DIR + 1);
    names.found(P, DIR + 1, 'f', 200);
    names.removed(1, 'd2');
    expect(names.reached(200, P)).toBe('stale');
    // nor does one that took longer than a walk may
    names.tell(DIR + 1, 'f', 200, REG);
    time.advance(10_000);
    expect(names.reached(200, P)).toBe('stale');
  });

  it('let a request through right after lookups of every name of its path from the root: the kernel walked again by itself (a directory found under its new parent while its old entry was busy)', () => {
    const names = new StaleNames();
    names.tell(1, 'p', DIR, 0o40755);
    names.tell(1, 'q', DIR + 1, 0o40755);
    names.tell(DIR, 'A', 300, 0o40755);
    names.tell(300, 'id', 100, REG);
    // A moved from p to q elsewhere; the kernel holds p/A until it drops it
    names.removed(DIR, 'A');
    expect(names.reached(100, P)).toBe('stale');
    // the kernel's first walk failed by itself; its walk again looks every name up
    const walk = (pid: number) => {
      names.tell(1, 'q', DIR + 1, 0o40755);
      names.found(pid, 1, 'q', DIR + 1);
      names.tell(DIR + 1, 'A', 300, 0o40755);
      names.found(pid, DIR + 1, 'A', 300);
      names.tell(300, 'id', 100, REG);
      names.found(pid, 300, 'id', 100);
    };
    walk(Q);
    expect(names.reached(100, Q)).toBe('go');
    // once: its next request walked nothing
    expect(names.reached(100, Q)).toBe('stale');
    // a create in A after the lookup of its new name failed
    walk(Q);
    names.lookupFailed(Q, 100, 'new');
    expect(names.reached(100, Q, { parent: 100, name: 'new' })).toBe('go');
    // not a walk from the root: from a directory the kernel holds (a relative path)
    names.found(Q, 300, 'id', 100);
    expect(names.reached(100, Q)).toBe('stale');
  });

  it('a walk of every name from the root lets nothing through if a name on it was removed since its lookup, or if it reached another inode', () => {
    const names = new StaleNames();
    names.tell(1, 'q', DIR + 1, 0o40755);
    names.tell(DIR + 1, 'A', 300, 0o40755);
    names.tell(300, 'id', 100, REG);
    names.removed(DIR + 1, 'A');
    names.tell(DIR + 1, 'A', 300, 0o40755);
    names.found(P, 1, 'q', DIR + 1);
    names.found(P, DIR + 1, 'A', 300);
    names.found(P, 300, 'id', 100);
    // A moved away again before the open came
    names.removed(DIR + 1, 'A');
    expect(names.reached(100, P)).toBe('stale');
    names.tell(DIR + 1, 'A', 300, 0o40755);
    names.found(Q, 1, 'q', DIR + 1);
    names.found(Q, DIR + 1, 'A', 300);
    expect(names.reached(100, Q)).toBe('stale');
  });

  it('mark the files below a directory whose name was removed', () => {
    const names = new StaleNames();
    names.tell(1, 'd', DIR, REG);
    names.tell(DIR, 'f', 100, REG);
    names.tell(1, 'e', 20, REG);
    names.tell(20, 'g', 200, REG);
    names.removed(1, 'd');
    expect(names.reached(100, P)).toBe('stale');
    expect(names.reached(200, Q)).toBe('go');
    // the walk again through the directory's new name
    names.tell(1, 'D', DIR, REG);
    names.tell(DIR, 'f', 100, REG);
    expect(names.reached(100, P)).toBe('go');
  });

  it('last until a grace period after the kernel dropped the name', () => {
    const time = clock();
    const names = new StaleNames(time.now);
    names.tell(DIR, 'a', 100, REG);
    names.removed(DIR, 'a')();
    // an open whose walk found the name just before the drop
    time.advance(STALE_OPEN_GRACE_MS - 1);
    expect(names.reached(100, P)).toBe('stale');
    time.advance(1);
    expect(names.reached(100, Q)).toBe('go');
  });

  it('two names of an inode removed: marked until the last is dropped', () => {
    const time = clock();
    const names = new StaleNames(time.now);
    names.tell(DIR, 'x', 400, REG);
    names.tell(DIR + 1, 'y', 400, REG);
    const first = names.removed(DIR, 'x');
    const second = names.removed(DIR + 1, 'y');
    first();
    first();
    time.advance(2 * STALE_OPEN_GRACE_MS);
    expect(names.reached(400, P)).toBe('stale');
    second();
    time.advance(STALE_OPEN_GRACE_MS);
    expect(names.reached(400, Q)).toBe('go');
  });

  it('know only names the kernel was told of: not those this node removed, and a name it renamed by its new name', () => {
    const names = new StaleNames();
    names.removed(DIR, 'never told')();
    names.tell(DIR, 'mine', 300, REG);
    names.forget(DIR, 'mine');
    names.removed(DIR, 'mine');
    expect(names.reached(300, P)).toBe('go');
    names.tell(DIR, 'x', 301, REG);
    names.moved(DIR, 'x', DIR, 'a');
    names.removed(DIR, 'x');
    expect(names.reached(301, P)).toBe('go');
    names.removed(DIR, 'a');
    expect(names.reached(301, P)).toBe('stale');
  });

  it('a walk again whose revalidation of a name failed goes on when the lookup the kernel makes at once finds it', () => {
    const names = new StaleNames();
    names.tell(DIR, 'x', 100, REG);
    names.removed(DIR, 'x');
    expect(names.reached(100, P)).toBe('stale');
    // x was elsewhere for a moment (swapped by renames on another node)
    names.lookupFailed(P, DIR, 'x');
    names.tell(DIR, 'x', 100, REG);
    names.found(P, DIR, 'x', 100);
    expect(names.reached(100, P)).toBe('go');
  });

  it('a create, mkdir, rename or link in a directory reached through its removed name is turned away; its walk again, whose lookup of the new name fails, goes on', () => {
    const names = new StaleNames();
    names.tell(1, 'd', DIR, REG);
    names.removed(1, 'd');
    const making = { parent: DIR, name: 'new' };
    expect(names.reached(DIR, P, making)).toBe('stale');
    names.tell(1, 'D', DIR, REG);
    names.found(P, 1, 'D', DIR);
    names.lookupFailed(P, DIR, 'new');
    names.lookupFailed(P, DIR, 'new');
    expect(names.reached(DIR, P, making)).toBe('go');
  });

  it('a walk again that failed at a directory lets no later create through, though the lookup of the name it makes fails as well', () => {
    const names = new StaleNames();
    names.tell(1, 'd1', DIR, REG);
    names.tell(1, 'd2', DIR + 1, REG);
    names.removed(1, 'd1');
    expect(names.reached(DIR, P, { parent: DIR, name: 'new' })).toBe('stale');
    names.lookupFailed(P, 1, 'd1');
    // the next round: a create through d2, removed elsewhere too
    names.removed(1, 'd2');
    names.lookupFailed(P, DIR + 1, 'new');
    expect(names.reached(DIR + 1, P, { parent: DIR + 1, name: 'new' })).toBe('stale');
  });

  it('a rename or a link is turned away if either inode it reached is marked', () => {
    const names = new StaleNames();
    names.tell(1, 'd', DIR, REG);
    names.tell(1, 'e', DIR + 1, REG);
    names.removed(1, 'e');
    expect(names.reached([DIR, DIR + 1], P)).toBe('stale');
    expect(names.reached([DIR, DIR], Q)).toBe('go');
  });

  it('mark a file below a renamed directory though the kernel was told of another name of it (a hard link) last', () => {
    const names = new StaleNames();
    names.tell(1, 'd', DIR, 0o40755);
    names.tell(DIR, 'f', 100, REG);
    names.tell(1, 'h', DIR + 1, 0o40755);
    names.tell(DIR + 1, 'link', 100, REG);
    names.removed(1, 'd');
    expect(names.reached(100, P)).toBe('stale');
  });

  it('know which inodes the daemon sees the opens of: not a FIFO\'s, a socket\'s or a device\'s', () => {
    const names = new StaleNames();
    names.tell(DIR, 'f', 100, REG);
    names.tell(DIR, 'd', 101, 0o40755);
    names.tell(DIR, 'p', 102, 0o10644);
    names.tell(DIR, 's', 103, 0o140755);
    expect([100, 101, 102, 103, 104].map((ino) => names.opensSeen(ino))).toEqual([true, true, false, false, true]);
  });

  it('never turn away a caller the kernel cannot name (pid 0)', () => {
    const names = new StaleNames();
    names.tell(DIR, 'a', 100, REG);
    names.removed(DIR, 'a');
    expect(names.reached(100, 0)).toBe('go');
    expect(names.reached(100, P)).toBe('stale');
  });

  it('bound a walk again per step, not as a whole: a slow one (lookups during a failover) goes on', () => {
    const time = clock();
    const names = new StaleNames(time.now);
    names.tell(1, 'd', DIR, 0o40755);
    names.tell(DIR, 'a', 100, REG);
    names.removed(DIR, 'a');
    expect(names.reached(100, P)).toBe('stale');
    time.advance(800);
    names.found(P, 1, 'd', DIR);
    time.advance(800);
    names.found(P, DIR, 'a', 100);
    time.advance(800);
    expect(names.reached(100, P)).toBe('go');
  });

  it('a directory is where the kernel was last told it is: a mark on its former parent does not reach it', () => {
    const names = new StaleNames();
    names.tell(1, 'p', DIR, 0o40755);
    names.tell(1, 'q', DIR + 1, 0o40755);
    names.tell(DIR, 'sub', 300, 0o40755);
    names.moved(DIR, 'sub', DIR + 1, 'sub');
    names.removed(1, 'p');
    expect(names.reached(300, P)).toBe('go');
  });

  it('know the path of a directory from the names the kernel holds, and what it holds as a directory', () => {
    const names = new StaleNames();
    names.tell(1, 'p', DIR, 0o40755);
    names.tell(DIR, 'q', DIR + 1, 0o40755);
    names.tell(DIR + 1, 'f', 100, REG);
    expect(names.pathOf(DIR + 1)).toEqual(['p', 'q']);
    expect(names.pathOf(1)).toEqual([]);
    expect(names.holdsDir(DIR, 'q')).toBe(true);
    expect(names.holdsDir(DIR + 1, 'f')).toBe(false);
    // a name of the path gone: the path is not known
    names.removed(1, 'p');
    expect(names.pathOf(DIR + 1)).toBeNull();
  });

  it('check calls without a handle on symbolic links (they come by path only)', () => {
    const names = new StaleNames();
    names.tell(DIR, 'l', 100, 0o120777);
    expect(names.opensSeen(100)).toBe(true);
  });
});
