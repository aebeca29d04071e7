// Lookups the daemon makes through its own mount (see KernelCache.lookUp), one
// at a time: each takes a thread of libuv's pool until the kernel answers,
// which waits for this daemon; they must never hold the threads the node's
// own file I/O needs.
import { lstat } from 'node:fs/promises';
import path from 'node:path';
import { log } from '../common/log.js';

/** Lookups waiting, at most; past it they are dropped (a moved directory's
 *  entry is then moved at the first lookup of its new name by any process). */
const WAITING_MAX = 256;

export class LookUps {
  private readonly waiting: string[] = [];
  private running = false;

  constructor(private readonly mountPoint: string) {}

  add(names: string[]): void {
    if (this.waiting.length >= WAITING_MAX) return;
    this.waiting.push(path.join(this.mountPoint, ...names));
    if (!this.running) void this.run();
  }

  private async run(): Promise<void> {
    this.running = true;
    try {
      for (let next = this.waiting.shift(); next !== undefined; next = this.waiting.shift()) {
        // gone again meanwhile, or the mount ended: nothing to move (lstat: a
        // name made a symbolic link meanwhile leads nowhere else)
        await lstat(next).catch((err: Error) => log.debug(`looking up ${next}: ${err.message}`));
      }
    } finally {
      this.running = false;
    }
  }
}
