// Open directories: a listing read from the metadata service page by page, as
// the kernel asks for entries by offset (0 is ".", 1 is "..", then the names).
import { E, FsError } from '../common/errno.js';
import { S_IFDIR } from '../common/mode.js';
import type { MetaClient } from '../meta/client.js';
import type { DirEntry } from '../rpc/messages.js';
import { ROOT_INO } from '../meta/records.js';

/** Most directories one node holds open at once. */
const OPEN_DIRS_MAX = 16384;

interface DirHandle {
  ino: number;
  entries: DirEntry[];
  /** The listing has more pages after the last entry. */
  more: boolean;
  loaded: boolean;
  /** The last name read from the service: where the next page starts. */
  cursor: string;
}

export class DirHandles {
  private readonly handles = new Map<number, DirHandle>();
  /** Handles open, by directory. */
  private readonly openCounts = new Map<number, number>();
  private nextFh = 0;

  /** Names the root directory's listing leaves out (MOUNT/.kdfs). */
  readonly hiddenInRoot = new Set<string>();

  /** local: the whole listing of a directory, "." and ".." first, if this node
   *  knows it without a call (null: ask the service). */
  constructor(private readonly meta: MetaClient, private readonly local: (dir: number) => DirEntry[] | null = () => null) {}

  open(ino: number): number {
    if (this.handles.size >= OPEN_DIRS_MAX) throw new FsError(E.ENFILE);
    do this.nextFh = this.nextFh >= 0x7fffffff ? 1 : this.nextFh + 1;
    while (this.handles.has(this.nextFh));
    this.handles.set(this.nextFh, { ino, entries: [], more: true, loaded: false, cursor: '' });
    this.openCounts.set(ino, (this.openCounts.get(ino) ?? 0) + 1);
    return this.nextFh;
  }

  /** The directory a handle is of (0 if none). */
  inoOf(fh: number): number {
    return this.handles.get(fh)?.ino ?? 0;
  }

  /** Whether this node holds the directory open. */
  isOpen(ino: number): boolean {
    return this.openCounts.has(ino);
  }

  /** Entries from `offset` on (at least one unless the end is reached), at most `max`. */
  async read(fh: number, offset: number, max: number): Promise<DirEntry[]> {
    const dir = this.handles.get(fh);
    if (!dir) throw new FsError(E.EBADF);
    // known here: read once, at the first read (later changes need not show, as with any listing under way)
    const local = dir.loaded ? null : this.local(dir.ino);
    if (local) {
      dir.entries = this.shown(dir.ino, local);
      dir.more = false;
      dir.loaded = true;
    } else if (!dir.loaded) {
      const first = await this.meta.readDir({ ino: dir.ino }, '');
      dir.entries = [{ name: '.', ino: first.ino, mode: S_IFDIR }, { name: '..', ino: first.parent, mode: S_IFDIR }, ...this.shown(dir.ino, first.entries)];
      dir.cursor = first.entries.at(-1)?.name ?? '';
      dir.more = first.more;
      dir.loaded = true;
    }
    while (offset >= dir.entries.length && dir.more) {
      const page = await this.meta.readDir({ ino: dir.ino }, dir.cursor);
      dir.entries.push(...this.shown(dir.ino, page.entries));
      dir.cursor = page.entries.at(-1)?.name ?? dir.cursor;
      dir.more = page.more;
    }
    return dir.entries.slice(offset, offset + max);
  }

  private shown(dir: number, entries: DirEntry[]): DirEntry[] {
    return dir === ROOT_INO && this.hiddenInRoot.size > 0 ? entries.filter((e) => !this.hiddenInRoot.has(e.name)) : entries;
  }

  release(fh: number): void {
    const dir = this.handles.get(fh);
    if (!dir) return;
    this.handles.delete(fh);
    const count = this.openCounts.get(dir.ino)!;
    if (count > 1) this.openCounts.set(dir.ino, count - 1);
    else this.openCounts.delete(dir.ino);
  }
}
