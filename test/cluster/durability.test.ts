// What fsync or close acknowledged survives kill -9 of every node process; the
// root may restart under mounted nodes; a full disk is ENOSPC, not corruption.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { Cluster } from '../harness/cluster.js';
import { expectErrno, python } from '../harness/posix.js';

const MiB = 1024 * 1024;

let cluster: Cluster | null = null;
afterEach(async () => {
  await cluster?.stop();
  cluster = null;
});

describe('durability', () => {
  it('keeps what close and fsync acknowledged across kill -9 of every node and a restart', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3 }));
    const closed = randomBytes(5 * MiB + 3);
    fs.writeFileSync(c.path(1, 'closed'), closed);
    fs.mkdirSync(c.path(2, 'dir'));
    fs.writeFileSync(c.path(3, 'dir', 'a'), 'renamed');
    fs.renameSync(c.path(1, 'dir', 'a'), c.path(1, 'dir', 'b'));
    fs.linkSync(c.path(2, 'dir', 'b'), c.path(2, 'hard'));
    fs.symlinkSync('dir/b', c.path(3, 'soft'));
    fs.chmodSync(c.path(1, 'closed'), 0o640);
    expect(python(`os.setxattr(${JSON.stringify(c.path(2, 'closed'))}, 'user.k', b'v')`).status).toBe(0);
    fs.writeFileSync(c.path(1, 'cut'), randomBytes(3 * MiB));
    fs.truncateSync(c.path(1, 'cut'), 1000);
    // a small file (its data in its inode), fsynced and still open
    const small = randomBytes(2000);
    const smallFd = fs.openSync(c.path(3, 'small-synced'), 'w');
    fs.writeSync(smallFd, small);
    fs.fsyncSync(smallFd);
    // written, fsynced and still open when the processes die
    const synced = randomBytes(3 * MiB);
    const fd = fs.openSync(c.path(2, 'synced'), 'w');
    fs.writeSync(fd, synced);
    fs.fsyncSync(fd);
    const ino = fs.statSync(c.path(1, 'closed'), { bigint: true }).ino;

    for (const id of [1, 2, 3]) await c.kill9(id);
    // the mounts are stale: ENOTCONN, or ECONNABORTED on recent kernels
    let code = '';
    try {
      fs.statSync(c.mnt(2));
    } catch (err) {
      code = (err as NodeJS.ErrnoException).code ?? '';
    }
    expect(['ENOTCONN', 'ECONNABORTED']).toContain(code);
    for (const descriptor of [fd, smallFd]) {
      try {
        fs.closeSync(descriptor);
      } catch {
        // the mount is gone: so is the descriptor's file system
      }
    }
    // mount.kdfs clears the stale mounts the killed processes left
    for (const id of [1, 2, 3]) await c.mount(id);

    for (const id of [1, 2, 3]) {
      expect(fs.readFileSync(c.path(id, 'closed')).equals(closed)).toBe(true);
      expect(fs.readFileSync(c.path(id, 'synced')).equals(synced)).toBe(true);
      expect(fs.readFileSync(c.path(id, 'small-synced')).equals(small)).toBe(true);
      expect(fs.readFileSync(c.path(id, 'dir', 'b'), 'utf8')).toBe('renamed');
      expect(fs.existsSync(c.path(id, 'dir', 'a'))).toBe(false);
      expect(fs.statSync(c.path(id, 'hard')).nlink).toBe(2);
      expect(fs.readFileSync(c.path(id, 'soft'), 'utf8')).toBe('renamed');
      expect(fs.statSync(c.path(id, 'closed')).mode & 0o777).toBe(0o640);
      expect(fs.statSync(c.path(id, 'closed'), { bigint: true }).ino).toBe(ino);
      expect(fs.statSync(c.path(id, 'cut')).size).toBe(1000);
    }
    expect(python(`print(os.getxattr(${JSON.stringify(c.path(3, 'closed'))}, 'user.k').decode())`).stdout).toBe('v');
  });

  it('lets mounted nodes ride out a restart of the root, keeping their open files', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3 }));
    const data = randomBytes(4 * MiB);
    fs.writeFileSync(c.path(1, 'held'), data);
    const fd = fs.openSync(c.path(2, 'held'), 'r');
    // read back from the disk after the restart (a failover test found such a file could not grow past its inode: EIO)
    fs.writeFileSync(c.path(2, 'empty'), '');
    expect(python(`os.setxattr(${JSON.stringify(c.path(2, 'empty'))}, 'user.none', b'')`).status).toBe(0);
    await c.kill9(1);
    // node 2 waits for the root instead of failing
    const waiting = fs.promises.writeFile(c.path(2, 'during'), 'written while the root was down');
    await c.mount(1);
    await waiting;
    // unlinked on another node right after the restart: node 2 still reads it
    fs.unlinkSync(c.path(3, 'held'));
    const back = Buffer.alloc(data.length);
    expect(fs.readSync(fd, back, 0, back.length, 0)).toBe(data.length);
    expect(back.equals(data)).toBe(true);
    fs.closeSync(fd);
    expect(fs.readFileSync(c.path(1, 'during'), 'utf8')).toBe('written while the root was down');
    const grown = randomBytes(20_000);
    fs.writeFileSync(c.path(2, 'empty'), grown);
    expect(fs.readFileSync(c.path(3, 'empty')).equals(grown)).toBe(true);
    expect(python(`print(len(os.getxattr(${JSON.stringify(c.path(3, 'empty'))}, 'user.none')))`).stdout.trim()).toBe('0');
  });

  it('lets the other nodes follow a node that restarted at new addresses', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3 }));
    // node 1 talks to node 2's agent on both its channels: object data, and truncation
    const before = randomBytes(4 * MiB);
    fs.writeFileSync(c.path(1, 'before'), before);
    fs.truncateSync(c.path(1, 'before'), 3 * MiB);
    const addresses = async () => (await c.kdfs(['status', c.mnt(1)])).stdout.split('\n').find((line) => /^2\s/.test(line));
    const old = await addresses();
    await c.unmount(2);
    await c.mountElsewhere(2);
    expect(await addresses()).not.toBe(old);
    // writes and a truncation from node 1 reach node 2 where it listens now
    const after = randomBytes(4 * MiB);
    fs.writeFileSync(c.path(1, 'after'), after);
    fs.truncateSync(c.path(1, 'after'), 3 * MiB);
    expect(fs.readFileSync(c.path(3, 'after')).equals(after.subarray(0, 3 * MiB))).toBe(true);
    expect(fs.readFileSync(c.path(3, 'before')).equals(before.subarray(0, 3 * MiB))).toBe(true);
  });

  it('reports a full disk as ENOSPC to the writer, and corrupts nothing', async () => {
    const c = (cluster = await Cluster.start({ nodes: 3, diskBytes: 96 * MiB }));
    const kept = randomBytes(8 * MiB);
    fs.writeFileSync(c.path(1, 'kept'), kept);
    expectErrno(() => fs.writeFileSync(c.path(2, 'huge'), Buffer.alloc(200 * MiB, 1)), 'ENOSPC');
    // the writer's node shows at once the size that was committed, as the others do
    expect(fs.statSync(c.path(2, 'huge')).size).toBe(fs.statSync(c.path(3, 'huge')).size);
    expect(fs.readFileSync(c.path(3, 'kept')).equals(kept)).toBe(true);
    // space comes back once the file is gone, and everything works again
    fs.unlinkSync(c.path(2, 'huge'));
    const deadline = Date.now() + 30_000;
    let written = false;
    while (!written && Date.now() < deadline) {
      try {
        fs.writeFileSync(c.path(1, 'after'), Buffer.alloc(20 * MiB, 2));
        written = true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    }
    expect(written).toBe(true);
    fs.mkdirSync(c.path(2, 'still-works'));
    expect(fs.readFileSync(c.path(2, 'kept')).equals(kept)).toBe(true);
    expect(fs.statSync(c.path(3, 'after')).size).toBe(20 * MiB);
  });
});
