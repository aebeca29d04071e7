// How the etcd engine packs the store's transactions into etcd commits: in
// order, none split, each commit within etcd's limits unless one transaction
// alone is larger (then it goes alone, and etcd refuses it).
import { describe, expect, it } from 'vitest';
import { TXN_BYTES_MAX, TXN_OPS_MAX, pack } from '../../src/meta/kv/etcd.js';
import type { BatchOp } from '../../src/meta/kv/engine.js';

const put = (name: string, bytes = 10): BatchOp => ({ type: 'put', key: Buffer.from(name), value: Buffer.alloc(bytes) });
const tx = (prefix: string, ops: number, bytes = 10): BatchOp[] => Array.from({ length: ops }, (_, i) => put(`${prefix}${i}`, bytes));

describe('pack', () => {
  it('puts small transactions in one commit, in order', () => {
    const commits = pack([tx('a', 3), tx('b', 2), tx('c', 1)]);
    expect(commits.length).toBe(1);
    expect(commits[0].map((op) => op.key.toString())).toEqual(['a0', 'a1', 'a2', 'b0', 'b1', 'c0']);
  });

  it('starts a new commit before a transaction that would pass the operation limit, never splitting it', () => {
    const half = Math.floor(TXN_OPS_MAX / 2) + 1;
    const commits = pack([tx('a', half), tx('b', half), tx('c', 1)]);
    expect(commits.map((c) => c.length)).toEqual([half, half + 1]);
    expect(commits[1][0].key.toString()).toBe('b0');
  });

  it('keeps to the byte limit', () => {
    const big = Math.floor(TXN_BYTES_MAX / 3);
    const commits = pack([tx('a', 1, big), tx('b', 1, big), tx('c', 1, big), tx('d', 1, big)]);
    for (const commit of commits) expect(commit.reduce((sum, op) => sum + op.key.length + (op.type === 'put' ? op.value.length : 0), 0)).toBeLessThanOrEqual(TXN_BYTES_MAX);
    expect(commits.flat().map((op) => op.key.toString())).toEqual(['a0', 'b0', 'c0', 'd0']);
  });

  it('sends a transaction larger than the limits alone', () => {
    const commits = pack([tx('a', 1), tx('b', TXN_OPS_MAX + 5), tx('c', 1)]);
    expect(commits.map((c) => c.length)).toEqual([1, TXN_OPS_MAX + 5, 1]);
  });
});
