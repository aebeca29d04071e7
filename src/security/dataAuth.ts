// Authentication of the data channel (agents' object reads and writes), which
// keeps its own framing for speed instead of TLS: members share a data key
// that the metadata service gives them over mutual TLS (Meta.DataKey) and
// replaces when a node is revoked. A connection proves both ends hold it
// (HMAC-SHA256 over fresh nonces of both sides), then, unless protection is
// off (mount option data_protection=off, for trusted networks), every frame
// carries a MAC (GMAC) of its header and data under a key of that connection, with
// a sequence number per direction: a frame changed, replayed, dropped or
// reordered on the way is refused and the connection closed.
import { createCipheriv, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { DataHeader } from '../rpc/messages.js';

export interface DataKey { key: Buffer; epoch: number }

const NONCE_BYTES = 16;
/** A key this old is asked for again before it is used to accept a connection. */
const KEY_REFRESH_MS = 1000;

let source: (() => Promise<DataKey>) | null = null;
let protectFrames = true;

/** Whether this process's data connections MAC every frame (mount option data_protection). */
export function setDataProtection(on: boolean): void {
  protectFrames = on;
}

export function dataProtection(): boolean {
  return protectFrames;
}
let cached: { key: DataKey; atMs: number } | null = null;
let fetching: Promise<DataKey> | null = null;

/** Where this process gets the data key (its node's metadata client). */
export function useDataKeySource(fetch: () => Promise<DataKey>): void {
  source = fetch;
  cached = null;
}

/** Drops the key this process holds: the next use asks for the current one. */
export function forgetDataKey(): void {
  cached = null;
}

/** The current data key; `fresh` asks the service again unless it was asked
 *  just now, and a peer's newer epoch (atLeastEpoch) always does. */
export async function currentDataKey(fresh = false, atLeastEpoch = 0): Promise<DataKey> {
  if (cached && cached.key.epoch >= atLeastEpoch && (!fresh || Date.now() - cached.atMs < KEY_REFRESH_MS)) return cached.key;
  if (!source) throw new Error('this process has no data key: it is not a member');
  fetching ??= source().then((key) => {
    cached = { key, atMs: Date.now() };
    return key;
  }).finally(() => {
    fetching = null;
  });
  return fetching;
}

export const newNonce = (): Buffer => randomBytes(NONCE_BYTES);

function mac(key: Buffer, ...parts: (string | Uint8Array)[]): Buffer {
  const h = createHmac('sha256', key);
  for (const part of parts) h.update(part);
  return h.digest();
}

/** What the agent proves: it holds the key, for this client's nonce and its own. */
export const agentProof = (key: Buffer, clientNonce: Uint8Array, agentNonce: Uint8Array): Buffer => mac(key, 'kdfs data agent', clientNonce, agentNonce);

/** What the client proves, binding its node id and its choice of protection. */
export const clientProof = (key: Buffer, clientNonce: Uint8Array, agentNonce: Uint8Array, nodeId: number, protect: boolean): Buffer =>
  mac(key, 'kdfs data client', clientNonce, agentNonce, `${nodeId}:${protect ? 1 : 0}`);

export function proofsEqual(a: Uint8Array | undefined, b: Buffer): boolean {
  return a !== undefined && a.length === b.length && timingSafeEqual(a, b);
}

/** The MACs of one connection's frames, one sequence per direction. */
export class FrameMacs {
  private readonly connectionKey: Buffer;
  private sentSeq = 0n;
  private receivedSeq = 0n;

  /** sender: 'client' or 'agent', the side this end is. */
  constructor(key: Buffer, clientNonce: Uint8Array, agentNonce: Uint8Array, private readonly side: 'client' | 'agent') {
    this.connectionKey = mac(key, 'kdfs data connection', clientNonce, agentNonce);
  }

  /** GMAC (AES-256-GCM over nothing, the frame as associated data): ten times
   *  as fast as HMAC-SHA256 here, so that protection costs little. Its IV, the
   *  direction and the sequence number, is never used twice with one key. */
  private frameMac(from: 'client' | 'agent', seq: bigint, header: DataHeader, data: Uint8Array | null): Buffer {
    const k = header.key;
    // (a key's generation, when it has one: it decides whether a fenced copy takes a write)
    const gen = k?.gen ? `:g${k.gen}` : '';
    const fields = `${header.id ?? 0}:${header.op ?? 0}:${k?.ino ?? 0}:${k?.index ?? 0}:${k?.replica ?? 0}${gen}:${header.offset ?? 0}:${header.length ?? 0}:${header.errno ?? 0}:${data?.length ?? 0}`;
    const iv = Buffer.alloc(12);
    iv[0] = from === 'client' ? 1 : 2;
    iv.writeBigUInt64BE(seq, 4);
    const gcm = createCipheriv('aes-256-gcm', this.connectionKey, iv);
    gcm.setAAD(Buffer.from(fields));
    if (data && data.length > 0) gcm.setAAD(data);
    gcm.final();
    return gcm.getAuthTag();
  }

  /** The header to send, with its MAC. */
  sign(header: DataHeader, data: Uint8Array | null): DataHeader {
    return { ...header, mac: this.frameMac(this.side, this.sentSeq++, header, data) };
  }

  /** Whether a received frame is the next one the other side sent, unchanged. */
  verify(header: DataHeader, data: Uint8Array | null): boolean {
    const from = this.side === 'client' ? 'agent' : 'client';
    // the header as decoded: fields at their default are on its prototype, not its own
    return proofsEqual(header.mac, this.frameMac(from, this.receivedSeq++, header, data));
  }
}
