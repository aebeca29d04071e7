// Scrub of one file: every copy of every object read whole (the agents check
// each block against its checksum as they read it) and compared with the first
// good copy, up to the object's length for the file's committed size.
import { E, errnoOf } from '../common/errno.js';
import { replicasOf, slotOf } from '../layout/replicas.js';
import { objectLength } from '../layout/stripe.js';
import type { Layout } from '../rpc/messages.js';
import { replicaKey, type AgentSource } from './objects.js';

/** Bytes of each copy read at a time. */
const SCRUB_CHUNK_BYTES = 1024 * 1024;

/** good; corrupt: a block failed its checksum; stale: marked so, or its bytes differ
 *  from the first good copy's; missing: no node, or its node does not answer. */
export type CopyState = 'good' | 'corrupt' | 'stale' | 'missing';

export interface CopyVerdict { replica: number; node: number; slot: number; state: CopyState }
export interface ObjectVerdict { index: number; copies: CopyVerdict[] }

/** Checks every copy of every object of the file; `progress` is told of the bytes read. */
export async function scrubFile(agents: AgentSource, ino: number, layout: Layout, size: number,
  progress: (bytes: number) => void | Promise<void>): Promise<ObjectVerdict[]> {
  const verdicts: ObjectVerdict[] = [];
  for (let index = 0; index < layout.nodes.length; index++) {
    const length = objectLength(layout.unitBytes, layout.nodes.length, size, index);
    const copies: CopyVerdict[] = replicasOf(layout, index).map((r) => ({
      replica: r.replica, node: r.node, slot: slotOf(layout, index, r.replica), state: r.node === 0 ? 'missing' : r.stale ? 'stale' : 'good',
    }));
    // stale copies are read too: a bad block in one is still worth knowing
    const readable = copies.filter((c) => c.state !== 'missing');
    for (let offset = 0; offset < length && readable.some((c) => c.state === 'good' || c.state === 'stale'); offset += SCRUB_CHUNK_BYTES) {
      const want = Math.min(SCRUB_CHUNK_BYTES, length - offset);
      const chunks = await Promise.all(readable.map(async (copy) => {
        if (copy.state === 'corrupt' || copy.state === 'missing') return null;
        let data: Buffer;
        try {
          data = await (await agents.get(copy.node)).read(replicaKey(ino, index, copy.replica), offset, want);
        } catch (err) {
          copy.state = errnoOf(err) === E.EBADMSG ? 'corrupt' : 'missing';
          return null;
        }
        // outside the try: a progress that throws (a stop) ends the scrub, it says nothing of the copy
        await progress(want);
        return data;
      }));
      // the first good copy is the reference; a copy that differs from it is stale
      const reference = readable.findIndex((c, i) => c.state === 'good' && chunks[i] !== null);
      if (reference < 0) continue;
      const expected = padded(chunks[reference]!, want);
      readable.forEach((copy, i) => {
        if (i === reference || copy.state !== 'good' || chunks[i] === null) return;
        if (!padded(chunks[i]!, want).equals(expected)) copy.state = 'stale';
      });
    }
    verdicts.push({ index, copies });
  }
  return verdicts;
}

/** The bytes read, with the zeros of a hole at the end of a copy that is shorter. */
function padded(data: Buffer, length: number): Buffer {
  if (data.length >= length) return data.subarray(0, length);
  const whole = Buffer.alloc(length);
  data.copy(whole);
  return whole;
}
