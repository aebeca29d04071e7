// Keys and values of the root meta-file (a level store).
//   "S"                      FsRecord: fsid, next inode number, default policy
//   "N" + node id (u32)      NodeRecord
//   "I" + ino (u64)          Inode
//   "D" + parent (u64) + name   Dirent: child ino (u64) + file type bits (u32)
//   "Z" + ino (u64)          the inode has no links left but is open somewhere
//   "O" + ino (u64)          Inode whose stripe objects are still to be removed
//   "R" + ino (u64)          the inode has replicas to repair (stale or unplaced)
//   "G" + ino (u64) + node (u32) + object (u32) + replica (u8)
//                            a stray: a copy that may be on the node and may be in
//                            no layout (moved away, or made for a move that did
//                            not commit); removed from the node unless the
//                            inode's layout has it there (see src/rebalance)
//   "Y"                      written by a sync barrier with nothing else to write
//   "C" + name (utf8)        the scheduler's state: its configuration ("config"), and
//                            the latest probe values of each node ("values"), as JSON
//   "Q" + node (u32) + incarnation (16 bytes) + call id (u32)
//                            the call was applied (metadata in etcd only, written
//                            with its changes; see src/meta/replay.ts); empty, or
//                            the reply to give it again (Append); etcd lets it
//                            expire with a lease
// Integers are big-endian so that keys sort by number, and names by bytes.
import { codec } from '../rpc/proto.js';
import type { FsRecord, Inode, Layout, NodeRecord, StripePolicy, Timespec } from '../rpc/messages.js';

export const KIND_FS = 0x53;
export const KIND_NODE = 0x4e;
export const KIND_INODE = 0x49;
export const KIND_DIRENT = 0x44;
export const KIND_ZERO_LINKS = 0x5a;
export const KIND_ORPHAN = 0x4f;
export const KIND_REPAIR = 0x52;
export const KIND_SYNC = 0x59;
export const KIND_STRAY = 0x47;
export const KIND_SCHEDULER = 0x43;
export const KIND_REQUEST = 0x51;

export const ROOT_INO = 1;
/** Inode numbers below 2^32 are reserved (the root is 1): every inode number a
 *  file gets needs all 64 bits of st_ino, so a truncation anywhere shows at once. */
export const FIRST_INO = 2 ** 32;

export interface Dirent { ino: number; mode: number }

export const fsKey = Buffer.from([KIND_FS]);

/** The key marking a node's call as applied: its node, its process's incarnation (a UUID), its id. */
export function requestKey(nodeId: number, incarnation: string, callId: number): Buffer {
  const key = Buffer.alloc(1 + 4 + 16 + 4);
  key[0] = KIND_REQUEST;
  key.writeUInt32BE(nodeId, 1);
  Buffer.from(incarnation.replace(/-/g, '').padEnd(32, '0').slice(0, 32), 'hex').copy(key, 5);
  key.writeUInt32BE(callId >>> 0, 21);
  return key;
}
/** A call's mark: when it was applied (ms), for engines that expire marks themselves. */
export function markValue(nowMs: number): Buffer {
  const value = Buffer.alloc(8);
  value.writeDoubleBE(nowMs, 0);
  return value;
}

/** When a mark was written; 0 for marks without a time (those of etcd's older records). */
export function markTimeMs(value: Buffer): number {
  return value.length >= 8 ? value.readDoubleBE(0) : 0;
}
export const syncKey = Buffer.from([KIND_SYNC]);

function u64Key(kind: number, n: number, extra = 0): Buffer {
  const key = Buffer.allocUnsafe(9 + extra);
  key[0] = kind;
  key.writeUInt32BE(Math.floor(n / 2 ** 32), 1);
  key.writeUInt32BE(n >>> 0, 5);
  return key;
}

export function readU64(buffer: Buffer, offset: number): number {
  return buffer.readUInt32BE(offset) * 2 ** 32 + buffer.readUInt32BE(offset + 4);
}

export const inodeKey = (ino: number) => u64Key(KIND_INODE, ino);
export const zeroLinksKey = (ino: number) => u64Key(KIND_ZERO_LINKS, ino);
export const orphanKey = (ino: number) => u64Key(KIND_ORPHAN, ino);
export const repairKey = (ino: number) => u64Key(KIND_REPAIR, ino);

/** A copy of an object of an inode on a node that may be in no layout. */
export interface Stray { ino: number; node: number; object: number; replica: number }

export function schedulerKey(name: string): Buffer {
  return Buffer.concat([Buffer.from([KIND_SCHEDULER]), Buffer.from(name, 'utf8')]);
}

export function strayKey(stray: Stray): Buffer {
  const key = u64Key(KIND_STRAY, stray.ino, 9);
  key.writeUInt32BE(stray.node, 9);
  key.writeUInt32BE(stray.object, 13);
  key[17] = stray.replica;
  return key;
}

export function decodeStrayKey(key: Buffer): Stray {
  return { ino: readU64(key, 1), node: key.readUInt32BE(9), object: key.readUInt32BE(13), replica: key[17] };
}

export function nodeKey(id: number): Buffer {
  const key = Buffer.allocUnsafe(5);
  key[0] = KIND_NODE;
  key.writeUInt32BE(id, 1);
  return key;
}

export function direntKey(parent: number, name: string): Buffer {
  const length = Buffer.byteLength(name);
  const key = u64Key(KIND_DIRENT, parent, length);
  key.write(name, 9, 'utf8');
  return key;
}

/** The key range of all entries of a directory, after a name if one is given. */
export function direntRange(parent: number, after: string): { gte: Buffer; lt: Buffer } {
  const upper = u64Key(KIND_DIRENT, parent, 1);
  upper[9] = 0xff; // never in UTF-8
  // the first key after `after`'s is `after`'s with a zero byte appended
  return after ? { gte: Buffer.concat([direntKey(parent, after), Buffer.alloc(1)]), lt: upper } : { gte: u64Key(KIND_DIRENT, parent), lt: upper };
}

export function encodeDirent(d: Dirent): Buffer {
  const value = u64Key(0, d.ino, 4).subarray(1);
  value.writeUInt32BE(d.mode, 8);
  return value;
}

export function decodeDirent(value: Uint8Array): Dirent {
  const b = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
  return { ino: readU64(b, 0), mode: b.readUInt32BE(8) };
}

const inodeCodec = codec<Inode>('Inode');
export const fsCodec = codec<FsRecord>('FsRecord');
export const nodeCodec = codec<NodeRecord>('NodeRecord');

export const encodeInode = (inode: Inode) => Buffer.from(inodeCodec.encode(inode));

/** Decodes to plain, mutable objects (protobufjs shares frozen defaults). */
export function decodeInode(value: Uint8Array): Inode {
  return cloneInode(inodeCodec.decode(value));
}

const cloneTime = (t: Timespec | null): Timespec => ({ sec: t?.sec ?? 0, nsec: t?.nsec ?? 0 });
const clonePolicy = (p: StripePolicy | null): StripePolicy | null => (p ? { unitBytes: p.unitBytes, count: p.count, replicas: p.replicas ?? 0, placement: p.placement ?? '' } : null);
const cloneLayout = (l: Layout | null): Layout | null =>
  l ? {
    unitBytes: l.unitBytes, nodes: [...l.nodes], replicas: l.replicas, mirrors: [...(l.mirrors ?? [])], stale: [...(l.stale ?? [])],
    moves: (l.moves ?? []).map((m) => ({ slot: m.slot, node: m.node })), gen: l.gen ?? 0,
  } : null;

export function cloneInode(inode: Inode): Inode {
  const a = inode.attr;
  return {
    attr: {
      ino: a.ino, mode: a.mode, uid: a.uid, gid: a.gid, nlink: a.nlink, size: a.size, rdev: a.rdev,
      atime: cloneTime(a.atime), mtime: cloneTime(a.mtime), ctime: cloneTime(a.ctime), blocks: a.blocks ?? 0,
    },
    layout: cloneLayout(inode.layout),
    target: inode.target ?? '',
    parent: inode.parent ?? 0,
    entries: inode.entries ?? 0,
    policy: clonePolicy(inode.policy),
    xattrs: Object.fromEntries(Object.entries(inode.xattrs ?? {}).map(([name, value]) => [name, asBuffer(value)])),
    inlined: inode.inlined ?? false,
    // never changed in place: a new buffer replaces it
    inlineData: asBuffer(inode.inlineData),
  };
}

const EMPTY = Buffer.alloc(0);

/** protobufjs decodes an empty bytes field as a plain empty array, not a Buffer
 *  (an empty inlined file read back from disk could not be spilled: EIO). */
function asBuffer(bytes: Uint8Array | null | undefined): Buffer {
  if (!bytes || bytes.length === 0) return EMPTY;
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
