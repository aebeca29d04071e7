// Calls sent again after a restart of the root (level engine). A node sends a
// call again when its session broke before the reply came: the root may have
// applied it just before it died. A call that cannot be applied twice (unlink,
// rename, O_EXCL, O_APPEND...) is answered as applied, from the mark its
// transaction wrote, never failed for having been applied nor applied again
// (src/meta/replay.ts). The test speaks the session protocol itself, as a
// member (node 4's credentials), so that it decides which call is sent again.
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { E } from '../../src/common/errno.js';
import { readSuperblock } from '../../src/format/superblock.js';
import { RpcClient } from '../../src/rpc/client.js';
import { SESSION_HELLO, SESSION_REPLY, SESSION_REQUEST, type MetaMethods, type SessionHeader } from '../../src/rpc/messages.js';
import { serviceDefinition } from '../../src/rpc/proto.js';
import { sessionHeader, sessionHello } from '../../src/rpc/sessionServer.js';
import { loadCredentials, makeToken } from '../../src/security/credentials.js';
import { useIdentity } from '../../src/security/tls.js';
import { Cluster } from '../harness/cluster.js';
import { listeningPorts, tlsTo, type Peer, type TlsIdentity } from '../harness/peer.js';

const INCARNATION = '0b7c2d9e-5f4a-4e1b-9c3d-2a6f8e1d4c70';
const REPLY_BOUND_MS = 10_000;

let cluster: Cluster;
let fsid: string;
let node4: TlsIdentity;

beforeAll(async () => {
  cluster = await Cluster.start({ nodes: 2 });
  fsid = (await readSuperblock(cluster.nodeDir(1))).fsid;
  useIdentity(loadCredentials(cluster.nodeDir(2), 2, fsid));
  const token = makeToken(cluster.nodeDir(1), fsid, cluster.rootAddress, 4);
  node4 = { ca: token.ca, key: token.key, cert: token.cert };
});
afterAll(async () => {
  await cluster?.stop();
});

/** The root's session port: the one it listens on besides its gRPC and data ports. */
async function sessionPort(): Promise<number> {
  const meta = new RpcClient<MetaMethods>(cluster.rootAddress, 'Meta', fsid, 5000);
  try {
    const root = (await meta.call('ListNodes', {})).nodes.find((n) => n.id === 1)!;
    const portOf = (address: string) => Number(address.slice(address.lastIndexOf(':') + 1));
    const known = [cluster.rootPort, portOf(root.dataAddress)];
    const ports = listeningPorts(cluster.pid(1)!).filter((port) => !known.includes(port));
    expect(ports).toHaveLength(1);
    return ports[0];
  } finally {
    meta.close();
  }
}

/** A session of node 4's process INCARNATION, opened on the root. */
async function openSession(): Promise<Peer<SessionHeader>> {
  const peer = await tlsTo<SessionHeader>(await sessionPort(), node4, sessionHeader);
  peer.send({ id: 1, kind: SESSION_HELLO }, Buffer.from(sessionHello.encode({ fsid, nodeId: 4, incarnation: INCARNATION }).finish()));
  expect((await peer.next(REPLY_BOUND_MS))?.header.errno, 'the session opens').toBe(0);
  return peer;
}

/** Sends call `id` (again, if resent) and returns the errno of its reply. */
async function call<K extends keyof MetaMethods & string>(peer: Peer<SessionHeader>, id: number, method: K, request: MetaMethods[K][0], resent = false): Promise<number> {
  const definition = serviceDefinition('Meta')[method];
  peer.send({ id, kind: SESSION_REQUEST, method, resent }, definition.requestSerialize(request) as Buffer);
  const reply = await peer.next(REPLY_BOUND_MS);
  expect(reply?.header).toMatchObject({ id, kind: SESSION_REPLY });
  expect(reply!.header.errno ?? 0, `${method}: the session's own errno`).toBe(0);
  return (definition.responseDeserialize(reply!.data) as { errno?: number }).errno ?? 0;
}

describe('calls sent again after the root restarted', () => {
  it('are answered as applied when they were, and never applied twice', async () => {
    for (const name of ['unlinked', 'renamed', 'log']) fs.writeFileSync(cluster.path(2, name), name === 'log' ? 'first\n' : name);
    const logIno = fs.statSync(cluster.path(2, 'log')).ino;
    const root = { ino: 1 };
    const before = await openSession();
    expect(await call(before, 10, 'Remove', { entry: { ...root, name: 'unlinked' }, directory: false })).toBe(0);
    expect(await call(before, 11, 'Rename', { from: { ...root, name: 'renamed' }, to: { ...root, name: 'moved' } })).toBe(0);
    expect(await call(before, 12, 'Append', { ino: logIno, data: Buffer.from('second\n') })).toBe(0);
    // what applying them again does, as new calls: they fail
    expect(await call(before, 13, 'Remove', { entry: { ...root, name: 'unlinked' }, directory: false })).toBe(E.ENOENT);
    before.destroy();

    // the root dies as if before it answered; the node sends its calls again to the new instance
    await cluster.kill9(1);
    await cluster.mount(1);
    const after = await openSession();
    expect(await call(after, 10, 'Remove', { entry: { ...root, name: 'unlinked' }, directory: false }, true)).toBe(0);
    expect(await call(after, 11, 'Rename', { from: { ...root, name: 'renamed' }, to: { ...root, name: 'moved' } }, true)).toBe(0);
    expect(await call(after, 12, 'Append', { ino: logIno, data: Buffer.from('second\n') }, true)).toBe(0);
    // a call sent again that was never applied is applied now (its errno is its own)
    expect(await call(after, 14, 'Remove', { entry: { ...root, name: 'never-there' }, directory: false }, true)).toBe(E.ENOENT);
    after.destroy();

    expect(fs.readFileSync(cluster.path(2, 'log'), 'utf8')).toBe('first\nsecond\n');
    expect(fs.readdirSync(cluster.path(2, '')).filter((name) => name !== '.kdfs').sort()).toEqual(['log', 'moved']);
  }, 90_000);
});
