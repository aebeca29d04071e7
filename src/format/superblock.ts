// The node's local superblock, DIR/superblock:
//   8 bytes magic "KDFS-SB1" | uint32 BE payload length | payload (protobuf
//   kdfs.Superblock) | 8 bytes xxHash64 of the payload, BE.
// Replaced atomically (temporary file, fsync, rename, fsync of the directory).
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import path from 'node:path';
import { h64, initHash } from '../common/hash.js';
import { codec } from '../rpc/proto.js';
import type { Superblock } from '../rpc/messages.js';
import { nodePaths } from './paths.js';

export const FORMAT_VERSION = 1;
const MAGIC = Buffer.from('KDFS-SB1', 'latin1');
const HEADER_BYTES = MAGIC.length + 4;
const CHECKSUM_BYTES = 8;
const PAYLOAD_MAX_BYTES = 64 * 1024;

const superblockCodec = codec<Superblock>('Superblock');

export class SuperblockError extends Error {}

export async function encodeSuperblock(sb: Superblock): Promise<Buffer> {
  await initHash();
  const payload = Buffer.from(superblockCodec.encode(sb));
  const frame = Buffer.alloc(HEADER_BYTES + payload.length + CHECKSUM_BYTES);
  MAGIC.copy(frame, 0);
  frame.writeUInt32BE(payload.length, MAGIC.length);
  payload.copy(frame, HEADER_BYTES);
  frame.writeBigUInt64BE(h64(payload), HEADER_BYTES + payload.length);
  return frame;
}

export async function decodeSuperblock(frame: Buffer, where: string): Promise<Superblock> {
  await initHash();
  if (frame.length < HEADER_BYTES + CHECKSUM_BYTES || !frame.subarray(0, MAGIC.length).equals(MAGIC)) {
    throw new SuperblockError(`${where} is not a kDFS superblock`);
  }
  const length = frame.readUInt32BE(MAGIC.length);
  if (length > PAYLOAD_MAX_BYTES || frame.length !== HEADER_BYTES + length + CHECKSUM_BYTES) {
    throw new SuperblockError(`${where}: superblock has a bad length`);
  }
  const payload = frame.subarray(HEADER_BYTES, HEADER_BYTES + length);
  if (frame.readBigUInt64BE(HEADER_BYTES + length) !== h64(payload)) {
    throw new SuperblockError(`${where}: superblock checksum mismatch (corrupted)`);
  }
  let sb: Superblock;
  try {
    sb = superblockCodec.decode(payload);
  } catch {
    throw new SuperblockError(`${where}: superblock does not decode`);
  }
  if (sb.formatVersion !== FORMAT_VERSION) {
    throw new SuperblockError(`${where}: format version ${sb.formatVersion}, this kDFS reads version ${FORMAT_VERSION}`);
  }
  return sb;
}

/** Reads and checks DIR/superblock; a missing file is "not formatted". */
export async function readSuperblock(dir: string): Promise<Superblock> {
  const file = nodePaths(dir).superblock;
  let frame: Buffer;
  try {
    frame = readFileSync(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new SuperblockError(`${dir} is not formatted for kDFS (no superblock; run mkfs.kdfs)`);
    throw new SuperblockError(`cannot read ${file}: ${(err as Error).message}`);
  }
  return decodeSuperblock(frame, file);
}

export async function writeSuperblock(dir: string, sb: Superblock): Promise<void> {
  const frame = await encodeSuperblock(sb);
  const file = nodePaths(dir).superblock;
  const temporary = file + '.new';
  const fd = openSync(temporary, 'w', 0o644);
  try {
    writeSync(fd, frame);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(temporary, file);
  fsyncDirectory(path.dirname(file));
}

export function fsyncDirectory(dir: string): void {
  const fd = openSync(dir, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
