// Calls of a service in the same process, without a network hop: the root
// node's own client calls its metadata service this way. Errors become errno
// replies exactly as RpcServer makes them. Replies share memory with the
// service (records of the metadata cache): callers treat them as read-only.
import { E, FsError } from '../common/errno.js';
import { log } from '../common/log.js';
import type { Handlers, Methods } from './messages.js';

/** How one call waits, beyond its deadline. */
export interface CallOptions {
  /** When the file system call it serves began, if before the call: a service
   *  not heard from since then counts as silent from then, so that calls made
   *  in turn for one file system call share one bound (docs/failures.md). */
  startedMs?: number;
  /** Cancels the call (it is never sent again). */
  signal?: AbortSignal;
}

/** What a client needs of a service: RpcClient over gRPC, or LocalChannel. */
export interface RpcChannel<M extends Methods> {
  call<K extends keyof M & string>(method: K, request: M[K][0], deadlineMs?: number, options?: CallOptions): Promise<M[K][1]>;
  setFsid(fsid: string): void;
  close(): void;
  /** How long the caller may still use what the service granted it (see
   *  src/meta/coherence.ts); none: forever (in-process, or no grants). */
  leaseRemainingMs?(): number;
  /** The service now listens at another address (a new metadata leader). */
  moveTo?(address: string): void;
}

export class LocalChannel<M extends Methods> implements RpcChannel<M> {
  /** caller: the node calling, if it is one (the root node's own client). */
  constructor(private readonly handlers: Handlers<M>, private readonly caller?: { nodeId: number }) {}

  async call<K extends keyof M & string>(method: K, request: M[K][0]): Promise<M[K][1]> {
    try {
      return await this.handlers[method](request, this.caller);
    } catch (err) {
      if (err instanceof FsError) return { errno: err.errno } as M[K][1];
      log.error(`${method}: ${(err as Error)?.stack ?? String(err)}`);
      throw new FsError(E.EIO, String((err as Error)?.message ?? err));
    }
  }

  setFsid(): void {}

  close(): void {}
}
