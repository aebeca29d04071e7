// A typed gRPC client of one service at one address. A call waits for its peer
// (a node restarting) up to its deadline: calls not yet sent wait in gRPC
// (waitForReady), calls cut off by a dropped connection, or sent to a peer
// that moved (a new metadata leader) and not answered yet, are sent again, so
// every RPC of kDFS must be safe to repeat (one the old peer applied before it
// stopped may be answered as a failure by the new one: an admin command's
// error then does not prove it was not done; the nodes' namespace calls go
// over sessions, whose replies are kept for calls sent again). Failures past the deadline, and a
// refused fsid, become FsError(EIO) with the reason. A call its caller gave up
// on (its signal aborted) is cancelled: never sent again, not even to the
// peer's new address.
import * as grpc from '@grpc/grpc-js';
import { E, FsError } from '../common/errno.js';
import { RPC_MESSAGE_MAX_BYTES } from '../common/limits.js';
import { serviceDefinition } from './proto.js';
import { MEMBER_SERVERNAME, grpcChannelCredentials } from '../security/tls.js';
import { ERROR_MESSAGE_TRAILER, FSID_HEADER, NOT_LEADER_DETAILS, TARGET_NODE_HEADER, WRONG_NODE_DETAILS } from './server.js';
import type { CallOptions, RpcChannel } from './local.js';
import type { Methods } from './messages.js';

/** Pauses between attempts of a call cut off by a dropped connection. */
const RETRY_FIRST_MS = 50;
const RETRY_MAX_MS = 1000;

export class RpcClient<M extends Methods> implements RpcChannel<M> {
  private client: grpc.Client;
  private readonly definition: grpc.ServiceDefinition;
  private metadata = new grpc.Metadata({ waitForReady: true });
  /** Calls sent on the current client and not answered: cancelled and sent again at a move. */
  private inflight = new Set<grpc.ClientUnaryCall>();

  /** onUnreachable: called when the peer cannot be reached (it may have moved:
   *  see moveTo), or is another node than targetNode (0: whichever answers). */
  constructor(
    private address: string,
    readonly service: 'Meta' | 'Agent',
    fsid: string,
    private readonly deadlineMs: number,
    private readonly onUnreachable?: () => void,
    private readonly targetNode = 0,
  ) {
    this.definition = serviceDefinition(service);
    this.client = this.connect(address);
    this.setFsid(fsid);
  }

  get peer(): string {
    return this.address;
  }

  /** The peer now listens at another address: calls waiting for the old one go there. */
  moveTo(address: string): void {
    if (address !== this.address) this.reconnectTo(address);
  }

  /** The peer started again at the same address: a channel that waits out its
   *  backoff since the peer went away connects at once. */
  reconnect(): void {
    this.reconnectTo(this.address);
  }

  private reconnectTo(address: string): void {
    const old = this.client;
    this.address = address;
    this.client = this.connect(address);
    // calls already sent to the old peer (a stopped leader keeps its connection open)
    // would wait for it up to their deadline: cancelled, and sent again at the new address
    const sent = this.inflight;
    this.inflight = new Set();
    for (const call of sent) call.cancel();
    // its waiting calls fail as UNAVAILABLE, and call() sends them again on the new channel
    old.close();
  }

  private connect(address: string): grpc.Client {
    const client = new grpc.Client(address, grpcChannelCredentials(), {
      'grpc.max_receive_message_length': RPC_MESSAGE_MAX_BYTES,
      'grpc.max_send_message_length': RPC_MESSAGE_MAX_BYTES,
      'grpc.ssl_target_name_override': MEMBER_SERVERNAME,
      // A restarted node is found again quickly.
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1000,
    });
    if (this.onUnreachable) this.watch(client);
    return client;
  }

  /** Reports each failure of the channel to connect, until it is closed. */
  private watch(client: grpc.Client): void {
    const channel = client.getChannel();
    const state = channel.getConnectivityState(false);
    if (state === grpc.connectivityState.SHUTDOWN) return;
    if (state === grpc.connectivityState.TRANSIENT_FAILURE) this.onUnreachable!();
    channel.watchConnectivityState(state, Infinity, () => this.watch(client));
  }

  setFsid(fsid: string): void {
    const metadata = new grpc.Metadata({ waitForReady: true });
    if (fsid) metadata.set(FSID_HEADER, fsid);
    if (this.targetNode) metadata.set(TARGET_NODE_HEADER, String(this.targetNode));
    this.metadata = metadata;
  }

  /** options.startedMs is not used: over gRPC, the deadline alone bounds a call
   *  (agents, and the tools' calls of the metadata service). */
  async call<K extends keyof M & string>(method: K, request: M[K][0], deadlineMs = this.deadlineMs, options: CallOptions = {}): Promise<M[K][1]> {
    const { signal } = options;
    const deadline = Date.now() + deadlineMs;
    for (let backoffMs = RETRY_FIRST_MS; ; backoffMs = Math.min(backoffMs * 2, RETRY_MAX_MS)) {
      if (signal?.aborted) throw new FsError(E.EIO, `${this.service}.${method} at ${this.address}: given up`);
      try {
        return await this.once(method, request, deadline, signal);
      } catch (err) {
        let code = (err as grpc.ServiceError).code;
        // cancelled by a move (see moveTo), not by the caller: sent again
        if (code === grpc.status.CANCELLED && !signal?.aborted && (err as { moved?: boolean }).moved) code = grpc.status.UNAVAILABLE;
        // a node that does not lead the metadata service any more: where is the leader?
        if (code === grpc.status.UNAVAILABLE && (err as grpc.ServiceError).details?.startsWith(NOT_LEADER_DETAILS)) this.onUnreachable?.();
        // another node answers at the address: where is the one meant? (the call fails: it was not done)
        if (code === grpc.status.FAILED_PRECONDITION && (err as grpc.ServiceError).details?.startsWith(WRONG_NODE_DETAILS)) this.onUnreachable?.();
        if (code !== grpc.status.UNAVAILABLE || Date.now() + backoffMs >= deadline) {
          throw new FsError(E.EIO, `${this.service}.${method} at ${this.address}: ${(err as grpc.ServiceError).details || (err as Error).message}`);
        }
        await new Promise((resolve) => setTimeout(resolve, backoffMs));
      }
    }
  }

  private once<K extends keyof M & string>(method: K, request: M[K][0], deadline: number, signal?: AbortSignal): Promise<M[K][1]> {
    const definition = this.definition[method];
    return new Promise((resolve, reject) => {
      let trailer: grpc.Metadata | null = null;
      const client = this.client;
      const inflight = this.inflight;
      const call: grpc.ClientUnaryCall = client.makeUnaryRequest(
        definition.path,
        definition.requestSerialize,
        definition.responseDeserialize,
        request,
        this.metadata.clone(),
        { deadline },
        (err, reply) => {
          inflight.delete(call);
          if (err) reject(this.client !== client ? Object.assign(err, { moved: true }) : err);
          else if (!(reply as { errno?: number }).errno) resolve(reply as M[K][1]);
          // an error's message comes in the trailer, whose event follows this callback
          else setImmediate(() => resolve(withErrorMessage(reply as object, trailer) as M[K][1]));
        },
      );
      inflight.add(call);
      const cancel = () => call.cancel();
      signal?.addEventListener('abort', cancel, { once: true });
      call.on('status', (status: grpc.StatusObject) => {
        trailer = status.metadata;
        signal?.removeEventListener('abort', cancel);
      });
    });
  }

  close(): void {
    this.client.close();
  }
}

/** The message the service gave with an errno reply, if any (see withErrorMessage). */
export function errorMessageOf(reply: unknown): string | undefined {
  return (reply as { [ERROR_MESSAGE]?: string })[ERROR_MESSAGE];
}

const ERROR_MESSAGE = Symbol('error message');

function withErrorMessage(reply: object, trailer: grpc.Metadata | null): object {
  const message = trailer?.get(ERROR_MESSAGE_TRAILER)[0];
  if (typeof message === 'string') Object.defineProperty(reply, ERROR_MESSAGE, { value: message });
  return reply;
}
