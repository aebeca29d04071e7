// Background work done in rounds (repair, moves): one round at a time, every
// intervalMs; a round asked for while one runs joins it; close waits for it.
import { log } from './log.js';

export class Rounds {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  /** Set by close: work in a round stops at its next check. */
  closed = false;

  constructor(private readonly what: string, private readonly intervalMs: number, private readonly work: () => Promise<void>) {}

  start(): void {
    this.timer = setInterval(() => void this.run(), this.intervalMs);
    this.timer.unref();
  }

  /** Stops; resolves once a round in progress is over. */
  close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    return this.running ?? Promise.resolve();
  }

  /** One round now; resolves when it is over (a round running already is joined). */
  run(): Promise<void> {
    this.running ??= this.work()
      .catch((err) => log.warn(`${this.what}: ${(err as Error).message}`))
      .finally(() => {
        this.running = null;
      });
    return this.running;
  }
}
