// What a node knows of a directory from a listing (statahead): only a listing
// that reached its end with no change in between makes the directory known.
import { describe, expect, it } from 'vitest';
import { DirKnowledge, NAMES_MAX } from '../../src/vfs/dirKnowledge.js';

const DIR = 7;
const PARENT = 3;
const REG = 0o100644;
const entries = (names: string[]) => names.map((name, i) => ({ name, ino: 100 + i, mode: REG }));

describe('a directory known from its listing', () => {
  it('is known once every page came, with the names of every page', () => {
    const known = new DirKnowledge();
    known.beginFill(DIR);
    expect(known.fillPage(DIR, PARENT, entries(['a', 'b']))).toBe(true);
    // while it is listed: the names listed so far, and nothing of absent names
    expect(known.lookup(DIR, 'a')).toBe(100);
    expect(known.lookup(DIR, 'c')).toBeNull();
    expect(known.fillPage(DIR, PARENT, [{ name: 'c', ino: 300, mode: REG }])).toBe(true);
    known.endFill(DIR, Date.now() + 60_000);
    expect(known.lookup(DIR, 'a')).toBe(100);
    expect(known.lookup(DIR, 'c')).toBe(300);
    expect(known.lookup(DIR, 'absent')).toBe(0);
  });

  it('is not known when a change came while it was listed', () => {
    const known = new DirKnowledge();
    known.beginFill(DIR);
    known.fillPage(DIR, PARENT, entries(['a']));
    known.forget(DIR);
    expect(known.fillPage(DIR, PARENT, entries(['b']))).toBe(false);
    known.endFill(DIR, Date.now() + 60_000);
    expect(known.lookup(DIR, 'a')).toBeNull();
  });

  it('keeps what this node itself added or removed while it was listed', () => {
    const known = new DirKnowledge();
    known.beginFill(DIR);
    known.fillPage(DIR, PARENT, entries(['a', 'b']));
    known.added(DIR, 'new', 500, REG);
    known.removed(DIR, 'b');
    known.endFill(DIR, Date.now() + 60_000);
    expect(known.lookup(DIR, 'new')).toBe(500);
    expect(known.lookup(DIR, 'b')).toBe(0);
  });

  it('is not known past its bound of names, nor when its grant has already ended', () => {
    const known = new DirKnowledge();
    known.beginFill(DIR);
    const many = Array.from({ length: NAMES_MAX + 1 }, (_, i) => ({ name: `n${i}`, ino: 1000 + i, mode: REG }));
    expect(known.fillPage(DIR, PARENT, many)).toBe(false);
    known.endFill(DIR, Date.now() + 60_000);
    expect(known.lookup(DIR, 'n0')).toBeNull();
    known.beginFill(DIR);
    known.fillPage(DIR, PARENT, entries(['a']));
    known.endFill(DIR, Date.now() - 1);
    expect(known.lookup(DIR, 'a')).toBeNull();
  });

  it('is not known when the listing was abandoned', () => {
    const known = new DirKnowledge();
    known.beginFill(DIR);
    known.fillPage(DIR, PARENT, entries(['a']));
    known.abandonFill(DIR);
    known.endFill(DIR, Date.now() + 60_000);
    expect(known.lookup(DIR, 'a')).toBeNull();
  });
});

describe('a directory listed without a call', () => {
  it('gives ".", "..", and every name with its inode and type, in byte order, as the node changed them', () => {
    const known = new DirKnowledge();
    known.beginFill(DIR);
    known.fillPage(DIR, PARENT, [{ name: 'b', ino: 4_294_967_301, mode: 0o40755 }, { name: 'a', ino: 100, mode: REG }]);
    expect(known.list(DIR)).toBeNull();
    known.endFill(DIR, Date.now() + 60_000);
    known.added(DIR, 'Z', 7_000_000_000_000, 0o120777);
    known.removed(DIR, 'a');
    expect(known.list(DIR)).toEqual([
      { name: '.', ino: DIR, mode: 0o40000 },
      { name: '..', ino: PARENT, mode: 0o40000 },
      { name: 'Z', ino: 7_000_000_000_000, mode: 0o120000 },
      { name: 'b', ino: 4_294_967_301, mode: 0o40000 },
    ]);
    // a rename by this node keeps the inode and type
    known.moved(DIR, 'c', known.entry(DIR, 'b')!);
    known.removed(DIR, 'b');
    expect(known.list(DIR)!.at(-1)).toEqual({ name: 'c', ino: 4_294_967_301, mode: 0o40000 });
  });

  it('is not given once its own attributes changed elsewhere (it may have moved), nor past their grant; a move by the node gives the new parent', async () => {
    const known = new DirKnowledge();
    known.created(DIR, PARENT, 60_000);
    expect(known.list(DIR)![1]).toEqual({ name: '..', ino: PARENT, mode: 0o40000 });
    known.reparented(DIR, 9);
    expect(known.list(DIR)![1].ino).toBe(9);
    known.parentChanged(DIR);
    expect(known.list(DIR)).toBeNull();
    // the names are still known for lookups
    expect(known.lookup(DIR, 'absent')).toBe(0);
    // names granted again by lookups do not extend what is known of the parent
    const brief = new DirKnowledge();
    brief.created(DIR, PARENT, 50);
    brief.granted(DIR, 60_000);
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(brief.lookup(DIR, 'absent')).toBe(0);
    expect(brief.list(DIR)).toBeNull();
  });
});
