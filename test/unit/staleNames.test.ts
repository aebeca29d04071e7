// Opens through names removed elsewhere that the kernel still holds (src/vfs/staleNames.ts).
import { describe, expect, it } from 'vitest';
import { STALE_OPEN_GRACE_MS, StaleNames } from '../../src/vfs/staleNames.js';

function clock() {
  let ms = 1_000;
  return { now: () => ms, advance: (byMs: number) => { ms += byMs; } };
}

describe('stale names', () => {
  it('turns away the first open of an inode whose removed name the kernel holds still, once', () => {
    const names = new StaleNames();
    names.tell(1, 'a', 100);
    names.tell(1, 'b', 200);
    expect(names.turnAway(100)).toBe(false);
    const dropped = names.removed(1, 'a');
    // once: the kernel's walk again, through another name, goes on
    expect(names.turnAway(100)).toBe(true);
    expect(names.turnAway(100)).toBe(false);
    expect(names.turnAway(200)).toBe(false);
    dropped();
    dropped();
    expect(names.turnAway(100)).toBe(false);
  });

  it('turns it away for a grace period after the kernel dropped the name, not after', () => {
    const time = clock();
    const names = new StaleNames(time.now);
    names.tell(1, 'a', 100);
    names.tell(1, 'b', 200);
    names.removed(1, 'a')();
    // an open whose walk found the name just before the drop
    time.advance(STALE_OPEN_GRACE_MS - 1);
    expect(names.turnAway(100)).toBe(true);
    names.removed(1, 'b')();
    time.advance(STALE_OPEN_GRACE_MS);
    expect(names.turnAway(200)).toBe(false);
  });

  it('knows only names the kernel was told of, and not those this node removed itself', () => {
    const names = new StaleNames();
    names.removed(1, 'never told')();
    names.tell(1, 'mine', 300);
    names.forget(1, 'mine');
    const dropped = names.removed(1, 'mine');
    expect(names.turnAway(300)).toBe(false);
    dropped();
  });

  it('each removal of a name of an inode turns one open away, the mark lasting until the last is dropped', () => {
    const time = clock();
    const names = new StaleNames(time.now);
    names.tell(1, 'x', 400);
    names.tell(2, 'y', 400);
    const first = names.removed(1, 'x');
    const second = names.removed(2, 'y');
    first();
    time.advance(2 * STALE_OPEN_GRACE_MS);
    expect(names.turnAway(400)).toBe(true);
    second();
    names.tell(1, 'z', 400);
    const third = names.removed(1, 'z');
    expect(names.turnAway(400)).toBe(true);
    third();
    expect(names.turnAway(400)).toBe(false);
  });
});
