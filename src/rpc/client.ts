// A typed gRPC client of one service at one address. Transport failures (peer
// down past the deadline, refused fsid) become FsError(EIO) with the reason.
import * as grpc from '@grpc/grpc-js';
import { E, FsError } from '../common/errno.js';
import { RPC_MESSAGE_MAX_BYTES } from '../common/limits.js';
import { serviceDefinition } from './proto.js';
import { FSID_HEADER } from './server.js';
import type { RpcChannel } from './local.js';
import type { Methods } from './messages.js';

export class RpcClient<M extends Methods> implements RpcChannel<M> {
  private readonly client: grpc.Client;
  private readonly definition: grpc.ServiceDefinition;
  private metadata = new grpc.Metadata({ waitForReady: true });

  constructor(
    readonly address: string,
    readonly service: 'Meta' | 'Agent',
    fsid: string,
    private readonly deadlineMs: number,
  ) {
    this.definition = serviceDefinition(service);
    this.client = new grpc.Client(address, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': RPC_MESSAGE_MAX_BYTES,
      'grpc.max_send_message_length': RPC_MESSAGE_MAX_BYTES,
      // A restarted node is found again quickly.
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 1000,
    });
    this.setFsid(fsid);
  }

  setFsid(fsid: string): void {
    const metadata = new grpc.Metadata({ waitForReady: true });
    if (fsid) metadata.set(FSID_HEADER, fsid);
    this.metadata = metadata;
  }

  call<K extends keyof M & string>(method: K, request: M[K][0], deadlineMs = this.deadlineMs): Promise<M[K][1]> {
    const definition = this.definition[method];
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(
        definition.path,
        definition.requestSerialize,
        definition.responseDeserialize,
        request,
        this.metadata.clone(),
        { deadline: Date.now() + deadlineMs },
        (err, reply) => {
          if (err) reject(new FsError(E.EIO, `${this.service}.${method} at ${this.address}: ${err.details || err.message}`));
          else resolve(reply as M[K][1]);
        },
      );
    });
  }

  close(): void {
    this.client.close();
  }
}
