// A budget of bytes: acquire waits, first come first served, until the bytes are
// free. What bounds memory and in-flight data, so that a fast producer waits
// (backpressure) instead of queueing without limit.
export class ByteBudget {
  private available: number;
  private readonly waiters: { bytes: number; resolve: () => void }[] = [];

  constructor(readonly capacity: number) {
    if (!(capacity > 0)) throw new RangeError('a budget needs a capacity');
    this.available = capacity;
  }

  get used(): number {
    return this.capacity - this.available;
  }

  /** Takes bytes (at most the capacity: a larger request takes all of it). */
  acquire(bytes: number): Promise<void> | void {
    const wanted = Math.min(bytes, this.capacity);
    if (this.waiters.length === 0 && wanted <= this.available) {
      this.available -= wanted;
      return;
    }
    return new Promise((resolve) => this.waiters.push({ bytes: wanted, resolve }));
  }

  /** Takes bytes if they are free now, without waiting. */
  tryAcquire(bytes: number): boolean {
    if (this.waiters.length > 0 || bytes > this.available) return false;
    this.available -= bytes;
    return true;
  }

  release(bytes: number): void {
    this.available += Math.min(bytes, this.capacity);
    if (this.available > this.capacity) throw new Error('byte budget: released more than acquired');
    while (this.waiters.length > 0 && this.waiters[0].bytes <= this.available) {
      const next = this.waiters.shift()!;
      this.available -= next.bytes;
      next.resolve();
    }
  }
}
