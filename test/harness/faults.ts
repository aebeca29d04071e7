// What fault-injection tests share: calls timed in a child process (a call
// stuck on the file system must not stop the test), and the bound they allow.
import { createHash } from 'node:crypto';
import { expect } from 'vitest';
import { command, type Cluster, type CommandResult } from './cluster.js';

export const MiB = 1024 * 1024;
/** What the tests allow a call on an absent node: twice the documented bound (PEER_BOUND_MS). */
export const BOUND_ASSERTED_MS = 10_000;

/** Runs a shell command in a child, killed if it outlives 30 s; with how long it took. */
export async function timed(script: string): Promise<CommandResult & { ms: number }> {
  const started = Date.now();
  const result = await command('timeout', ['-k', '2', '30', 'bash', '-o', 'pipefail', '-c', script]);
  return { ...result, ms: Date.now() - started };
}

export const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** Each node's state, as kdfs status --json tells it from node 2's mount. */
export async function nodeStates(c: Cluster): Promise<Record<number, string>> {
  const result = await c.kdfs(['status', '--json', c.mnt(2)]);
  expect(result.code, result.stderr).toBe(0);
  const { nodes } = JSON.parse(result.stdout) as { nodes: { id: number; state: string }[] };
  return Object.fromEntries(nodes.map((n) => [n.id, n.state]));
}

export interface StripeJson { unitBytes: number; count: number; replicas: number; generation: number; objects: { index: number; replicas: { node: number; state: string }[] }[] }

/** kdfs getstripe --json of a file. */
export async function stripeOf(c: Cluster, file: string): Promise<StripeJson> {
  const result = await c.kdfs(['getstripe', '--json', file]);
  expect(result.code, result.stderr).toBe(0);
  return JSON.parse(result.stdout) as StripeJson;
}
