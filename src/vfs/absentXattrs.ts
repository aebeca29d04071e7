// Extended attributes known to be absent, for a while: the kernel asks for
// security.capability before every write, and nearly every file has none.
/** Inodes remembered; the oldest are forgotten first. */
const INODES_MAX = 10_000;

export class AbsentXattrs {
  private readonly absent = new Map<number, { names: Set<string> | null; untilMs: number }>();

  constructor(private readonly forMs: number) {}

  has(ino: number, name: string): boolean {
    const entry = this.absent.get(ino);
    if (!entry) return false;
    if (Date.now() > entry.untilMs) {
      this.absent.delete(ino);
      return false;
    }
    return entry.names === null || entry.names.has(name);
  }

  /** The inode has no extended attributes at all (it was just made). */
  addAll(ino: number): void {
    this.absent.delete(ino);
    this.absent.set(ino, { names: null, untilMs: Date.now() + this.forMs });
    if (this.absent.size > INODES_MAX) this.absent.delete(this.absent.keys().next().value as number);
  }

  add(ino: number, name: string): void {
    let entry = this.absent.get(ino);
    if (!entry || Date.now() > entry.untilMs) {
      this.absent.delete(ino);
      entry = { names: new Set(), untilMs: Date.now() + this.forMs };
      this.absent.set(ino, entry);
      if (this.absent.size > INODES_MAX) this.absent.delete(this.absent.keys().next().value as number);
    }
    entry.names?.add(name);
  }

  /** The inode's attributes changed. */
  forget(ino: number): void {
    this.absent.delete(ino);
  }

  clear(): void {
    this.absent.clear();
  }
}
