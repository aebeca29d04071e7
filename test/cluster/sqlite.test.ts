// One SQLite database (rollback journal, the default) written by two nodes at
// once, one sqlite3 process per row: SQLite's own fcntl locks must exclude
// writers across nodes, and what one writer committed must be what the next
// one reads. Needs the sqlite3 command (Debian package sqlite3).
import { execFile, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster } from '../harness/cluster.js';

const ROWS_PER_NODE = 500;

let cluster: Cluster;

function sqlite(db: string, sql: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('sqlite3', ['-cmd', '.timeout 60000', db, sql], { encoding: 'utf8', timeout: 60_000 });
  return { status: r.status, stdout: r.stdout.trim(), stderr: r.stderr.trim() };
}

/** Runs a bash script within timeoutMs (killed past it). */
function bash(script: string, timeoutMs: number): Promise<{ code: number | string; stderr: string; ms: number }> {
  const started = Date.now();
  return new Promise((resolve) => {
    execFile('bash', ['-c', script], { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 << 20 }, (err, _stdout, stderr) => {
      const e = err as { code?: number | string; killed?: boolean } | null;
      resolve({ code: e ? (e.killed ? 'timeout' : e.code ?? 1) : 0, stderr, ms: Date.now() - started });
    });
  });
}

beforeAll(async () => {
  if (spawnSync('sqlite3', ['-version']).status !== 0) {
    throw new Error('the sqlite3 command is missing: it must be installed by npm run setup (Debian package sqlite3)');
  }
  cluster = await Cluster.start({ nodes: 3 });
});
afterAll(async () => {
  await cluster?.stop();
});

describe('SQLite on kDFS', () => {
  it(`two nodes each insert ${ROWS_PER_NODE} rows, one transaction and one sqlite3 process a row: every row there, integrity ok`, async () => {
    const made = sqlite(cluster.path(1, 'app.db'),
      'CREATE TABLE t(id INTEGER PRIMARY KEY, node INTEGER NOT NULL, i INTEGER NOT NULL, payload BLOB, UNIQUE(node, i)); PRAGMA journal_mode;');
    expect([made.status, made.stdout, made.stderr]).toEqual([0, 'delete', '']);

    // a payload of 100 to 4,099 bytes: rows spill over pages and pages split
    const writer = (id: number) => `
      db=${JSON.stringify(cluster.path(id, 'app.db'))}
      for i in $(seq 1 ${ROWS_PER_NODE}); do
        sqlite3 -cmd '.timeout 60000' "$db" "INSERT INTO t(node, i, payload) VALUES (${id}, $i, randomblob(100 + ($i * 97) % 4000))" || { echo "row $i of node ${id} failed" >&2; exit 1; }
      done`;
    const [a, b] = await Promise.all([bash(writer(2), 150_000), bash(writer(3), 150_000)]);
    console.log(`SQLite, 2 x ${ROWS_PER_NODE} inserts: node 2 took ${a.ms} ms, node 3 ${b.ms} ms`);
    expect([a.code, a.stderr, b.code, b.stderr]).toEqual([0, '', 0, '']);

    for (const id of [1, 2, 3]) {
      const db = cluster.path(id, 'app.db');
      const check = sqlite(db, 'PRAGMA integrity_check;');
      expect([check.status, check.stdout, check.stderr]).toEqual([0, 'ok', '']);
      const counts = sqlite(db, 'SELECT count(*), count(DISTINCT node * 100000 + i), sum(node = 2), sum(node = 3), min(i), max(i), sum(length(payload) = 100 + (i * 97) % 4000) FROM t;');
      expect(counts.stdout).toBe(`${2 * ROWS_PER_NODE}|${2 * ROWS_PER_NODE}|${ROWS_PER_NODE}|${ROWS_PER_NODE}|1|${ROWS_PER_NODE}|${2 * ROWS_PER_NODE}`);
    }
    // no transaction left behind
    expect(fs.existsSync(cluster.path(1, 'app.db-journal'))).toBe(false);
  }, 170_000);
});
