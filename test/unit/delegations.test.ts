// A node's side of delegated creates (src/vfs/delegations.ts), against a
// service played by the test: which creates go with which call, and what
// becomes of them when a call fails or the service refuses one.
import { describe, expect, it } from 'vitest';
import { Delegations } from '../../src/vfs/delegations.js';
import type { Delegation, DelegatedCreate, PublishReply } from '../../src/rpc/messages.js';

const DIR = 4_294_967_300;
const OTHER_DIR = 4_294_967_301;
const INO_FIRST = 4_294_970_000;

function grant(dir: number, inoCount = 16): Delegation {
  return { dir, cacheMs: 30_000, inoFirst: INO_FIRST, inoCount, policy: { unitBytes: 0, count: 0 }, nodeIds: [1, 2, 3], parentMode: 0o40755, parentGid: 0 };
}

function setup() {
  const published: DelegatedCreate[][] = [];
  const refused: { ino: number; errno: number }[] = [];
  let reply: (creates: DelegatedCreate[]) => Promise<PublishReply> = async () => ({ errno: 0, failed: [] });
  const delegations = new Delegations(
    (creates) => {
      published.push(creates);
      return reply(creates);
    },
    async (count) => ({ inoFirst: INO_FIRST + 10_000, inoCount: count }),
    (create, errno) => refused.push({ ino: create.ino, errno }),
    1,
  );
  const make = (dir: number, name: string) => delegations.create(dir, name, 0o100644, 1000, 1000, { sec: 1, nsec: 0 }, 10_000);
  return { delegations, published, refused, make, setReply: (r: typeof reply) => (reply = r) };
}

describe('delegated creates on the node', () => {
  it('are made only in a delegated directory, with distinct numbers from the range and a layout over the members', () => {
    const { delegations, make } = setup();
    expect(make(DIR, 'a')).toBeNull();
    delegations.granted(grant(DIR));
    const a = make(DIR, 'a')!;
    const b = make(DIR, 'b')!;
    expect(a.ino).toBe(INO_FIRST);
    expect(b.ino).toBe(INO_FIRST + 1);
    expect(a.layout.nodes.length).toBe(3);
    expect(make(OTHER_DIR, 'c')).toBeNull();
    // a name the service would refuse is left to it
    expect(make(DIR, 'x'.repeat(256))).toBeNull();
    expect(delegations.unsent(a.ino)).toBe(true);
  });

  it('take the group of a set-group-ID directory, as the service does', () => {
    const { delegations, make } = setup();
    delegations.granted({ ...grant(DIR), parentMode: 0o42775, parentGid: 50 });
    expect(make(DIR, 'a')!.gid).toBe(50);
  });

  it('all go with a commit; a call naming a directory sends only the creates in it', async () => {
    const { delegations, published, make } = setup();
    delegations.granted(grant(DIR));
    delegations.granted({ ...grant(OTHER_DIR), inoCount: 0 });
    const a = make(DIR, 'a')!;
    const b = make(OTHER_DIR, 'b')!;
    // a lookup in OTHER_DIR: b first, a stays
    expect(await delegations.before('Getattr', { ino: OTHER_DIR, name: 'x' })).toBeNull();
    expect(published.map((p) => p.map((c) => c.ino))).toEqual([[b.ino]]);
    expect(delegations.unsent(a.ino)).toBe(true);
    expect(delegations.unsent(b.ino)).toBe(false);
    // a commit of any file takes what is left along
    const c = make(DIR, 'c')!;
    const along = await delegations.before('CommitWrite', { ino: c.ino });
    expect(along!.map((x) => x.ino).sort()).toEqual([a.ino, c.ino].sort());
    // calls that name nothing of the namespace wait for nothing
    expect(delegations.before('Statfs', {})).toBeNull();
  });

  it('taken by a call, go again with their own file\'s commit instead of holding it up; other calls naming them wait for every call carrying them', async () => {
    const { delegations, make } = setup();
    delegations.granted(grant(DIR));
    const a = make(DIR, 'a')!;
    const c = make(DIR, 'c')!;
    const along = (await delegations.before('CommitWrite', { ino: a.ino }))!;
    expect(along.map((x) => x.ino)).toEqual([a.ino, c.ino]);
    // the commit that carries c is not answered yet: c's own commit takes c again, at once
    const again = (await delegations.before('CommitWrite', { ino: c.ino }))!;
    expect(again.map((x) => x.ino)).toEqual([c.ino]);
    // a lookup of c waits for both calls
    let passed = false;
    const lookup = delegations.before('Getattr', { ino: c.ino })!.then(() => (passed = true));
    let answerAgain!: () => void;
    const secondCall = delegations.carry(again, new Promise<PublishReply>((resolve) => (answerAgain = () => resolve({ errno: 0, failed: [] }))));
    await delegations.carry(along, Promise.resolve({ errno: 0, failed: [] }));
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(passed).toBe(false);
    expect(delegations.unsent(c.ino)).toBe(true);
    expect(delegations.unsent(a.ino)).toBe(false);
    answerAgain();
    await secondCall;
    await lookup;
    expect(passed).toBe(true);
    expect(delegations.unsent(c.ino)).toBe(false);
  });

  it('made, is not carried again by later commits of its file, nor sent again when a duplicate is refused or lost', async () => {
    const { delegations, make } = setup();
    delegations.granted(grant(DIR));
    const a = make(DIR, 'a')!;
    const first = (await delegations.before('CommitWrite', { ino: INO_FIRST + 99 }))!;
    const second = (await delegations.before('CommitWrite', { ino: a.ino }))!;
    expect(second.map((x) => x.ino)).toEqual([a.ino]);
    await delegations.carry(first, Promise.resolve({ errno: 0, failed: [] }));
    // made: a third commit of a (another process's close) does not carry it on
    expect(await delegations.before('CommitWrite', { ino: a.ino })).toBeNull();
    // a lookup of a still waits for the second call, which may carry it yet
    let passed = false;
    const lookup = delegations.before('Getattr', { ino: a.ino })!.then(() => (passed = true));
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(passed).toBe(false);
    // the second call is refused as a whole (the disk is full): a was made, it stays so
    await delegations.carry(second, Promise.resolve({ errno: 28, failed: [] }));
    await lookup;
    expect(delegations.unsent(a.ino)).toBe(false);
    expect(await delegations.before('CommitWrite', { ino: a.ino })).toBeNull();
  });

  it('carried twice: a lost call puts a create back only if no other call still carries it; a refusal is told once', async () => {
    const { delegations, refused, make } = setup();
    delegations.granted(grant(DIR));
    const a = make(DIR, 'a')!;
    const first = (await delegations.before('CommitWrite', { ino: INO_FIRST + 99 }))!;
    const second = (await delegations.before('CommitWrite', { ino: a.ino }))!;
    expect(second.map((x) => x.ino)).toEqual([a.ino]);
    // the second call is lost while the first still carries a: a is not sent again by itself
    await expect(delegations.carry(second, Promise.reject(new Error('no answer in time')))).rejects.toThrow('no answer');
    expect(await delegations.before('CommitWrite', { ino: INO_FIRST + 98 })).toBeNull();
    expect(delegations.unsent(a.ino)).toBe(true);
    // both calls refuse it: the node drops it once
    const third = (await delegations.before('CommitWrite', { ino: a.ino }))!;
    const refusal = { errno: 0, failed: [{ ino: a.ino, errno: 17 }] };
    await delegations.carry(first, Promise.resolve(refusal));
    await delegations.carry(third, Promise.resolve(refusal));
    expect(refused).toEqual([{ ino: a.ino, errno: 17 }]);
    expect(delegations.unsent(a.ino)).toBe(false);
  });

  it('carried by a call that fails and taken again by another, still hold up a call that names them', async () => {
    const { delegations, make } = setup();
    delegations.granted(grant(DIR));
    const a = make(DIR, 'a')!;
    // a commit of another file carries a; a lookup of a waits for that call
    const first = (await delegations.before('CommitWrite', { ino: INO_FIRST + 99 }))!;
    const waiting = delegations.before('Getattr', { ino: a.ino })!;
    let passed = false;
    void waiting.then(() => (passed = true));
    // the first call fails (the root is away): a is put back, and a third call
    // takes it before the waiting lookup goes on
    let settleSecond!: () => void;
    const second = delegations.carry(first, Promise.reject(new Error('no answer in time'))).catch(() => {
      const again = delegations.before('CommitWrite', { ino: INO_FIRST + 98 });
      return again!.then((creates) => delegations.carry(creates!, new Promise<PublishReply>((resolve) => (settleSecond = () => resolve({ errno: 0, failed: [] })))));
    });
    await new Promise((resolve) => setTimeout(resolve, 10));
    // the waiting lookup must not go on without a, nor before the call carrying it is answered
    expect(passed).toBe(false);
    settleSecond();
    await second;
    expect(await waiting).toBeNull();
    expect(delegations.unsent(a.ino)).toBe(false);
  });

  it('go again with the next call when a call carrying them fails, and are dropped when refused', async () => {
    const { delegations, published, refused, make, setReply } = setup();
    delegations.granted(grant(DIR));
    const a = make(DIR, 'a')!;
    const b = make(DIR, 'b')!;
    setReply(async () => {
      throw new Error('session lost');
    });
    await expect(delegations.flush()).rejects.toThrow('session lost');
    expect(delegations.unsent(a.ino) && delegations.unsent(b.ino)).toBe(true);
    setReply(async (creates) => ({ errno: 0, failed: [{ ino: creates[0].ino, errno: 17 }] }));
    await delegations.flush();
    expect(published.length).toBe(2);
    expect(refused).toEqual([{ ino: a.ino, errno: 17 }]);
    expect(delegations.unsent(a.ino) || delegations.unsent(b.ino)).toBe(false);
  });

  it('a flush whose own send fails still waits for the other calls carrying creates (a recall is not answered before them)', async () => {
    const { delegations, make, setReply } = setup();
    delegations.granted(grant(DIR));
    make(DIR, 'a');
    // a commit carries a and is not answered yet
    const along = (await delegations.before('CommitWrite', { ino: INO_FIRST + 99 }))!;
    let answer!: () => void;
    const commit = delegations.carry(along, new Promise<PublishReply>((resolve) => (answer = () => resolve({ errno: 0, failed: [] }))));
    const b = make(DIR, 'b')!;
    setReply(async () => {
      throw new Error('session lost');
    });
    let ended = false;
    const flushed = delegations.flush().finally(() => (ended = true));
    await new Promise((resolve) => setTimeout(resolve, 10));
    expect(ended).toBe(false);
    answer();
    await commit;
    await expect(flushed).rejects.toThrow('session lost');
    expect(delegations.unsent(b.ino)).toBe(true);
  });

  it('a removal or a rename sends every create first; a recalled directory is asked again', async () => {
    const { delegations, published, make } = setup();
    delegations.granted(grant(DIR));
    delegations.granted({ ...grant(OTHER_DIR), inoCount: 0 });
    make(DIR, 'a');
    make(OTHER_DIR, 'b');
    await delegations.before('Remove', { entry: { ino: 1, name: 'd' }, directory: true });
    expect(published.flat().length).toBe(2);
    delegations.drop(DIR);
    expect(make(DIR, 'c')).toBeNull();
    expect(make(OTHER_DIR, 'c')).not.toBeNull();
  });
});
