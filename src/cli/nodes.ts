// kdfs node add|remove|maintenance|status and kdfs rebalance start|status|stop.
// Each finds its cluster like the other subcommands: --dir DIR (the nodes of
// kdfs up), or a path in a kDFS mount given among the arguments.
import path from 'node:path';
import type { MetaClient } from '../meta/client.js';
import { parseNodeIds } from '../rebalance/plan.js';
import {
  NODE_ADD, NODE_REVOKE, NODE_MAINTENANCE_OFF, NODE_MAINTENANCE_ON, NODE_REMOVE, NODE_REMOVE_FORCE, REBALANCE_START, REBALANCE_STATUS, REBALANCE_STOP,
  type MoveProgress,
} from '../rpc/messages.js';
import { CliError, formatBytes, locate, metaClientFor } from './common.js';

/** How often a waiting command asks for progress. */
const POLL_MS = 1000;
/** How long the root may take to count each node's copies (a scan of every inode). */
const COUNT_WAIT_MS = 60_000;

export interface Where { dir: string }

/** Splits the words of a node command into node ids and the place of the cluster (a path in a mount). */
function idsAndPlace(words: string[], options: Where, nodeDirOf: (dir: string) => string): { ids: number[]; nodeDir: string } {
  const paths = words.filter((w) => w.startsWith('/') || w.startsWith('.'));
  const idWords = words.filter((w) => !paths.includes(w));
  if (paths.length > 1) throw new CliError(`more than one path given: ${paths.join(' ')}`, 2);
  let ids: number[];
  try {
    ids = parseNodeIds(idWords);
  } catch (err) {
    throw new CliError((err as Error).message, 2);
  }
  return { ids, nodeDir: paths.length === 1 ? locate(paths[0]).dir : nodeDirOf(path.resolve(options.dir)) };
}

async function withMeta<T>(nodeDir: string, work: (meta: MetaClient) => Promise<T>): Promise<T> {
  const meta = await metaClientFor(nodeDir);
  try {
    return await work(meta);
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError((err as Error).message);
  } finally {
    meta.disconnect();
  }
}

export async function nodeAdd(words: string[], options: Where, nodeDirOf: (dir: string) => string): Promise<number> {
  const { ids, nodeDir } = idsAndPlace(words, options, nodeDirOf);
  await withMeta(nodeDir, (meta) => meta.nodeAdmin(NODE_ADD, ids));
  process.stdout.write(`kdfs: node${ids.length > 1 ? 's' : ''} ${ids.join(', ')} take${ids.length > 1 ? '' : 's'} new data; run "kdfs rebalance start" to give ${ids.length > 1 ? 'them' : 'it'} a share of the existing data\n`);
  return 0;
}

export async function nodeRevoke(words: string[], options: Where, nodeDirOf: (dir: string) => string): Promise<number> {
  const { ids, nodeDir } = idsAndPlace(words, options, nodeDirOf);
  await withMeta(nodeDir, (meta) => meta.nodeAdmin(NODE_REVOKE, ids));
  process.stdout.write(`kdfs: node${ids.length > 1 ? 's' : ''} ${ids.join(', ')} revoked: ${ids.length > 1 ? 'their' : 'its'} credentials are refused and ${ids.length > 1 ? 'their' : 'its'} connections closed; ${ids.length > 1 ? 'their' : 'its'} copies are made again on the others\n`);
  return 0;
}

export async function nodeMaintenance(words: string[], options: Where, nodeDirOf: (dir: string) => string): Promise<number> {
  const switchWord = words.find((w) => w === 'on' || w === 'off');
  if (!switchWord) throw new CliError('say on or off: kdfs node maintenance ID... on|off', 2);
  const { ids, nodeDir } = idsAndPlace(words.filter((w) => w !== switchWord), options, nodeDirOf);
  await withMeta(nodeDir, (meta) => meta.nodeAdmin(switchWord === 'on' ? NODE_MAINTENANCE_ON : NODE_MAINTENANCE_OFF, ids));
  process.stdout.write(switchWord === 'on'
    ? `kdfs: node${ids.length > 1 ? 's' : ''} ${ids.join(', ')} in maintenance: ${ids.length > 1 ? 'their' : 'its'} copies are not made elsewhere while down\n`
    : `kdfs: node${ids.length > 1 ? 's' : ''} ${ids.join(', ')} out of maintenance\n`);
  return 0;
}

export async function nodeRemove(words: string[], options: Where & { force?: boolean; background?: boolean }, nodeDirOf: (dir: string) => string): Promise<number> {
  const { ids, nodeDir } = idsAndPlace(words, options, nodeDirOf);
  return withMeta(nodeDir, async (meta) => {
    await meta.nodeAdmin(options.force ? NODE_REMOVE_FORCE : NODE_REMOVE, ids);
    if (options.force) {
      process.stdout.write(`kdfs: node${ids.length > 1 ? 's' : ''} ${ids.join(', ')} removed; ${ids.length > 1 ? 'their' : 'its'} copies are made again from the others (kdfs status shows the degraded objects)\n`);
      return 0;
    }
    if (options.background) {
      process.stdout.write(`kdfs: draining node${ids.length > 1 ? 's' : ''} ${ids.join(', ')}; "kdfs node status" shows the progress\n`);
      return 0;
    }
    const removed = async () => {
      const nodes = await meta.listNodes();
      const back = ids.filter((id) => !['draining', 'removed'].includes(nodes.find((n) => n.id === id)?.admin ?? ''));
      if (back.length > 0) throw new CliError(`the drain of node${back.length > 1 ? 's' : ''} ${back.join(', ')} stopped: added back meanwhile`);
      return ids.every((id) => nodes.find((n) => n.id === id)?.admin === 'removed');
    };
    return waitFor(meta, 'drain', removed, `node${ids.length > 1 ? 's' : ''} ${ids.join(', ')} drained and removed: safe to stop`);
  });
}

export async function nodeStatus(words: string[], options: Where & { json?: boolean }, nodeDirOf: (dir: string) => string): Promise<number> {
  const nodeDir = words.length > 0 ? locate(words[0]).dir : nodeDirOf(path.resolve(options.dir));
  return withMeta(nodeDir, async (meta) => {
    const nodes = await meta.listNodes();
    const health = await meta.health(0, COUNT_WAIT_MS, true);
    const moves = await meta.rebalance(REBALANCE_STATUS);
    const rows = nodes.map((n) => {
      const copies = health.nodeCopies?.find((c) => c.id === n.id) ?? { copies: 0, lastCopies: 0, belowR: 0 };
      return {
        id: n.id, state: n.state, admin: n.admin ?? 'active', weight: n.weight ?? 0, copies: copies.copies,
        lastCopies: copies.lastCopies, belowR: copies.belowR, safeToStop: copies.belowR === 0, okToStop: copies.lastCopies === 0,
      };
    });
    if (options.json) {
      process.stdout.write(JSON.stringify({ nodes: rows, drain: moves.drain, rebalance: moves.rebalance }) + '\n');
      return 0;
    }
    const table = [['NODE', 'STATE', 'ADMIN', 'WEIGHT', 'COPIES', 'SAFE TO STOP']];
    for (const r of rows) {
      const safe = r.safeToStop ? 'yes' : r.okToStop ? `no: ${r.belowR} objects would have fewer than R copies` : `no: ${r.lastCopies} objects would have no copy`;
      table.push([String(r.id), r.state, r.admin, r.weight.toFixed(4), String(r.copies), safe]);
    }
    const lines = formatTable(table);
    if (moves.drain?.state === 'running') lines.push('', `drain: ${progressLine(moves.drain)}`);
    if (moves.rebalance?.state === 'running') lines.push('', `rebalance: ${progressLine(moves.rebalance)}`);
    process.stdout.write(lines.join('\n') + '\n');
    return 0;
  });
}

export async function rebalance(op: 'start' | 'status' | 'stop', where: string | undefined, options: Where & { json?: boolean; background?: boolean },
  nodeDirOf: (dir: string) => string): Promise<number> {
  const nodeDir = where !== undefined ? locate(where).dir : nodeDirOf(path.resolve(options.dir));
  return withMeta(nodeDir, async (meta) => {
    const code = { start: REBALANCE_START, status: REBALANCE_STATUS, stop: REBALANCE_STOP }[op];
    const reply = await meta.rebalance(code);
    if (op === 'status') {
      if (options.json) {
        process.stdout.write(JSON.stringify({ ...reply.rebalance, shares: reply.shares, drain: reply.drain }) + '\n');
        return 0;
      }
      const lines = [`rebalance: ${reply.rebalance!.state}${reply.rebalance!.state === 'running' ? `, ${progressLine(reply.rebalance!)}` : ''}${reply.rebalance!.message ? ` (${reply.rebalance!.message})` : ''}`];
      lines.push(...formatTable([['NODE', 'STORED', 'SHARE', 'TARGET'], ...reply.shares.map((s) => [String(s.id), formatBytes(s.storedBytes), percent(s.share), percent(s.targetShare)])]));
      process.stdout.write(lines.join('\n') + '\n');
      return 0;
    }
    if (op === 'stop') {
      process.stdout.write('kdfs: rebalance stopped\n');
      return 0;
    }
    if (options.background) {
      process.stdout.write('kdfs: rebalance started; "kdfs rebalance status" shows the progress\n');
      return 0;
    }
    const done = async () => {
      const state = (await meta.rebalance(REBALANCE_STATUS)).rebalance!;
      if (state.state === 'stopped' || state.state === 'failed') throw new CliError(`rebalance ${state.state}${state.message ? `: ${state.message}` : ''}`);
      return state.state === 'done';
    };
    const code_ = await waitFor(meta, 'rebalance', done, 'rebalance done');
    const shares = (await meta.rebalance(REBALANCE_STATUS)).shares;
    process.stdout.write(formatTable([['NODE', 'STORED', 'SHARE', 'TARGET'], ...shares.map((s) => [String(s.id), formatBytes(s.storedBytes), percent(s.share), percent(s.targetShare)])]).join('\n') + '\n');
    return code_;
  });
}

/** Waits until `done`, showing the job's progress on a terminal. Ctrl-C stops
 *  the waiting only: the work goes on in the metadata service. */
async function waitFor(meta: MetaClient, job: 'drain' | 'rebalance', done: () => Promise<boolean>, doneMessage: string): Promise<number> {
  const tty = process.stderr.isTTY === true;
  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
  };
  process.on('SIGINT', onSigint);
  try {
    for (;;) {
      if (await done()) break;
      if (interrupted) {
        if (tty) process.stderr.write('\r\x1b[K');
        process.stderr.write(`kdfs: no longer waiting; the ${job} goes on ("kdfs ${job === 'drain' ? 'node status' : 'rebalance status'}" shows it)\n`);
        return 130;
      }
      const progress = (await meta.rebalance(REBALANCE_STATUS))[job]!;
      if (tty) process.stderr.write(`\r\x1b[K${job}: ${progressLine(progress)}`);
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  } finally {
    process.off('SIGINT', onSigint);
    if (tty) process.stderr.write('\r\x1b[K');
  }
  process.stdout.write(`kdfs: ${doneMessage}\n`);
  return 0;
}

/** Objects and bytes moved and left, rate and time left. */
export function progressLine(p: MoveProgress): string {
  const leftS = p.bytesPerS > 0 ? Math.ceil(p.bytesLeft / p.bytesPerS) : null;
  const parts = [`${p.objectsMoved} objects (${formatBytes(p.bytesMoved)}) moved`, `${p.objectsLeft} (${formatBytes(p.bytesLeft)}) left`,
    `${formatBytes(p.bytesPerS)}/s`, leftS === null ? 'time left unknown' : `about ${leftS} s left`];
  if (p.filesWaiting > 0) parts.push(`${p.filesWaiting} open files wait`);
  if (p.message) parts.push(p.message);
  return parts.join(', ');
}

function percent(share: number): string {
  return `${(share * 100).toFixed(1)}%`;
}

function formatTable(rows: string[][]): string[] {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  return rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c])).join('  ').trimEnd());
}

