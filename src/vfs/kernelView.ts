// What this node's kernel was last told of each regular file (size and mtime),
// to keep close-to-open consistency without throwing away good caches: at open,
// if the file is as the kernel knows it, its cached pages stay; if another node
// changed it, the kernel drops its attributes and pages.
import { RecentMap } from '../common/recentMap.js';
import type { Attr, Timespec } from '../rpc/messages.js';

/** Files remembered; the oldest are forgotten first, and a forgotten file is treated as changed. */
const FILES_MAX = 100_000;

interface Told { size: number; mtimeSec: number; mtimeNsec: number }

export class KernelView {
  private readonly told = new RecentMap<number, Told>(FILES_MAX);

  /** The kernel was handed these attributes. */
  record(attr: Attr): void {
    this.told.set(attr.ino, { size: attr.size, mtimeSec: attr.mtime?.sec ?? 0, mtimeNsec: attr.mtime?.nsec ?? 0 });
  }

  /** The kernel's page cache took a local write: it knows the new size and the mtime we will commit. */
  wrote(ino: number, end: number, mtime: Timespec): void {
    const told = this.told.get(ino);
    if (!told) return;
    told.size = Math.max(told.size, end);
    told.mtimeSec = mtime.sec;
    told.mtimeNsec = mtime.nsec;
  }

  /** True if attr is what the kernel was last told: its cached pages are current. */
  matches(attr: Attr): boolean {
    const told = this.told.get(attr.ino);
    return told !== undefined && told.size === attr.size && told.mtimeSec === (attr.mtime?.sec ?? 0) && told.mtimeNsec === (attr.mtime?.nsec ?? 0);
  }

  forget(ino: number): void {
    this.told.delete(ino);
  }
}
