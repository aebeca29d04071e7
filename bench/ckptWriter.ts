// One writer of the checkpoint workload: one checkpoint set of one task, made
// as `checkpoint` makes it (src/checkpoint/sets.ts): SN allocated by mkdir, the
// state written in 1 MiB writes and fsynced in the hidden staging directory,
// the manifest (sizes and xxhash64: the state's computed as it is written, as
// the C library reports it), then the renames that commit it. Run as: node ckptWriter.js APP_DIR STATE_BYTES;
// prints the seconds it took.
import { mkdirSync, openSync, writeSync, fsyncSync, closeSync } from 'node:fs';
import path from 'node:path';
import { describeFile } from '../src/checkpoint/manifest.js';
import { h64Stream, initHash } from '../src/common/hash.js';
import { allocate, commit, writeSetFile } from '../src/checkpoint/sets.js';
import { globalName, taskMmName } from '../src/checkpoint/names.js';

const WRITE_BYTES = 1024 * 1024;

async function main(): Promise<void> {
  const [appDir, bytesText] = process.argv.slice(2);
  const stateBytes = Number(bytesText);
  const owner = { uid: 0, gid: 0 };
  mkdirSync(appDir, { recursive: true });
  const started = process.hrtime.bigint();
  const staging = await allocate(appDir, 0, owner);
  const state = taskMmName(process.pid, staging.sn);
  const fd = openSync(path.join(staging.dir, state), 'wx', 0o600);
  const block = Buffer.alloc(WRITE_BYTES, 0x5a);
  await initHash();
  const hash = h64Stream();
  for (let written = 0; written < stateBytes; written += WRITE_BYTES) {
    block.writeUInt32LE(written / WRITE_BYTES, 0); // no two blocks alike
    const piece = block.subarray(0, Math.min(WRITE_BYTES, stateBytes - written));
    hash.update(piece);
    writeSync(fd, piece);
  }
  fsyncSync(fd);
  closeSync(fd);
  await writeSetFile(staging, globalName(staging.sn), JSON.stringify({ sn: staging.sn }) + '\n', owner);
  // the state's hash is computed as it is written, as the C library (sdk/c) does and reports it
  const files = [await describeFile(path.join(staging.dir, globalName(staging.sn))), { name: state, sizeBytes: stateBytes, xxh64: hash.digest().toString(16).padStart(16, '0') }];
  await commit(staging, { app: path.basename(appDir), sn: staging.sn, timeSec: Math.floor(Date.now() / 1000), capture: 'bench', command: ['bench'], files }, owner);
  process.stdout.write(`${Number(process.hrtime.bigint() - started) / 1e9}\n`);
}

main().catch((err) => {
  process.stderr.write(`ckptWriter: ${(err as Error).message}\n`);
  process.exitCode = 1;
});
