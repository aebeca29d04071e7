// A gRPC server for the Meta and Agent services of one node process. Every call
// but the exempt ones (Meta.Register) must carry this file system's fsid.
import * as grpc from '@grpc/grpc-js';
import { E, FsError, errnoName } from '../common/errno.js';
import { RPC_MESSAGE_MAX_BYTES } from '../common/limits.js';
import { log } from '../common/log.js';
import { serviceDefinition } from './proto.js';
import { HANDSHAKE_TIMEOUT_MS, grpcCallerNodeId, grpcServerCredentials } from '../security/tls.js';
import { boundHandshakes } from '../security/pending.js';
import assert from 'node:assert';
import type tls from 'node:tls';

/** This node does not lead the metadata service (metadata in etcd): the caller looks for the leader. */
export class NotLeader extends Error {}
export const NOT_LEADER_DETAILS = 'kdfs: not the metadata leader';

/** The trailer carrying an error's message beside its errno (see RpcClient). */
export const ERROR_MESSAGE_TRAILER = 'kdfs-error-message';
const ERROR_MESSAGE_MAX_CHARS = 1024;
import type { Handlers, Methods } from './messages.js';

export const FSID_HEADER = 'kdfs-fsid';
/** The node a call is meant for (Agent calls): another node that took over its
 *  address refuses it, as on the data channel (DataHeader.target_node). */
export const TARGET_NODE_HEADER = 'kdfs-node';
export const WRONG_NODE_DETAILS = 'kdfs: not the node meant';

/** grpc-js's server, with its TLS handshakes bounded in time and number as
 *  kDFS's other listeners' are (grpc-js has no option for it: its HTTP/2
 *  server is taken as it is made). */
class BoundedServer extends grpc.Server {}
const made = (grpc.Server.prototype as unknown as { createHttp2Server: (credentials: unknown) => tls.Server }).createHttp2Server;
assert(typeof made === 'function', 'grpc-js no longer makes its HTTP/2 servers in createHttp2Server');
(BoundedServer.prototype as unknown as { createHttp2Server: (credentials: unknown) => tls.Server }).createHttp2Server = function (this: grpc.Server, credentials: unknown) {
  const server = made.call(this, credentials);
  boundHandshakes(server, HANDSHAKE_TIMEOUT_MS, (err, socket) => log.warn(`gRPC connection refused to ${socket.remoteAddress}:${socket.remotePort}: ${err.message}`));
  return server;
};

export class RpcServer {
  /** Calls being handled, and who waits for there to be none. */
  private inFlight = 0;
  private idle: (() => void) | null = null;
  private readonly server = new BoundedServer({
    'grpc.max_receive_message_length': RPC_MESSAGE_MAX_BYTES,
    'grpc.max_send_message_length': RPC_MESSAGE_MAX_BYTES,
  });

  /** fsid(): the identity callers must present; "" refuses every checked call.
   *  authorize: why a call from the member node whose certificate this is
   *  (null: it names none) is refused, or null to serve it. */
  constructor(
    private readonly fsid: () => string,
    private readonly authorize: (method: string, request: unknown, callerNodeId: number | null) => string | null = () => null,
    /** This server's node, which calls naming another are refused (0: not checked). */
    private readonly nodeId = 0,
  ) {}

  addService<M extends Methods>(name: 'Meta' | 'Agent', handlers: Handlers<M>, exempt: ReadonlyArray<keyof M> = []): void {
    const definition = serviceDefinition(name);
    const implementation: grpc.UntypedServiceImplementation = {};
    for (const method of Object.keys(definition)) {
      const handler = handlers[method] as ((request: unknown) => Promise<unknown>) | undefined;
      if (!handler) throw new Error(`no handler for ${name}.${method}`);
      const checked = !exempt.includes(method);
      implementation[method] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        const refusal = this.authorize(method, call.request, grpcCallerNodeId(call));
        if (refusal) {
          log.warn(`refused ${name}.${method} from ${call.getPeer()}: ${refusal}`);
          callback({ code: grpc.status.PERMISSION_DENIED, details: `kdfs: ${refusal}` });
          return;
        }
        if (checked) {
          const presented = call.metadata.get(FSID_HEADER)[0];
          const expected = this.fsid();
          if (!expected || presented !== expected) {
            callback({ code: grpc.status.FAILED_PRECONDITION, details: `kdfs: refused a caller of another file system (${String(presented ?? 'no fsid')})` });
            return;
          }
          const meant = Number(call.metadata.get(TARGET_NODE_HEADER)[0] ?? 0);
          if (meant && this.nodeId && meant !== this.nodeId) {
            log.warn(`refused ${name}.${method} from ${call.getPeer()}: meant for node ${meant}, and this is node ${this.nodeId}`);
            callback({ code: grpc.status.FAILED_PRECONDITION, details: `${WRONG_NODE_DETAILS}: this is node ${this.nodeId}, not node ${meant}` });
            return;
          }
        }
        this.inFlight++;
        handler.call(handlers, call.request).then(
          (reply) => callback(null, reply),
          (err: unknown) => {
            if (err instanceof NotLeader) {
              callback({ code: grpc.status.UNAVAILABLE, details: `${NOT_LEADER_DETAILS}: ${err.message}` });
              return;
            }
            if (err instanceof FsError) {
              // what the service says beyond the errno goes back too, for the commands to show
              const trailer = new grpc.Metadata();
              if (err.message && err.message !== errnoName(err.errno)) trailer.set(ERROR_MESSAGE_TRAILER, err.message.slice(0, ERROR_MESSAGE_MAX_CHARS));
              callback(null, { errno: err.errno }, trailer);
              return;
            }
            // a request whose numbers or JSON do not fit: the caller's mistake, not the service's
            if (err instanceof RangeError || err instanceof SyntaxError) {
              callback(null, { errno: E.EINVAL });
              return;
            }
            log.error(`${name}.${method}: ${(err as Error)?.stack ?? String(err)}`);
            callback({ code: grpc.status.INTERNAL, details: String((err as Error)?.message ?? err) });
          },
        ).finally(() => {
          if (--this.inFlight === 0) this.idle?.();
        });
      };
    }
    this.server.addService(definition, implementation);
  }

  /** Binds HOST:PORT (port 0 picks a free one) and returns the port bound. */
  listen(address: string): Promise<number> {
    return new Promise((resolve, reject) => {
      this.server.bindAsync(address, grpcServerCredentials(), (err, port) => {
        if (err) reject(new Error(`cannot listen on ${address}: ${err.message}`));
        else resolve(port);
      });
    });
  }

  /** Lets calls in progress finish for up to graceMs, then closes every connection.
   *  (Waiting for peers to close their connections would take as long as they live.) */
  async stop(graceMs = 2000): Promise<void> {
    if (this.inFlight > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, graceMs);
        this.idle = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    this.server.forceShutdown();
  }
}
