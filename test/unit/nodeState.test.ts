// A node's state as kdfs status shows it (src/meta/cluster.ts), from the silence
// of its session and whether its agent answered a probe.
import { describe, expect, it } from 'vitest';
import { nodeState } from '../../src/meta/cluster.js';
import { PEER_BOUND_MS } from '../../src/common/limits.js';

describe('node states', () => {
  it('up when its session and its agent answer', () => {
    expect(nodeState(0, true)).toBe('up');
  });

  it('suspect when one of them falls silent', () => {
    expect(nodeState(2500, true)).toBe('suspect');
    expect(nodeState(null, true)).toBe('suspect');
    expect(nodeState(0, false)).toBe('suspect');
    expect(nodeState(PEER_BOUND_MS - 1, false)).toBe('suspect');
  });

  it('down when neither answers, or its session is silent past the bound', () => {
    expect(nodeState(null, false)).toBe('down');
    expect(nodeState(PEER_BOUND_MS, false)).toBe('down');
  });
});
