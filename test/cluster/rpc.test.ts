// What the services of a node do with callers and requests they should not take.
// Every channel is mutual TLS with the file system's credentials: a process
// talks to a node as a member (a certificate of the file system's authority,
// naming a node), with useIdentity(loadCredentials(nodeDir, ...)) as the
// commands do. One that knows the fsid and has a copy of the superblock but no
// credentials of this file system gets nothing done, and a member speaks for
// itself only.
import * as grpc from '@grpc/grpc-js';
import { randomBytes, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { E } from '../../src/common/errno.js';
import { readSuperblock } from '../../src/format/superblock.js';
import { RpcClient } from '../../src/rpc/client.js';
import { frameHead, PREFIX_BYTES } from '../../src/rpc/frames.js';
import type { AgentMethods, MetaMethods, ObjectKey, RegisterRequest } from '../../src/rpc/messages.js';
import { SESSION_HELLO, SESSION_REPLY } from '../../src/rpc/messages.js';
import { sessionHeader, sessionHello } from '../../src/rpc/sessionServer.js';
import { createAuthority, loadCredentials, type Credentials } from '../../src/security/credentials.js';
import { MEMBER_SERVERNAME, grpcChannelCredentials, useIdentity } from '../../src/security/tls.js';
import { Cluster, objectBytes, testDir } from '../harness/cluster.js';
import { RemoteAgent } from '../../src/agent/remote.js';
import { metaClientFor } from '../../src/cli/common.js';
import { FIRST_INO } from '../../src/meta/records.js';
import { stripeOf } from '../harness/faults.js';
import { HoldingRelay } from '../harness/relay.js';
import { poll } from '../harness/locker.js';

let cluster: Cluster;
let fsid: string;
/** Node 2's credentials, read from its directory: what this process speaks as, unless a test says otherwise. */
let member: Credentials;
/** Where strangers' credentials are made. */
let elsewhere: string;

beforeAll(async () => {
  cluster = await Cluster.start({ nodes: 2 });
  fsid = (await readSuperblock(cluster.nodeDir(1))).fsid;
  member = loadCredentials(cluster.nodeDir(2), 2, fsid);
  useIdentity(member);
  elsewhere = testDir();
});
afterAll(async () => {
  await cluster?.stop();
  if (elsewhere) fs.rmSync(elsewhere, { recursive: true, force: true });
});

/** A client speaking as `who` (this process's identity is set back to the member's after). */
function clientAs<M extends MetaMethods | AgentMethods>(who: Credentials, service: 'Meta' | 'Agent', deadlineMs: number, address = cluster.rootAddress): RpcClient<M> {
  useIdentity(who);
  try {
    return new RpcClient<M>(address, service, fsid, deadlineMs);
  } finally {
    useIdentity(member);
  }
}

/** Sends raw bytes as the request of a method, bypassing the encoder (as a member, unless credentials are given). */
function rawCall(address: string, method: string, payload: Buffer, credentials = grpcChannelCredentials(), deadlineMs = 5000): Promise<grpc.ServiceError | null> {
  const client = new grpc.Client(address, credentials, { 'grpc.ssl_target_name_override': MEMBER_SERVERNAME });
  const metadata = new grpc.Metadata();
  metadata.set('kdfs-fsid', fsid);
  return new Promise((resolve) => {
    client.makeUnaryRequest(method, (b: Buffer) => b, (b: Buffer) => b, payload, metadata, { deadline: Date.now() + deadlineMs }, (err) => {
      client.close();
      resolve(err);
    });
  });
}

/** An authority of a file system of its own (the real mkfs code), and its certificate for node `nodeId`. */
function strangerOf(name: string, strangerFsid: string, nodeId: number): Credentials {
  const dir = path.join(elsewhere, name);
  fs.mkdirSync(dir);
  createAuthority(dir, strangerFsid, nodeId);
  return loadCredentials(dir, nodeId, strangerFsid);
}

/** A registration as node `nodeId` of a process that has a copy of the superblock of node 2. */
async function registration(nodeId: number): Promise<RegisterRequest> {
  const sb = await readSuperblock(cluster.nodeDir(2));
  return { nodeId, nodeUuid: randomUUID(), address: '127.0.0.1:9', fsid: sb.fsid, openInos: [], incarnation: randomUUID(), dataAddress: '127.0.0.1:9' };
}

/** The members the root knows of, asked as the member. */
async function memberIds(): Promise<number[]> {
  const meta = new RpcClient<MetaMethods>(cluster.rootAddress, 'Meta', fsid, 5000);
  try {
    return (await meta.call('ListNodes', {})).nodes.map((n) => n.id).sort();
  } finally {
    meta.close();
  }
}

/** The root's session address: a Register reply tells it, even a refusal (this one registers nothing). */
async function sessionAddress(): Promise<string> {
  const meta = new RpcClient<MetaMethods>(cluster.rootAddress, 'Meta', fsid, 5000);
  try {
    const reply = await meta.call('Register', { ...(await registration(2)), nodeUuid: '' });
    // served: the service itself turned it down
    expect(reply.errno).toBe(E.EINVAL);
    expect(reply.sessionAddress).toMatch(/^127\.0\.0\.1:\d+$/);
    return reply.sessionAddress!;
  } finally {
    meta.close();
  }
}

/** A session HELLO frame, as a node sends it first. */
function hello(nodeId: number): Buffer {
  const payload = Buffer.from(sessionHello.encode({ fsid, nodeId, incarnation: randomUUID() }).finish());
  return Buffer.concat([frameHead(sessionHeader, { id: 7, kind: SESSION_HELLO }, payload.length), payload]);
}

/** What a connection to the session port got back for a HELLO, and whether it was closed (within 6 s: past the handshake timeout). */
function sessionExchange(connect: () => net.Socket | tls.TLSSocket, ready: 'connect' | 'secureConnect', nodeId: number): Promise<{ received: Buffer; closed: boolean; error: string }> {
  return new Promise((resolve) => {
    const socket = connect();
    const chunks: Buffer[] = [];
    let error = '';
    const finish = (closed: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ received: Buffer.concat(chunks), closed, error });
    };
    const timer = setTimeout(() => finish(false), 6000);
    socket.on(ready, () => socket.write(hello(nodeId)));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('error', (err) => (error = err.message));
    socket.on('close', () => finish(true));
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

describe('a client whose peer moved', () => {
  it('sends again at the new address a call already sent to the old one, which stopped answering with its connection open (a stopped metadata leader)', async () => {
    // Found by an exploratory failover test: a DataKey call sent to a leader
    // stopped by SIGSTOP waited for it (60 s), and every data handshake of the
    // node with it: writes failed with EIO though the new leader served.
    const relay = await HoldingRelay.start(cluster.rootAddress);
    const meta = new RpcClient<MetaMethods>(relay.address, 'Meta', fsid, 120_000);
    try {
      expect((await meta.call('Statfs', {})).errno ?? 0).toBe(0);
      relay.hold();
      const sent = meta.call('Statfs', {});
      for (const deadline = Date.now() + 10_000; relay.heldBytes === 0 && Date.now() < deadline;) await new Promise((resolve) => setTimeout(resolve, 10));
      expect(relay.heldBytes).toBeGreaterThan(0);
      meta.moveTo(cluster.rootAddress);
      // well before its deadline: 30 s of the 120 s it may wait
      const reply = await Promise.race([sent, new Promise<'waiting'>((resolve) => setTimeout(() => resolve('waiting'), 30_000).unref())]);
      expect(reply).not.toBe('waiting');
      expect((reply as { errno?: number }).errno ?? 0).toBe(0);
    } finally {
      meta.close();
      relay.close();
    }
  }, 60_000);
});

describe('a process without this file system\'s credentials', () => {
  it('knowing the fsid, with a copy of the superblock, cannot register, read, write or remove over gRPC', async () => {
    // a file to steal and to damage, over 8 KiB (not inlined): its objects are on the root (2 copies on 2 nodes)
    const data = randomBytes(256 * 1024);
    fs.writeFileSync(cluster.path(1, 'victim'), data);
    const ino = fs.statSync(cluster.path(1, 'victim')).ino;
    const onRoot = (await stripeOf(cluster, cluster.path(1, 'victim'))).objects[0].replicas.findIndex((r) => r.node === 1);
    expect(onRoot).toBeGreaterThanOrEqual(0);
    const key: ObjectKey = { ino, index: 0, replica: onRoot };
    const rootCa = fs.readFileSync(path.join(cluster.nodeDir(1), 'credentials', 'ca.pem'), 'utf8');

    // the legitimate identity (a member, node 2) reads the object: the key is right
    const legit = clientAs<AgentMethods>(member, 'Agent', 5000);
    const read = await legit.call('Read', { key, offset: 0, length: data.length });
    legit.close();
    expect(read.errno).toBe(0);
    expect(read.data.equals(data)).toBe(true);

    const strangers: [string, Credentials][] = [
      // another file system's authority and its certificate for node 3
      ['another authority', strangerOf('other', randomUUID(), 3)],
      // an authority made up with this file system's fsid, and "its" node 2
      ['a self-made authority naming this fsid', strangerOf('forged', fsid, 2)],
      // the same, trusting the real authority (its certificate is no secret): the server is the one that refuses
      ['a self-made certificate, trusting the real authority', { ...strangerOf('forged-trusting', fsid, 2), ca: rootCa }],
    ];
    for (const [what, who] of strangers) {
      const meta = clientAs<MetaMethods>(who, 'Meta', 1500);
      const agent = clientAs<AgentMethods>(who, 'Agent', 1500);
      try {
        const attempts: [string, Promise<unknown>][] = [
          ['Register as node 3', meta.call('Register', await registration(3))],
          ['Register as node 2', meta.call('Register', await registration(2))],
          ['Getattr', meta.call('Getattr', { path: '/victim' })],
          ['ReadDir', meta.call('ReadDir', { target: { ino: 1 }, after: '', limit: 100 })],
          ['Create', meta.call('Create', { entry: { ino: 1, name: 'intruder' }, mode: 0o100644, uid: 0, gid: 0 })],
          ['Remove', meta.call('Remove', { entry: { ino: 1, name: 'victim' }, directory: false })],
          ['Agent.Read', agent.call('Read', { key, offset: 0, length: data.length })],
          ['Agent.Write', agent.call('Write', { key, offset: 0, data: Buffer.alloc(4096) })],
          ['Agent.Remove', agent.call('Remove', { keys: [key] })],
        ];
        const outcomes = await Promise.allSettled(attempts.map(([, attempt]) => attempt));
        for (const [i, outcome] of outcomes.entries()) {
          const call = attempts[i][0];
          expect(outcome.status, `${what}: ${call}`).toBe('rejected');
          // never reached a service: no handshake, no answer
          expect(String((outcome as PromiseRejectedResult).reason), `${what}: ${call}`).toMatch(/(Meta|Agent)\.\w+ at .*Deadline exceeded/);
        }
      } finally {
        meta.close();
        agent.close();
      }
    }

    // and the cluster is as it was
    expect(await memberIds()).toEqual([1, 2]);
    expect(fs.existsSync(cluster.path(2, 'intruder'))).toBe(false);
    expect(fs.readFileSync(cluster.path(2, 'victim')).equals(data)).toBe(true);
    const again = clientAs<AgentMethods>(member, 'Agent', 5000);
    expect((await again.call('Read', { key, offset: 0, length: data.length })).data.equals(data)).toBe(true);
    again.close();
  });

  it('nor without any client certificate, over plaintext or TLS', async () => {
    const plaintext = await rawCall(cluster.rootAddress, '/kdfs.Meta/Getattr', Buffer.alloc(0), grpc.credentials.createInsecure(), 2000);
    expect(plaintext?.code).toBe(grpc.status.UNAVAILABLE);
    const rootCa = fs.readFileSync(path.join(cluster.nodeDir(1), 'credentials', 'ca.pem'));
    const anonymous = await rawCall(cluster.rootAddress, '/kdfs.Meta/Getattr', Buffer.alloc(0), grpc.credentials.createSsl(rootCa, null, null, { checkServerIdentity: () => undefined }), 2000);
    expect(anonymous?.code).toBe(grpc.status.UNAVAILABLE);
  });
});

describe('a member', () => {
  it('may register as itself only; its own identity works', async () => {
    // node 2's credentials, registering as node 3 (a new member) or as the root
    const meta = clientAs<MetaMethods>(member, 'Meta', 5000);
    try {
      for (const as of [3, 1]) {
        await expect(meta.call('Register', await registration(as))).rejects.toThrow(new RegExp(`node 2 may not register as node ${as}`));
      }
      expect(await memberIds()).toEqual([1, 2]);
      // as itself it is served: reads, writes and removes
      const made = await meta.call('Create', { entry: { ino: 1, name: 'by-member' }, mode: 0o100644, uid: 0, gid: 0 });
      expect(made.errno).toBe(0);
      expect((await meta.call('Getattr', { path: '/by-member' })).attr?.ino).toBe(made.attr!.ino);
      expect(fs.existsSync(cluster.path(1, 'by-member'))).toBe(true);
      expect((await meta.call('Remove', { entry: { ino: 1, name: 'by-member' }, directory: false })).errno).toBe(0);
    } finally {
      meta.close();
    }
    // the root's log tells who was refused
    const log = fs.readFileSync(path.join(cluster.nodeDir(1), 'kdfs.log'), 'utf8');
    expect(log).toMatch(/refused Meta\.Register from .*: node 2 may not register as node 3/);
  });
});

describe('the metadata session port', () => {
  it('closes a connection without a member\'s certificate without any reply; a member\'s is read', async () => {
    const address = await sessionAddress();
    const colon = address.lastIndexOf(':');
    const [host, port] = [address.slice(0, colon), Number(address.slice(colon + 1))];

    // plain TCP, a HELLO as node 2 with the right fsid: not a TLS client hello, closed
    const plain = await sessionExchange(() => net.connect({ host, port }), 'connect', 2);
    expect(plain.closed).toBe(true);
    // nothing of a session (at most a TLS alert record: content type 21)
    if (plain.received.length > 0) expect(plain.received[0]).toBe(0x15);

    // TLS without a client certificate: the handshake fails, the HELLO gets nothing
    const anonymous = await sessionExchange(() => tls.connect({ host, port, servername: MEMBER_SERVERNAME, rejectUnauthorized: false }), 'secureConnect', 2);
    expect(anonymous.closed).toBe(true);
    expect(anonymous.received.length).toBe(0);

    // TLS with another authority's certificate (trusting the real one): the same
    const forged = { ...strangerOf('session-forged', fsid, 2), ca: fs.readFileSync(path.join(cluster.nodeDir(1), 'credentials', 'ca.pem'), 'utf8') };
    const foreign = await sessionExchange(() => tls.connect({ host, port, servername: MEMBER_SERVERNAME, key: forged.key, cert: forged.cert, ca: forged.ca, checkServerIdentity: () => undefined }), 'secureConnect', 2);
    expect(foreign.closed).toBe(true);
    expect(foreign.received.length).toBe(0);

    // a member's connection gets through TLS and is read: its HELLO as another node is answered with a refusal, then closed
    const spoofed = await sessionExchange(() => tls.connect({ host, port, servername: MEMBER_SERVERNAME, key: member.key, cert: member.cert, ca: member.ca, checkServerIdentity: () => undefined }), 'secureConnect', 3);
    expect(spoofed.closed).toBe(true);
    expect(spoofed.received.length).toBeGreaterThan(PREFIX_BYTES);
    const headerBytes = spoofed.received.readUInt32BE(0);
    const header = sessionHeader.decode(spoofed.received.subarray(PREFIX_BYTES, PREFIX_BYTES + headerBytes)) as unknown as { id: number; kind: number; errno: number };
    expect(header).toMatchObject({ id: 7, kind: SESSION_REPLY, errno: E.EACCES });
    const log = fs.readFileSync(path.join(cluster.nodeDir(1), 'kdfs.log'), 'utf8');
    expect(log).toMatch(/session of node 3 from .* refused: its certificate is node 2's, not node 3's/);

    // and the nodes' own sessions go on
    fs.writeFileSync(cluster.path(2, 'after-sessions'), 'fine');
    expect(fs.readFileSync(cluster.path(1, 'after-sessions'), 'utf8')).toBe('fine');
  });
});

describe('an agent that is not the node a client means (an address another node took over)', () => {
  it('refuses its calls, on the data channel and over gRPC: nothing stored, nothing cut', async () => {
    // as node 2 would: its credentials, the data key the service gives members
    const meta = await metaClientFor(cluster.nodeDir(2));
    const node1 = (await meta.listNodes()).find((n) => n.id === 1)!;
    const key: ObjectKey = { ino: FIRST_INO + 777, index: 0, replica: 0 };
    const held = objectBytes(cluster.nodeDir(1));
    const misdirected = new RemoteAgent(node1.address, node1.dataAddress, fsid, undefined, 2);
    const right = new RemoteAgent(node1.address, node1.dataAddress, fsid, undefined, 1);
    try {
      await expect(misdirected.write(key, 0, Buffer.alloc(4096, 9))).rejects.toMatchObject({ errno: E.EIO });
      expect(objectBytes(cluster.nodeDir(1))).toBe(held);
      // the agent's log tells why (written a moment after the refusal)
      const told = async () => /meant for node 2, and this is node 1/.test(fs.readFileSync(path.join(cluster.nodeDir(1), 'kdfs.log'), 'utf8'));
      expect(await poll(told, 5_000)).not.toBeNull();
      // meant for the node that answers there: stored
      await right.write(key, 0, Buffer.alloc(4096, 9));
      const stored = objectBytes(cluster.nodeDir(1));
      expect(stored).toBeGreaterThan(held);
      // over gRPC too
      await expect(misdirected.truncate(key, 0)).rejects.toMatchObject({ errno: E.EIO });
      await expect(misdirected.remove([key])).rejects.toMatchObject({ errno: E.EIO });
      expect(objectBytes(cluster.nodeDir(1))).toBe(stored);
      await right.remove([key]);
    } finally {
      misdirected.close();
      right.close();
      meta.disconnect();
    }
  });
});
