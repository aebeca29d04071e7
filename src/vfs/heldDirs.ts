// Directories removed elsewhere that a process here may still hold (by a
// descriptor, as rm -rf and find do, or as its working directory). On one
// machine such a directory stays, empty and without a link, until the last
// holder lets go: fstat works, a lookup in it finds nothing (ENOENT, which
// rm -f passes over). The metadata service frees a directory at its removal
// (it counts the opens of files, not of directories), so the node answers for
// it from the attributes it last told its kernel, instead of ESTALE, which a
// call relative to a descriptor gets through to the application.
import { isDir } from '../common/mode.js';
import { RecentMap } from '../common/recentMap.js';
import type { Attr } from '../rpc/messages.js';

/** Directories whose last attributes are kept, at most (the oldest go first). */
const DIRS_MAX = 16_384;

export class HeldDirs {
  private readonly last = new RecentMap<number, Attr>(DIRS_MAX);

  /** The kernel was told these attributes. */
  told(attr: Attr): void {
    if (isDir(attr.mode)) this.last.set(attr.ino, attr);
  }

  /** The attributes of a directory freed meanwhile, as one machine shows
   *  them; null if the inode was not one the kernel was told of. */
  removed(ino: number): Attr | null {
    const last = this.last.get(ino);
    return last ? { ...last, nlink: 0, size: 0 } : null;
  }
}
