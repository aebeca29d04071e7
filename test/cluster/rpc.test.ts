// What the services of a node do with callers and requests they should not take.
import * as grpc from '@grpc/grpc-js';
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { E } from '../../src/common/errno.js';
import { readSuperblock } from '../../src/format/superblock.js';
import { RpcClient } from '../../src/rpc/client.js';
import type { AgentMethods, MetaMethods } from '../../src/rpc/messages.js';
import { Cluster } from '../harness/cluster.js';

let cluster: Cluster;
let fsid: string;

beforeAll(async () => {
  cluster = await Cluster.start({ nodes: 2 });
  fsid = (await readSuperblock(cluster.nodeDir(1))).fsid;
});
afterAll(async () => {
  await cluster?.stop();
});

/** Sends raw bytes as the request of a method, bypassing the encoder. */
function rawCall(address: string, method: string, payload: Buffer): Promise<grpc.ServiceError | null> {
  const client = new grpc.Client(address, grpc.credentials.createInsecure());
  const metadata = new grpc.Metadata();
  metadata.set('kdfs-fsid', fsid);
  return new Promise((resolve) => {
    client.makeUnaryRequest(method, (b: Buffer) => b, (b: Buffer) => b, payload, metadata, { deadline: Date.now() + 5000 }, (err) => {
      client.close();
      resolve(err);
    });
  });
}

describe('services', () => {
  it('refuse a caller of another file system', async () => {
    const stranger = new RpcClient<MetaMethods>(cluster.rootAddress, 'Meta', '00000000-0000-0000-0000-000000000000', 2000);
    await expect(stranger.call('Getattr', { path: '/' })).rejects.toThrow(/another file system/);
    stranger.close();
  });

  it('answer malformed requests with an error and keep serving', async () => {
    const garbage = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x34]);
    const meta = await rawCall(cluster.rootAddress, '/kdfs.Meta/Create', garbage);
    expect(meta?.code).toBe(grpc.status.INTERNAL);
    const agent = await rawCall(cluster.rootAddress, '/kdfs.Agent/Write', garbage);
    expect(agent?.code).toBe(grpc.status.INTERNAL);
    const unknown = await rawCall(cluster.rootAddress, '/kdfs.Meta/Format', Buffer.alloc(0));
    expect(unknown?.code).toBe(grpc.status.UNIMPLEMENTED);
    fs.writeFileSync(cluster.path(2, 'after-garbage'), 'fine');
    expect(fs.readFileSync(cluster.path(1, 'after-garbage'), 'utf8')).toBe('fine');
  });

  it('answer well-formed nonsense with an errno', async () => {
    const meta = new RpcClient<MetaMethods>(cluster.rootAddress, 'Meta', fsid, 5000);
    const agent = new RpcClient<AgentMethods>(cluster.rootAddress, 'Agent', fsid, 5000);
    try {
      expect((await meta.call('Getattr', {})).errno).toBe(E.EINVAL);
      expect((await meta.call('Getattr', { path: '/no/such' })).errno).toBe(E.ENOENT);
      expect((await meta.call('Create', { entry: { ino: 1, name: '..' }, mode: 0o100644, uid: 0, gid: 0 })).errno).toBe(E.EINVAL);
      expect((await meta.call('Create', { entry: { ino: 1, name: 'x'.repeat(256) }, mode: 0o100644, uid: 0, gid: 0 })).errno).toBe(E.ENAMETOOLONG);
      expect((await meta.call('Create', { entry: { ino: 1, name: 'odd' }, mode: 0o170644, uid: 0, gid: 0 })).errno).toBe(E.EINVAL);
      expect((await meta.call('Remove', { entry: { ino: 1 }, directory: true })).errno).toBe(E.EINVAL);
      expect((await meta.call('Setattr', { target: { ino: 1 }, valid: 8, size: 2 ** 52 })).errno).toBe(E.EFBIG);
      expect((await meta.call('SetStripe', { target: { ino: 1 }, policy: { unitBytes: 12345, count: 1 } })).errno).toBe(E.EINVAL);
      expect((await agent.call('Write', { key: { ino: 0, index: 0, replica: 0 }, offset: 0, data: Buffer.from('x') })).errno).toBe(E.EINVAL);
      expect((await agent.call('Write', { key: { ino: 5, index: 0, replica: 0 }, offset: 2 ** 50, data: Buffer.from('x') })).errno).toBe(E.EINVAL);
      expect((await agent.call('Read', { key: { ino: 5, index: 0, replica: 0 }, offset: 0, length: 2 ** 31 })).errno).toBe(E.EINVAL);
      expect((await agent.call('Read', { key: { ino: 5, index: 0, replica: 0 }, offset: 0, length: 10 })).data.length).toBe(0);
    } finally {
      meta.close();
      agent.close();
    }
  });
});
