// fallocate(2) through a node that is not the root: preallocation, punched
// holes and zeroed ranges, done on every copy of the objects, seen by the other
// nodes at once, and compared with a local directory of the same machine.
import { randomBytes } from 'node:crypto';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster, command } from '../harness/cluster.js';
import { MiB } from '../harness/faults.js';
import { poll } from '../harness/locker.js';

let cluster: Cluster | null = null;
let local: string | null = null;

afterEach(async () => {
  await cluster?.stop();
  cluster = null;
  if (local) fs.rmSync(local, { recursive: true, force: true });
  local = null;
});

/** util-linux fallocate(1) on the file; its exit code and message. */
async function fallocate(file: string, ...args: (string | number)[]) {
  return command('fallocate', [...args.map(String), file]);
}

const blocksOf = (file: string) => fs.statSync(file).blocks;

describe('fallocate through node 2', () => {
  it('punches holes and zeroes ranges as a local file system does, on every copy; node 3 reads the zeros at once', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3 }));
    local = fs.mkdtempSync(path.join(os.tmpdir(), 'kdfs-fallocate-local-'));
    const data = randomBytes(3 * MiB + 5000);
    const reference = path.join(local, 'f');
    fs.writeFileSync(reference, data);
    fs.writeFileSync(c.path(1, 'f'), data);
    // node 3 reads it first: its page cache holds the bytes about to change
    expect(fs.readFileSync(c.path(3, 'f')).equals(data)).toBe(true);
    const blocksBefore = blocksOf(c.path(3, 'f'));

    const steps: (string | number)[][] = [
      ['--punch-hole', '--offset', 1000, '--length', MiB + 2000], // across a stripe unit, partial blocks at both ends
      ['--zero-range', '--offset', 2 * MiB + 10, '--length', 4096], // inside one unit
      ['--zero-range', '--offset', 3 * MiB, '--length', 2 * MiB], // past the end: the file grows
      ['--punch-hole', '--offset', 4 * MiB + 512, '--length', 4 * MiB], // past the end: it does not
    ];
    for (const step of steps) {
      expect(await fallocate(reference, ...step)).toMatchObject({ code: 0 });
      const done = await fallocate(c.path(2, 'f'), ...step);
      expect(done.code, done.stderr).toBe(0);
      // at once, through the other nodes (no sleep): the same size and bytes as the local file
      const expected = fs.readFileSync(reference);
      for (const id of [3, 1]) {
        expect(fs.statSync(c.path(id, 'f')).size, `size through node ${id} after ${step.join(' ')}`).toBe(expected.length);
        expect(fs.readFileSync(c.path(id, 'f')).equals(expected), `bytes through node ${id} after ${step.join(' ')}`).toBe(true);
      }
      // the first punch freed a MiB of each copy
      if (step === steps[0]) expect(blocksOf(c.path(3, 'f')) * 512).toBeLessThanOrEqual(blocksBefore * 512 - MiB + 8192);
    }
    // every copy of every object agrees (checksums of the punched blocks included)
    const scrub = await c.kdfs(['scrub', '--json', c.path(2, 'f')]);
    expect(scrub.code, scrub.stdout + scrub.stderr).toBe(0);
  });

  it('preallocates (growing the file, or past its end with --keep-size), and a punch gives the blocks back', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3 }));
    const made = await fallocate(c.path(2, 'pre'), '--length', 8 * MiB);
    expect(made.code, made.stderr).toBe(0);
    expect(fs.statSync(c.path(3, 'pre')).size).toBe(8 * MiB);
    // st_blocks: the space of one copy, as the objects take it
    expect(blocksOf(c.path(3, 'pre')) * 512).toBeGreaterThanOrEqual(8 * MiB);
    expect(fs.readFileSync(c.path(3, 'pre')).equals(Buffer.alloc(8 * MiB))).toBe(true);

    // a small file (its content in the metadata) preallocated past its end
    fs.writeFileSync(c.path(2, 'small'), 'hi\n');
    expect(await fallocate(c.path(2, 'small'), '--keep-size', '--length', 4 * MiB)).toMatchObject({ code: 0 });
    expect(fs.statSync(c.path(3, 'small')).size).toBe(3);
    expect(blocksOf(c.path(3, 'small')) * 512).toBeGreaterThanOrEqual(4 * MiB);
    expect(fs.readFileSync(c.path(3, 'small'), 'utf8')).toBe('hi\n');
    // and one that stays small: nothing to allocate, its size as asked
    expect(await fallocate(c.path(2, 'tiny'), '--length', 100)).toMatchObject({ code: 0 });
    expect(fs.readFileSync(c.path(3, 'tiny')).equals(Buffer.alloc(100))).toBe(true);

    expect(await fallocate(c.path(2, 'pre'), '--punch-hole', '--offset', 0, '--length', 8 * MiB)).toMatchObject({ code: 0 });
    expect(blocksOf(c.path(3, 'pre')) * 512).toBeLessThan(MiB);
    expect(fs.statSync(c.path(3, 'pre')).size).toBe(8 * MiB);
    for (const name of ['pre', 'small']) {
      const scrub = await c.kdfs(['scrub', '--json', c.path(1, name)]);
      expect(scrub.code, scrub.stdout + scrub.stderr).toBe(0);
    }
  });

  it('a punch that a dead node missed: its copies are stale, never read, and repaired once it is back', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3 }));
    const data = randomBytes(6 * MiB);
    fs.writeFileSync(c.path(1, 'f'), data);
    // opened while node 3 is up (a writer leaves out only the copies stale at its open), punched once it is dead
    const script = [
      'import ctypes, os, sys', 'libc = ctypes.CDLL(None, use_errno=True)',
      'libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]',
      `fd = os.open(${JSON.stringify(c.path(2, 'f'))}, os.O_RDWR)`, 'print("open", flush=True)', 'sys.stdin.readline()',
      `r = libc.fallocate(fd, 3, 0, ${6 * MiB})`, 'print("punched" if r == 0 else os.strerror(ctypes.get_errno()), flush=True)', 'os.close(fd)',
    ].join('\n');
    const puncher = spawn('timeout', ['-k', '2', '60', 'python3', '-c', script], { stdio: ['pipe', 'pipe', 'inherit'] });
    let said = '';
    puncher.stdout.on('data', (chunk: Buffer) => (said += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => puncher.on('exit', (code) => resolve(code)));
    try {
      expect(await poll(async () => said.includes('open'), 20_000, 50)).not.toBeNull();
      await c.kill9(3);
      puncher.stdin.write('\n');
      expect(await exited).toBe(0);
    } finally {
      puncher.kill('SIGKILL');
    }
    expect(said).toContain('punched');
    const zeros = Buffer.alloc(6 * MiB);
    expect(fs.readFileSync(c.path(1, 'f')).equals(zeros)).toBe(true);
    await c.mount(3);
    // node 3's own copies hold the old bytes: read through node 3 at once, the file is still zeros
    expect(fs.readFileSync(c.path(3, 'f')).equals(zeros)).toBe(true);
    expect(await poll(async () => (await c.kdfs(['scrub', '--json', c.path(2, 'f')])).code === 0, 60_000, 500)).not.toBeNull();
    expect(blocksOf(c.path(3, 'f')) * 512).toBeLessThan(MiB);
  });

  it('refuses what it cannot do: modes other file systems lack (EOPNOTSUPP), room a node does not have (ENOSPC, the size unchanged)', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3 }));
    fs.writeFileSync(c.path(1, 'kept'), randomBytes(MiB));
    const inserted = await command('xfs_io', ['-c', 'finsert 0 4096', c.path(2, 'kept')]);
    expect(inserted.stdout + inserted.stderr).toMatch(/not supported/i);
    expect(fs.statSync(c.path(3, 'kept')).size).toBe(MiB);

    // node 3's objects on a small disk of their own
    const objects = path.join(c.nodeDir(3), 'objects');
    expect((await command('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'kdfs-test-full', objects])).code).toBe(0);
    try {
      for (let b = 0; b < 256; b++) fs.mkdirSync(path.join(objects, b.toString(16).padStart(2, '0')));
      const full = await fallocate(c.path(2, 'big'), '--length', 96 * MiB);
      expect(full.code).not.toBe(0);
      expect(full.stderr).toMatch(/No space left/);
      expect(fs.statSync(c.path(3, 'big')).size).toBe(0);
      expect(fs.statSync(c.path(1, 'big')).size).toBe(0);
    } finally {
      await command('umount', ['-l', objects]);
    }
  });
});
