// O_APPEND writes, made by the metadata service so that appends from several
// nodes never overwrite each other: each lands at the end of the file as the
// service knows it, one at a time per file, and the new size is committed with
// it. A small file's append goes into its inline data; otherwise the service
// writes the data to the file's stripe objects (an inlined file is spilled to
// them first), then commits the size.
import { now } from '../common/clock.js';
import { E, FsError } from '../common/errno.js';
import { FILE_MAX_BYTES, INLINE_MAX_BYTES } from '../common/limits.js';
import { isReg } from '../common/mode.js';
import { mapRange } from '../layout/stripe.js';
import { withStale } from '../layout/replicas.js';
import type { ReplicaIo } from '../replication/objects.js';
import type { Attr, Layout } from '../rpc/messages.js';
import type { Effects, MetaStore } from './store.js';
import { blocksOf } from './namespace.js';

/** Largest append in one call: one FUSE write. */
export const APPEND_MAX_BYTES = 1024 * 1024;

export class Appender {
  /** The append in progress on each file: the next waits for it. */
  private readonly tails = new Map<number, Promise<unknown>>();

  constructor(private readonly store: MetaStore, private readonly replicas: ReplicaIo) {}

  append(ino: number, data: Buffer, effects: Effects): Promise<Attr> {
    if (data.length > APPEND_MAX_BYTES) return Promise.reject(new FsError(E.EINVAL, 'append too large'));
    const previous = this.tails.get(ino) ?? Promise.resolve();
    const done = previous.catch(() => {}).then(() => this.appendNow(ino, data, effects));
    const tail = done.finally(() => {
      if (this.tails.get(ino) === tail) this.tails.delete(ino);
    });
    this.tails.set(ino, tail);
    return done;
  }

  private async appendNow(ino: number, data: Buffer, effects: Effects): Promise<Attr> {
    const inode = await this.store.run((tx) => tx.mustInode(ino));
    if (!isReg(inode.attr.mode)) throw new FsError(E.EINVAL);
    const offset = inode.attr.size;
    if (offset + data.length > FILE_MAX_BYTES) throw new FsError(E.EFBIG);
    const inline = inode.inlined && offset + data.length <= INLINE_MAX_BYTES;
    // copies that missed the data: stale in the transaction that commits the size
    const failed = new Set<number>();
    if (!inline) {
      if (!inode.layout || inode.layout.nodes.length === 0) throw new FsError(E.EIO, `inode ${ino} has no layout`);
      if (inode.inlined && inode.inlineData.length > 0) await this.write(ino, inode.layout, 0, inode.inlineData, failed);
      await this.write(ino, inode.layout, offset, data, failed);
    }
    return this.store.run((tx) => {
      const edited = tx.editInode(ino);
      // the size is still what this append read: appends to the file are one at a time
      if (inline && edited.inlined) {
        const content = Buffer.alloc(offset + data.length);
        edited.inlineData.copy(content);
        data.copy(content, offset);
        edited.inlineData = content;
      } else if (edited.inlined) {
        edited.inlined = false;
        edited.inlineData = EMPTY;
      }
      edited.attr.size = Math.max(edited.attr.size, offset + data.length);
      edited.attr.blocks = edited.inlined ? blocksOf(edited.inlineData.length)
        : Math.min(blocksOf(edited.attr.size), (edited.attr.blocks ?? 0) + blocksOf(data.length));
      edited.attr.mtime = edited.attr.ctime = now();
      if (failed.size > 0 && edited.layout) {
        edited.layout = withStale(edited.layout, failed);
        tx.setNeedsRepair(ino, true);
      }
      tx.changed(ino, true, 0);
      return edited.attr;
    }, false, effects);
  }

  private async write(ino: number, layout: Layout, offset: number, data: Buffer, failed: Set<number>): Promise<void> {
    const runs = mapRange(layout.unitBytes, layout.nodes.length, offset, data.length);
    await Promise.all(runs.map(async (run) => {
      for (const piece of run.pieces) {
        const from = piece.fileOffset - offset;
        const failedNow = await this.replicas.write(ino, layout, run.object, piece.objectOffset, data.subarray(from, from + piece.length), failed);
        for (const slot of failedNow) failed.add(slot);
      }
    }));
  }
}

const EMPTY = Buffer.alloc(0);
