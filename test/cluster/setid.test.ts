// Set-ID bits cleared by a write through another node, as ext4 clears them
// (pjdfstest chmod/12.t), compared with a local directory of the same machine.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster } from '../harness/cluster.js';
import { NOBODY, asUser } from '../harness/posix.js';

let cluster: Cluster;
let local: string;
let n = 0;
const name = (prefix = 's') => `${prefix}${++n}`;
const q = (value: string) => JSON.stringify(value);

beforeAll(async () => {
  cluster = await Cluster.start({ nodes: 3 });
  local = fs.mkdtempSync(path.join(os.tmpdir(), 'kdfs-setid-local-'));
  fs.chmodSync(local, 0o755);
});
afterAll(async () => {
  await cluster?.stop();
  if (local) fs.rmSync(local, { recursive: true, force: true });
});

describe('set-ID bits', () => {
  // pjdfstest chmod/12.t: a write by a user without CAP_FSETID clears set-user-ID,
  // and set-group-ID when group execute is set or the writer is not in the file's
  // group (Linux 6), as ext4 does; root's writes clear nothing.
  const cases: { mode: number; writer: 'nobody' | 'root'; gid: number }[] = [
    { mode: 0o4777, writer: 'nobody', gid: 0 },
    { mode: 0o2777, writer: 'nobody', gid: 0 },
    { mode: 0o6777, writer: 'nobody', gid: 0 },
    { mode: 0o2767, writer: 'nobody', gid: 0 },
    { mode: 0o2767, writer: 'nobody', gid: NOBODY.gid },
    { mode: 0o2777, writer: 'nobody', gid: NOBODY.gid },
    { mode: 0o6777, writer: 'root', gid: 0 },
  ];
  const expected = (mode: number, writer: string, gid: number) => {
    if (writer === 'root') return mode;
    let out = mode & ~0o4000;
    if ((mode & 0o10) !== 0 || gid !== NOBODY.gid) out &= ~0o2000;
    return out;
  };

  /** Creates `file` as root:gid with `mode`, then has `writer` open it O_WRONLY and write 1
   *  byte through `writePath`; returns the mode afterwards as seen through `statPath`. */
  function writeAs(file: string, writePath: string, statPath: string, mode: number, writer: string, gid: number): number {
    fs.writeFileSync(file, 'data');
    fs.chownSync(file, 0, gid);
    fs.chmodSync(file, mode);
    expect(fs.statSync(file).mode & 0o7777).toBe(mode);
    const body = `const fd = fs.openSync(${q(writePath)}, fs.constants.O_WRONLY); fs.writeSync(fd, 'x', 2); fs.closeSync(fd);`;
    const result = writer === 'root' ? asUser({ uid: 0, gid: 0 }, body) : asUser(NOBODY, body);
    expect(result).toBe('ok');
    return fs.statSync(statPath).mode & 0o7777;
  }

  for (const { mode, writer, gid } of cases) {
    const want = expected(mode, writer, gid);
    it(`a file of mode 0${mode.toString(8)} owned by root:${gid}, written by ${writer} through node 2: mode 0${want.toString(8)} seen from node 1, as on ext4`, () => {
      const reference = path.join(local, `setid-${mode.toString(8)}-${writer}-${gid}`);
      const onExt4 = writeAs(reference, reference, reference, mode, writer, gid);
      expect(onExt4.toString(8)).toBe(want.toString(8));
      const file = name('setid');
      const onKdfs = writeAs(cluster.path(1, file), cluster.path(2, file), cluster.path(1, file), mode, writer, gid);
      expect(onKdfs.toString(8)).toBe(onExt4.toString(8));
      expect(fs.statSync(cluster.path(3, file)).mode & 0o7777).toBe(onExt4);
      expect(fs.readFileSync(cluster.path(3, file), 'utf8')).toBe('daxa');
    });
  }

  it('a truncating open (O_TRUNC) by nobody through node 3 clears set-user-ID, seen from node 1', () => {
    const file = name('setid');
    fs.writeFileSync(cluster.path(1, file), 'data');
    fs.chmodSync(cluster.path(1, file), 0o4777);
    const reference = path.join(local, 'setid-trunc');
    fs.writeFileSync(reference, 'data');
    fs.chmodSync(reference, 0o4777);
    for (const p of [reference, cluster.path(3, file)]) {
      expect(asUser(NOBODY, `fs.closeSync(fs.openSync(${q(p)}, 'w'))`)).toBe('ok');
    }
    expect((fs.statSync(cluster.path(1, file)).mode & 0o7777).toString(8)).toBe((fs.statSync(reference).mode & 0o7777).toString(8));
  });
});
