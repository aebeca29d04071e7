// What a node knows of a directory from a listing (statahead): only a listing
// that reached its end with no change in between makes the directory known.
import { describe, expect, it } from 'vitest';
import { DirKnowledge, NAMES_MAX } from '../../src/vfs/dirKnowledge.js';

const DIR = 7;
const entries = (names: string[]) => names.map((name, i) => ({ name, ino: 100 + i }));

describe('a directory known from its listing', () => {
  it('is known once every page came, with the names of every page', () => {
    const known = new DirKnowledge();
    known.beginFill(DIR);
    expect(known.fillPage(DIR, entries(['a', 'b']))).toBe(true);
    // while it is listed: the names listed so far, and nothing of absent names
    expect(known.lookup(DIR, 'a')).toBe(100);
    expect(known.lookup(DIR, 'c')).toBeNull();
    expect(known.fillPage(DIR, [{ name: 'c', ino: 300 }])).toBe(true);
    known.endFill(DIR, Date.now() + 60_000);
    expect(known.lookup(DIR, 'a')).toBe(100);
    expect(known.lookup(DIR, 'c')).toBe(300);
    expect(known.lookup(DIR, 'absent')).toBe(0);
  });

  it('is not known when a change came while it was listed', () => {
    const known = new DirKnowledge();
    known.beginFill(DIR);
    known.fillPage(DIR, entries(['a']));
    known.forget(DIR);
    expect(known.fillPage(DIR, entries(['b']))).toBe(false);
    known.endFill(DIR, Date.now() + 60_000);
    expect(known.lookup(DIR, 'a')).toBeNull();
  });

  it('keeps what this node itself added or removed while it was listed', () => {
    const known = new DirKnowledge();
    known.beginFill(DIR);
    known.fillPage(DIR, entries(['a', 'b']));
    known.added(DIR, 'new', 500);
    known.removed(DIR, 'b');
    known.endFill(DIR, Date.now() + 60_000);
    expect(known.lookup(DIR, 'new')).toBe(500);
    expect(known.lookup(DIR, 'b')).toBe(0);
  });

  it('is not known past its bound of names, nor when its grant has already ended', () => {
    const known = new DirKnowledge();
    known.beginFill(DIR);
    const many = Array.from({ length: NAMES_MAX + 1 }, (_, i) => ({ name: `n${i}`, ino: 1000 + i }));
    expect(known.fillPage(DIR, many)).toBe(false);
    known.endFill(DIR, Date.now() + 60_000);
    expect(known.lookup(DIR, 'n0')).toBeNull();
    known.beginFill(DIR);
    known.fillPage(DIR, entries(['a']));
    known.endFill(DIR, Date.now() - 1);
    expect(known.lookup(DIR, 'a')).toBeNull();
  });

  it('is not known when the listing was abandoned', () => {
    const known = new DirKnowledge();
    known.beginFill(DIR);
    known.fillPage(DIR, entries(['a']));
    known.abandonFill(DIR);
    known.endFill(DIR, Date.now() + 60_000);
    expect(known.lookup(DIR, 'a')).toBeNull();
  });
});
