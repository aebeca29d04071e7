// kdfs scrub [--repair] [--json] [--dir DIR] [PATH]: reads every copy of every
// object of the files under PATH (default: the whole file system, through the
// root node's mount under --dir), checks checksums and compares the copies, and
// with --repair has the metadata service repair what is bad. Exit status 0 when
// every object checked has R good copies at the end, 1 otherwise.
import fs from 'node:fs';
import path from 'node:path';
import { RemoteAgent } from '../agent/remote.js';
import { readSuperblock } from '../format/superblock.js';
import { replicaCount } from '../layout/replicas.js';
import type { MetaClient } from '../meta/client.js';
import { readRunFile } from '../node/runfile.js';
import type { AgentSource } from '../replication/objects.js';
import { scrubFile, type ObjectVerdict } from '../replication/scrub.js';
import type { Layout } from '../rpc/messages.js';
import { CliError, formatBytes, locate, metaClientFor } from './common.js';

/** How long the metadata service may take to repair one file. */
const REPAIR_WAIT_MS = 10 * 60 * 1000;
const PROGRESS_INTERVAL_MS = 500;

export interface ScrubOptions { dir: string; repair?: boolean; json?: boolean }
export interface ScrubSummary { checked: number; corrupt: number; missing: number; stale: number; repaired: number }

interface FileToCheck { file: string; ino: number; size: number }

export async function scrub(where: string | undefined, nodeDirOfRoot: string, options: ScrubOptions): Promise<number> {
  let nodeDir: string;
  let start: string;
  if (where !== undefined) {
    nodeDir = locate(where).dir;
    start = path.resolve(where);
  } else {
    nodeDir = nodeDirOfRoot;
    const mountPoint = readRunFile(nodeDir)?.mountPoint;
    if (!mountPoint) throw new CliError(`${nodeDir} is not mounted: give a PATH in a kDFS mount, or --dir of running nodes`);
    start = mountPoint;
  }
  const files = await regularFiles(start);
  const sb = await readSuperblock(nodeDir);
  const meta = await metaClientFor(nodeDir);
  const agents = new Map<number, RemoteAgent>();
  try {
    const nodes = await meta.listNodes();
    const down = new Set(nodes.filter((n) => n.state === 'down').map((n) => n.id));
    for (const node of nodes) agents.set(node.id, new RemoteAgent(node.address, node.dataAddress, sb.fsid, undefined, node.id));
    // a node that is down is not waited for: its copies are missing
    const source: AgentSource = {
      get: async (id) => {
        const agent = agents.get(id);
        if (!agent || down.has(id)) throw new CliError(`node ${id} is down`);
        return agent;
      },
    };
    const layouts = new Map<FileToCheck, Layout>();
    for (const file of files) {
      const layout = await stripeOf(meta, file);
      if (layout) layouts.set(file, layout);
    }
    const totalBytes = [...layouts].reduce((sum, [file, layout]) => sum + file.size * replicaCount(layout), 0);
    const progress = new Progress(totalBytes, !options.json && process.stderr.isTTY === true);
    const summary: ScrubSummary = { checked: 0, corrupt: 0, missing: 0, stale: 0, repaired: 0 };
    let whole = true;
    for (const [file, layout] of layouts) {
      let verdicts = await scrubFile(source, file.ino, layout, file.size, (bytes) => progress.add(bytes));
      const before = verdicts;
      if (options.repair && !allGood(verdicts, layout)) {
        const bad = verdicts.flatMap((v) => v.copies.filter((c) => c.state === 'corrupt' || c.state === 'stale').map((c) => c.slot));
        try {
          if (bad.length > 0) await meta.markStale(file.ino, bad);
          await meta.repair(file.ino, REPAIR_WAIT_MS);
        } catch (err) {
          progress.clear();
          process.stderr.write(`kdfs: repair of ${file.file}: ${(err as Error).message}\n`);
        }
        const repaired = await stripeOf(meta, file);
        if (repaired) verdicts = await scrubFile(source, file.ino, repaired, file.size, () => {});
        summary.repaired += countRepaired(before, verdicts);
      }
      progress.objects += verdicts.length;
      summary.checked += verdicts.length;
      for (const copy of before.flatMap((v) => v.copies)) {
        if (copy.state === 'corrupt') summary.corrupt++;
        else if (copy.state === 'missing') summary.missing++;
        else if (copy.state === 'stale') summary.stale++;
      }
      if (!allGood(verdicts, layout)) {
        whole = false;
        if (!options.json) {
          progress.clear();
          process.stdout.write(`${file.file}: ${describe(verdicts)}\n`);
        }
      }
      progress.show();
    }
    progress.clear();
    if (options.json) process.stdout.write(JSON.stringify(summary) + '\n');
    else {
      process.stdout.write(`checked ${summary.checked} objects (${formatBytes(progress.bytes)} read): ${summary.corrupt} corrupt, ${summary.stale} stale, `
        + `${summary.missing} missing copies; ${summary.repaired} repaired\n`);
    }
    return whole ? 0 : 1;
  } finally {
    for (const agent of agents.values()) agent.close();
    meta.disconnect();
  }
}

/** The file's layout now (null: removed meanwhile). */
async function stripeOf(meta: MetaClient, file: FileToCheck): Promise<Layout | null> {
  try {
    const reply = await meta.getStripe({ ino: file.ino });
    return reply.layout;
  } catch {
    return null;
  }
}

function allGood(verdicts: ObjectVerdict[], layout: Layout): boolean {
  return verdicts.every((v) => v.copies.length >= replicaCount(layout) && v.copies.every((c) => c.state === 'good'));
}

function countRepaired(before: ObjectVerdict[], after: ObjectVerdict[]): number {
  let repaired = 0;
  before.forEach((v, i) => v.copies.forEach((c, j) => {
    if (c.state !== 'good' && after[i]?.copies[j]?.state === 'good') repaired++;
  }));
  return repaired;
}

function describe(verdicts: ObjectVerdict[]): string {
  return verdicts.filter((v) => v.copies.some((c) => c.state !== 'good'))
    .map((v) => `object ${v.index}: ${v.copies.map((c) => `node ${c.node || '-'} ${c.state}`).join(', ')}`).join('; ');
}

/** The regular files at or under start, with their inode numbers and sizes. */
async function regularFiles(start: string): Promise<FileToCheck[]> {
  const found: FileToCheck[] = [];
  const visit = async (file: string): Promise<void> => {
    const st = await fs.promises.lstat(file, { bigint: true }).catch(() => null);
    if (!st) return;
    if (st.isFile()) found.push({ file, ino: Number(st.ino), size: Number(st.size) });
    if (!st.isDirectory()) return;
    const names = await fs.promises.readdir(file).catch(() => [] as string[]);
    for (const name of names) await visit(path.join(file, name));
  };
  const first = await fs.promises.lstat(start).catch(() => null);
  if (!first) throw new CliError(`${start}: no such file or directory`);
  await visit(start);
  return found;
}

/** A progress line on a terminal: objects and bytes checked, rate, time left. */
class Progress {
  bytes = 0;
  objects = 0;
  private readonly startMs = Date.now();
  private shownMs = 0;
  private shown = false;

  constructor(private readonly totalBytes: number, private readonly enabled: boolean) {}

  add(bytes: number): void {
    this.bytes += bytes;
    if (Date.now() - this.shownMs >= PROGRESS_INTERVAL_MS) this.show();
  }

  show(): void {
    if (!this.enabled) return;
    this.shownMs = Date.now();
    const seconds = Math.max(0.001, (this.shownMs - this.startMs) / 1000);
    const rate = this.bytes / seconds;
    const leftS = rate > 0 ? Math.max(0, (this.totalBytes - this.bytes) / rate) : 0;
    process.stderr.write(`\r\x1b[Kscrub: ${this.objects} objects, ${formatBytes(this.bytes)} checked, ${formatBytes(rate)}/s, about ${Math.ceil(leftS)} s left`);
    this.shown = true;
  }

  clear(): void {
    if (this.shown) process.stderr.write('\r\x1b[K');
    this.shown = false;
  }
}
