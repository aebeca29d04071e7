// Opens without a call: a node opens a file it closed last, whose attributes the
// metadata service still grants it, by itself, and tells the service with its
// next batch of closes (see src/vfs/contentCache.ts and src/vfs/closer.ts).
// What must hold: a change made elsewhere is seen at the next open, and a file
// unlinked elsewhere while open so stays readable, as with any open.
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, ROOT } from '../harness/cluster.js';

const MiB = 1024 * 1024;
const OPEN_RACE = path.join(ROOT, 'test', 'tools', 'openRace.py');
const RACE_SECONDS = 20;
let cluster: Cluster;
let n = 0;
const name = (prefix = 'o') => `${prefix}${++n}`;

beforeAll(async () => {
  cluster = await Cluster.start({ nodes: 3 });
});
afterAll(async () => {
  await cluster?.stop();
});

describe('opens without a call', () => {
  it('a file node 2 read before and node 3 rewrote since: node 2 reads the new content, small or striped', () => {
    const file = name();
    let content = randomBytes(100);
    fs.writeFileSync(cluster.path(3, file), content);
    for (let round = 0; round < 8; round++) {
      // node 2 reads it twice: the second open is node 2's own
      expect(fs.readFileSync(cluster.path(2, file)).equals(content)).toBe(true);
      expect(fs.readFileSync(cluster.path(2, file)).equals(content)).toBe(true);
      const size = [50, 3000, 9000, 2 * MiB + 5, 10, 8192, 1, 70_000][round];
      content = randomBytes(size);
      if (round % 2 === 0) {
        fs.writeFileSync(cluster.path(3, file), content);
      } else {
        // in place, without truncation to zero first
        const fd = fs.openSync(cluster.path(3, file), 'r+');
        fs.writeSync(fd, content, 0, content.length, 0);
        fs.ftruncateSync(fd, content.length);
        fs.closeSync(fd);
      }
    }
    expect(fs.readFileSync(cluster.path(2, file)).equals(content)).toBe(true);
  });

  it('a file node 2 opened by itself and node 3 unlinked stays readable through node 2\'s descriptor', () => {
    for (const size of [200, 3 * MiB]) {
      const file = name();
      const content = randomBytes(size);
      fs.writeFileSync(cluster.path(3, file), content);
      expect(fs.readFileSync(cluster.path(2, file)).equals(content)).toBe(true);
      const fd = fs.openSync(cluster.path(2, file), 'r');
      try {
        fs.unlinkSync(cluster.path(3, file));
        expect(fs.existsSync(cluster.path(2, file))).toBe(false);
        const st = fs.fstatSync(fd);
        expect(st.size).toBe(size);
        expect(st.nlink).toBe(0);
        const back = Buffer.alloc(size);
        expect(fs.readSync(fd, back, 0, size, 0)).toBe(size);
        expect(back.equals(content)).toBe(true);
      } finally {
        fs.closeSync(fd);
      }
    }
  });

  it('opens on node 3 racing unlinks on node 2: every descriptor that opened reads to the end', async () => {
    // The race found by hand: node 3's own opens (no call) made while it told
    // the service of its earlier ones, in answer to the unlink's callback, went
    // untold; the service deleted the file, and their reads failed with ESTALE.
    const dir = name('race');
    fs.mkdirSync(cluster.path(2, dir));
    const run = promisify(execFile);
    const side = (mode: string, id: number) => run('python3', [OPEN_RACE, mode, cluster.path(id, `${dir}/u`), String(RACE_SECONDS), '16000'], { timeout: (RACE_SECONDS + 40) * 1000, killSignal: 'SIGKILL' });
    const [writer, reader] = await Promise.all([side('write', 2), side('read', 3)]);
    const counts = JSON.parse(reader.stdout) as { opens: number; whole: number; stale: number; errors: number };
    expect(Number(writer.stdout)).toBeGreaterThan(10);
    expect(counts.whole).toBeGreaterThan(0);
    expect(counts).toMatchObject({ stale: 0, errors: 0 });
  }, (RACE_SECONDS + 60) * 1000);

  it('a file node 2 opened by itself, across kill -9 and restart of the root, then unlinked on node 3, stays readable', async () => {
    const file = name();
    const content = randomBytes(3000);
    fs.writeFileSync(cluster.path(3, file), content);
    expect(fs.readFileSync(cluster.path(2, file)).equals(content)).toBe(true);
    // node 2's own open: the service may not have heard of it when it dies
    const fd = fs.openSync(cluster.path(2, file), 'r');
    try {
      await cluster.kill9(1);
      await cluster.mount(1);
      fs.unlinkSync(cluster.path(3, file));
      const back = Buffer.alloc(content.length);
      expect(fs.readSync(fd, back, 0, back.length, 0)).toBe(content.length);
      expect(back.equals(content)).toBe(true);
      expect(fs.fstatSync(fd).nlink).toBe(0);
    } finally {
      fs.closeSync(fd);
    }
  }, 90_000);

  it('a file node 2 opened by itself and then unlinked itself stays readable and writable until closed', () => {
    const file = name();
    fs.writeFileSync(cluster.path(2, file), 'temporary');
    expect(fs.readFileSync(cluster.path(2, file), 'utf8')).toBe('temporary');
    const fd = fs.openSync(cluster.path(2, file), 'r+');
    try {
      fs.unlinkSync(cluster.path(2, file));
      expectAbsent(file);
      fs.writeSync(fd, ' file', 9);
      const back = Buffer.alloc(14);
      expect(fs.readSync(fd, back, 0, 14, 0)).toBe(14);
      expect(back.toString()).toBe('temporary file');
      expect(fs.fstatSync(fd).nlink).toBe(0);
    } finally {
      fs.closeSync(fd);
    }
  });
});

function expectAbsent(file: string): void {
  for (const id of [1, 2, 3]) expect(fs.existsSync(cluster.path(id, file))).toBe(false);
}
