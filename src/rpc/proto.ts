// Loads proto/kdfs.proto once and turns its services into grpc-js definitions.
import { existsSync } from 'node:fs';
import path from 'node:path';
import protobuf from 'protobufjs';
import type { ServiceDefinition } from '@grpc/grpc-js';

// 64-bit integers decode as plain numbers: inode numbers, sizes and offsets stay
// below 2^53 (FILE_MAX_BYTES is 2^43, inode numbers are allocated upward from 2^32).
protobuf.util.Long = undefined as unknown as typeof protobuf.util.Long;
protobuf.configure();

function findProto(): string {
  for (let dir = __dirname; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'proto', 'kdfs.proto');
    if (existsSync(candidate)) return candidate;
    if (path.dirname(dir) === dir) throw new Error('proto/kdfs.proto not found above ' + __dirname);
  }
}

export const root = protobuf.loadSync(findProto());

export function messageType(name: string): protobuf.Type {
  return root.lookupType('kdfs.' + name);
}

/** encode/decode of one message type, for records stored on disk. */
export function codec<T>(name: string): { encode(value: T): Uint8Array; decode(bytes: Uint8Array): T } {
  const type = messageType(name);
  return {
    encode: (value) => type.encode(value as object).finish(),
    decode: (bytes) => type.decode(bytes) as unknown as T,
  };
}

const definitions = new Map<string, ServiceDefinition>();

export function serviceDefinition(serviceName: 'Meta' | 'Agent'): ServiceDefinition {
  let definition = definitions.get(serviceName);
  if (definition) return definition;
  const service = root.lookupService('kdfs.' + serviceName);
  const methods: Record<string, ServiceDefinition[string]> = {};
  for (const method of service.methodsArray) {
    const requestType = root.lookupType(method.resolvedRequestType?.fullName ?? method.requestType);
    const responseType = root.lookupType(method.resolvedResponseType?.fullName ?? method.responseType);
    methods[method.name] = {
      path: `/kdfs.${serviceName}/${method.name}`,
      requestStream: false,
      responseStream: false,
      requestSerialize: (value: object) => encodeToBuffer(requestType, value),
      requestDeserialize: (bytes: Buffer) => requestType.decode(bytes),
      responseSerialize: (value: object) => encodeToBuffer(responseType, value),
      responseDeserialize: (bytes: Buffer) => responseType.decode(bytes),
    };
  }
  definition = methods as ServiceDefinition;
  definitions.set(serviceName, definition);
  return definition;
}

function encodeToBuffer(type: protobuf.Type, value: object): Buffer {
  const bytes = type.encode(value).finish();
  // protobufjs hands out a Uint8Array (a Buffer under Node); wrap without copying.
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
