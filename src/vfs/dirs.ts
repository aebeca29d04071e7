// Open directories: a listing read from the metadata service page by page, as
// the kernel asks for entries by offset (0 is ".", 1 is "..", then the names).
import { E, FsError } from '../common/errno.js';
import { S_IFDIR } from '../common/mode.js';
import type { MetaClient } from '../meta/client.js';
import type { DirEntry } from '../rpc/messages.js';

/** Most directories one node holds open at once. */
const OPEN_DIRS_MAX = 16384;

interface DirHandle {
  ino: number;
  entries: DirEntry[];
  /** The listing has more pages after the last entry. */
  more: boolean;
  loaded: boolean;
}

export class DirHandles {
  private readonly handles = new Map<number, DirHandle>();
  private nextFh = 0;

  constructor(private readonly meta: MetaClient) {}

  open(ino: number): number {
    if (this.handles.size >= OPEN_DIRS_MAX) throw new FsError(E.ENFILE);
    do this.nextFh = this.nextFh >= 0x7fffffff ? 1 : this.nextFh + 1;
    while (this.handles.has(this.nextFh));
    this.handles.set(this.nextFh, { ino, entries: [], more: true, loaded: false });
    return this.nextFh;
  }

  /** Entries from `offset` on (at least one unless the end is reached), at most `max`. */
  async read(fh: number, offset: number, max: number): Promise<DirEntry[]> {
    const dir = this.handles.get(fh);
    if (!dir) throw new FsError(E.EBADF);
    if (!dir.loaded) {
      const first = await this.meta.readDir({ ino: dir.ino }, '');
      dir.entries = [{ name: '.', ino: first.ino, mode: S_IFDIR }, { name: '..', ino: first.parent, mode: S_IFDIR }, ...first.entries];
      dir.more = first.more;
      dir.loaded = true;
    }
    while (offset >= dir.entries.length && dir.more) {
      const page = await this.meta.readDir({ ino: dir.ino }, dir.entries[dir.entries.length - 1].name);
      dir.entries.push(...page.entries);
      dir.more = page.more;
    }
    return dir.entries.slice(offset, offset + max);
  }

  release(fh: number): void {
    this.handles.delete(fh);
  }
}
