// A map that forgets its least recently set entries first, past a bound.
//
// The usual way to keep a Map in recency order, deleting a key and setting it
// again at each use, is quadratic in V8: a deleted entry stays in its bucket's
// chain until the table is rebuilt, so a key deleted and set again and again
// (a directory's attributes, dropped and put at every create in it) makes each
// of its later lookups walk all of its dead copies. Measured: 18 µs a set in a
// map of 60 000 entries, against 0.1 µs. So here:
// - an entry moves to the end only when at least half the map was set since it
//   last moved: the order is that of recency to within half the map;
// - a deleted key keeps its entry, marked absent, until the map is rebuilt
//   (once it holds as many absent entries as present ones, and at least
//   REBUILD_MIN): a key deleted and set again reuses its entry;
// - the oldest entries are found with one iterator kept from one to the next:
//   a new iterator starts at the first slot of the table and walks every entry
//   deleted before it, which for a map at its bound is all the evicted ones.
const REBUILD_MIN = 1024;

interface Entry<V> { value: V | undefined; present: boolean; movedAt: number }

export class RecentMap<K, V> {
  private entries = new Map<K, Entry<V>>();
  private sets = 0;
  private absent = 0;
  /** Where the oldest entry is (see the header); V8's Map iterators follow the table through rehashes. */
  private oldest: IterableIterator<K> | null = null;

  /** maxEntries: past it, the oldest entry is forgotten at each set. */
  constructor(private readonly maxEntries = Infinity) {}

  get size(): number {
    return this.entries.size - this.absent;
  }

  get(key: K): V | undefined {
    return this.entries.get(key)?.value;
  }

  has(key: K): boolean {
    return this.entries.get(key)?.present ?? false;
  }

  /** Sets the value, and marks the key as used now. */
  set(key: K, value: V): void {
    this.sets++;
    const entry = this.entries.get(key);
    if (entry) {
      entry.value = value;
      if (!entry.present) {
        entry.present = true;
        this.absent--;
      }
      if (this.sets - entry.movedAt <= this.entries.size / 2) return;
      this.entries.delete(key);
      entry.movedAt = this.sets;
      this.entries.set(key, entry);
      return;
    }
    this.entries.set(key, { value, present: true, movedAt: this.sets });
    while (this.size > this.maxEntries) this.removeOldest();
  }

  delete(key: K): boolean {
    const entry = this.entries.get(key);
    if (!entry?.present) return false;
    entry.present = false;
    entry.value = undefined;
    this.absent++;
    if (this.absent >= REBUILD_MIN && this.absent >= this.entries.size / 2) this.rebuild();
    return true;
  }

  clear(): void {
    this.entries.clear();
    this.absent = 0;
    this.oldest = null;
  }

  /** Keys and values, least recently set first. */
  *[Symbol.iterator](): IterableIterator<[K, V]> {
    for (const [key, entry] of this.entries) if (entry.present) yield [key, entry.value as V];
  }

  *values(): IterableIterator<V> {
    for (const [, value] of this) yield value;
  }

  /** Removes the least recently set entry, and returns it (undefined if empty). */
  removeOldest(): [K, V] | undefined {
    while (this.size > 0) {
      let next = this.oldest?.next();
      if (!next || next.done) {
        this.oldest = this.entries.keys();
        next = this.oldest.next();
      }
      const key = next.value as K;
      const entry = this.entries.get(key)!;
      this.entries.delete(key);
      if (entry.present) return [key, entry.value as V];
      this.absent--;
    }
    return undefined;
  }

  private rebuild(): void {
    const entries = new Map<K, Entry<V>>();
    for (const [key, entry] of this.entries) if (entry.present) entries.set(key, entry);
    this.entries = entries;
    this.absent = 0;
    this.oldest = null;
  }
}
