// Hostile peers on every listener of a node: the root's gRPC (Meta and Agent),
// metadata session and data channel ports, and node 2's gRPC and data channel
// ports. Random bytes, truncated frames, frames that announce 4 GiB, DataHeaders
// with hostile fields, handshakes out of order, TLS without a ClientHello or
// without a (good) client certificate, idle connections by the dozen, and, as an
// authenticated member, Meta and Agent calls and session requests with invalid
// arguments. After each attack the members still work (a file written through
// node 2 reads back through node 3 and the other way round, within 15 s), no
// node process died, the node processes' resident memory did not grow with what
// the frames announced, and the files written before the attacks read back
// identical through the three mounts.
//
// The random bytes come from a seeded generator: the seed is printed, and
// KDFS_FUZZ_SEED=N repeats a run. KDFS_FUZZ_KEEP_LOGS=DIR copies the nodes'
// logs there before the cluster goes.
import { createCipheriv, createHash, randomBytes, randomInt } from 'node:crypto';
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import http2 from 'node:http2';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { E } from '../../src/common/errno.js';
import { within } from '../../src/common/within.js';
import { readSuperblock } from '../../src/format/superblock.js';
import { isAlive } from '../../src/node/runfile.js';
import { RpcClient } from '../../src/rpc/client.js';
import { frameHead } from '../../src/rpc/frames.js';
import {
  DATA_ALLOCATED, DATA_AUTH, DATA_HELLO, DATA_PING, DATA_READ, DATA_WRITE, NODE_ADD, NODE_REMOVE,
  SESSION_CALLBACK_DONE, SESSION_HELLO, SESSION_PING, SESSION_REPLY, SESSION_REQUEST,
  type AgentMethods, type DataHeader, type MetaMethods, type SessionHeader,
} from '../../src/rpc/messages.js';
import { messageType, serviceDefinition } from '../../src/rpc/proto.js';
import { sessionHeader, sessionHello } from '../../src/rpc/sessionServer.js';
import { createAuthority, credentialPaths, loadCredentials, makeToken, type Credentials } from '../../src/security/credentials.js';
import { agentProof, clientProof, FrameMacs } from '../../src/security/dataAuth.js';
import { MEMBER_SERVERNAME, useIdentity } from '../../src/security/tls.js';
import { Cluster } from '../harness/cluster.js';
import { CLOSE_BOUND_MS, Peer, listeningPorts, tcp, tlsTo, type TlsIdentity } from '../harness/peer.js';

const MiB = 1024 * 1024;
const SEED = process.env.KDFS_FUZZ_SEED ? Number(process.env.KDFS_FUZZ_SEED) : randomInt(2 ** 31);
/** What the members are given to write and read back after an attack. */
const MEMBER_BOUND_MS = 15_000;
/** The issue's criterion: what a node process may keep after frames announcing 4 GiB and 1 MiB of random bytes. */
const RSS_SLACK_BYTES = 16 * MiB;
const U32_MAX = 0xffffffff;
const FOUR_GIB_MINUS_1 = U32_MAX;
const dataHeader = messageType('DataHeader');

/** Bytes from a seeded generator (AES-256-CTR keyed by the seed and a label). */
function seeded(label: string, length: number): Buffer {
  const key = createHash('sha256').update(`kdfs fuzz ${SEED} ${label}`).digest();
  return createCipheriv('aes-256-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(length));
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest('hex');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A promise that fails with what was awaited once `ms` are over. */
function bounded<T>(what: string, promise: Promise<T>, ms = MEMBER_BOUND_MS): Promise<T> {
  return within(promise, ms, () => {
    throw new Error(`${what}: no answer within ${ms} ms`);
  });
}

/** Resident memory of a process, in bytes. */
function rssOf(pid: number): number {
  const line = fs.readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith('VmRSS:'));
  return Number(/(\d+)/.exec(line ?? '')?.[1] ?? NaN) * 1024;
}


/** Sends bytes on a fresh plain TCP connection, then waits for the listener to close it. */
async function blast(port: number, bytes: Buffer): Promise<boolean> {
  const peer = await tcp(port);
  peer.write(bytes);
  const closed = await peer.closedWithin();
  peer.destroy();
  return closed;
}

// ------------------------------------------------------------------ the cluster

let cluster: Cluster;
let fsid: string;
let member: Credentials;
let meta: RpcClient<MetaMethods>;
let rootAgent: RpcClient<AgentMethods>;
let node2Agent: RpcClient<AgentMethods>;
let foreignDir = '';
const pids: Record<number, number> = {};
const logOffsets: Record<number, number> = {};

/** The listeners under attack. */
interface Listener { name: string; node: 1 | 2; port: number; kind: 'grpc' | 'session' | 'data' }
let listeners: Listener[] = [];
const listener = (node: 1 | 2, kind: Listener['kind']) => listeners.find((l) => l.node === node && l.kind === kind)!;

/** Files written before the attacks, by path in the file system, and their digests. */
const before = new Map<string, string>();
let victimIno = 0;
let victimDirIno = 0;
const baselineRss: Record<number, number> = {};

const memberTls = (): TlsIdentity => ({ key: member.key, cert: member.cert, ca: member.ca });

/** The resident memory of the root and node 2 after each check of the members. */
const rssTrail: string[] = [];

/** A file written through node 2 reads back through node 3, and the other way round, each within the bound; no node died. */
async function membersWork(tag: string): Promise<void> {
  const data = seeded(`member ${tag}`, 1536 * 1024 + 77);
  for (const [writer, reader] of [[2, 3], [3, 2]]) {
    const name = `member-${tag}-${writer}`;
    await bounded(`write ${name} through node ${writer}`, fsp.writeFile(cluster.path(writer, name), data));
    const back = await bounded(`read ${name} through node ${reader}`, fsp.readFile(cluster.path(reader, name)));
    expect(sha256(back), `${name} read through node ${reader}`).toBe(sha256(data));
  }
  for (const id of [1, 2, 3]) expect(isAlive(pids[id]), `node ${id} (pid ${pids[id]}) after ${tag}`).toBe(true);
  rssTrail.push(`${tag}: ${[1, 2].map((id) => `node ${id} ${(rssOf(pids[id]) / MiB).toFixed(0)}`).join(', ')} MiB`);
}
/** What a node process logged since the attacks began. */
function logSince(id: number): string {
  const file = path.join(cluster.nodeDir(id), 'kdfs.log');
  const text = fs.existsSync(file) ? fs.readFileSync(file) : Buffer.alloc(0);
  return text.subarray(logOffsets[id] ?? 0).toString('utf8');
}

beforeAll(async () => {
  console.log(`fuzz seed ${SEED} (KDFS_FUZZ_SEED=${SEED} repeats this run)`);
  cluster = await Cluster.start({ nodes: 3 });
  fsid = (await readSuperblock(cluster.nodeDir(1))).fsid;
  member = loadCredentials(cluster.nodeDir(2), 2, fsid);
  useIdentity(member);
  meta = new RpcClient<MetaMethods>(cluster.rootAddress, 'Meta', fsid, 5000);
  const { nodes } = await meta.call('ListNodes', {});
  const node1 = nodes.find((n) => n.id === 1)!;
  const node2 = nodes.find((n) => n.id === 2)!;
  rootAgent = new RpcClient<AgentMethods>(cluster.rootAddress, 'Agent', fsid, 5000);
  node2Agent = new RpcClient<AgentMethods>(node2.address, 'Agent', fsid, 5000);
  for (const id of [1, 2, 3]) pids[id] = cluster.pid(id)!;
  const portOf = (address: string) => Number(address.slice(address.lastIndexOf(':') + 1));
  const rootPorts = listeningPorts(pids[1]);
  const known = [cluster.rootPort, portOf(node1.dataAddress)];
  const sessionPorts = rootPorts.filter((p) => !known.includes(p));
  expect(sessionPorts, `the root listens on ${rootPorts.join(', ')}`).toHaveLength(1);
  expect(listeningPorts(pids[2]).sort()).toEqual([portOf(node2.address), portOf(node2.dataAddress)].sort());
  listeners = [
    { name: 'root gRPC', node: 1, port: cluster.rootPort, kind: 'grpc' },
    { name: 'root session', node: 1, port: sessionPorts[0], kind: 'session' },
    { name: 'root data', node: 1, port: portOf(node1.dataAddress), kind: 'data' },
    { name: 'node 2 gRPC', node: 2, port: portOf(node2.address), kind: 'grpc' },
    { name: 'node 2 data', node: 2, port: portOf(node2.dataAddress), kind: 'data' },
  ];
  console.log(`listeners: ${listeners.map((l) => `${l.name} ${l.port}`).join(', ')}`);

  // what must survive: a striped file over the three nodes, small (inlined) files, a tree
  const files: [number, string, Buffer][] = [
    [1, 'striped', seeded('striped', 5 * MiB + 4321)],
    [2, 'small', seeded('small', 3000)],
    [3, 'mid', seeded('mid', 1 * MiB + 17)],
  ];
  fs.mkdirSync(cluster.path(1, 'tree', 'deeper'), { recursive: true });
  for (let i = 0; i < 8; i++) files.push([1 + (i % 3), `tree/deeper/f${i}`, seeded(`tree ${i}`, 1000 * (i + 1) * (i + 1))]);
  for (const [node, name, data] of files) {
    fs.writeFileSync(cluster.path(node, name), data);
    before.set(name, sha256(data));
  }
  // sacrificial: what the invalid calls aim at
  fs.writeFileSync(cluster.path(2, 'victim'), 'victim');
  fs.mkdirSync(cluster.path(2, 'victimdir'));
  victimIno = (await meta.call('Getattr', { path: '/victim' })).attr!.ino;
  victimDirIno = (await meta.call('Getattr', { path: '/victimdir' })).attr!.ino;

  // a certificate authority of another file system, with a certificate for "node 2"
  foreignDir = fs.mkdtempSync(path.join(os.tmpdir(), 'kdfs-fuzz-foreign-'));
  createAuthority(foreignDir, 'not-this-file-system', 2);

  // warm-up: the members' paths and buffers are in use before memory is measured
  await membersWork('warmup-1');
  await membersWork('warmup-2');
  for (const id of [1, 2, 3]) {
    const file = path.join(cluster.nodeDir(id), 'kdfs.log');
    logOffsets[id] = fs.existsSync(file) ? fs.statSync(file).size : 0;
  }
}, 90_000);

afterAll(async () => {
  const keep = process.env.KDFS_FUZZ_KEEP_LOGS;
  if (keep && cluster) for (const id of [1, 2, 3]) fs.cpSync(path.join(cluster.nodeDir(id), 'kdfs.log'), path.join(keep, `node${id}.log`), { force: true });
  meta?.close();
  rootAgent?.close();
  node2Agent?.close();
  await cluster?.stop();
  if (foreignDir) fs.rmSync(foreignDir, { recursive: true, force: true });
}, 60_000);

// ------------------------------------------------------------------ attacks

/** Reads several samples of RSS and keeps the median (a single read is noisy). */
async function settledRss(pid: number): Promise<number> {
  const samples: number[] = [];
  for (let i = 0; i < 5; i++) {
    samples.push(rssOf(pid));
    await sleep(100);
  }
  return samples.sort((a, b) => a - b)[2];
}

/** The frames of one listener that announce 4 GiB: as a header, as data. */
const FOUR_GIB_HEADER = Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
const FOUR_GIB_DATA = (() => {
  const head = frameHead(dataHeader, { id: 1, op: DATA_HELLO }, 0);
  head.writeUInt32BE(FOUR_GIB_MINUS_1, 4);
  return head;
})();

/** A call on a raw HTTP/2 connection (TLS as a member, ALPN h2) to a gRPC port,
 *  whose request body is `body` (the gRPC framing included): how it ended. */
async function grpcRaw(port: number, body: Buffer, end: boolean): Promise<string> {
  const client = http2.connect(`https://127.0.0.1:${port}`, {
    createConnection: () => tls.connect({
      host: '127.0.0.1', port, servername: MEMBER_SERVERNAME, ...memberTls(), checkServerIdentity: () => undefined, ALPNProtocols: ['h2'],
    }),
  });
  client.on('error', () => {});
  try {
    const stream = client.request({
      ':method': 'POST', ':path': '/kdfs.Agent/Write', 'content-type': 'application/grpc', te: 'trailers', 'kdfs-fsid': fsid,
    });
    const ended = new Promise<string>((resolve) => {
      const status = (headers: http2.IncomingHttpHeaders) => {
        if (headers['grpc-status'] !== undefined) resolve(`grpc-status ${headers['grpc-status']} (${decodeURIComponent(String(headers['grpc-message'] ?? ''))})`);
      };
      stream.on('response', status); // a trailers-only reply
      stream.on('trailers', status);
      stream.on('error', (err) => resolve(`stream error: ${err.message}`));
      stream.on('close', () => resolve(`stream closed (RST ${stream.rstCode})`));
    });
    stream.resume();
    stream.write(body);
    if (end) stream.end();
    return await within(ended, CLOSE_BOUND_MS, () => 'no answer');
  } finally {
    client.destroy();
  }
}

/** The HTTP/2 client preface, an empty SETTINGS frame, and a DATA frame header announcing 2^24-1 bytes. */
const H2_HUGE_FRAME = Buffer.concat([
  Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'),
  Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]),
  Buffer.from([0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1]),
]);

/** The error code of the GOAWAY frame among HTTP/2 bytes received, or null if there is none. */
function goAwayCode(bytes: Buffer): number | null {
  for (let at = 0; at + 9 <= bytes.length;) {
    const length = bytes.readUIntBE(at, 3);
    if (bytes[at + 3] === 7 && at + 9 + 8 <= bytes.length) return bytes.readUInt32BE(at + 9 + 4);
    at += 9 + length;
  }
  return null;
}

/** What the idle-connection test saw on each listener, for the test after it. */
let idleReport: { l: Listener; open: number; openTls: number; flooded: number }[] = [];

describe('hostile peers on every listener of the root and of node 2', () => {
  it('1 MiB of seeded random bytes and frames announcing 4 GiB: each refused, resident memory within 16 MiB', async () => {
    for (const id of [1, 2] as const) baselineRss[id] = await settledRss(pids[id]);
    const peaks: Record<number, number> = { 1: 0, 2: 0 };
    const sampler = setInterval(() => {
      for (const id of [1, 2]) peaks[id] = Math.max(peaks[id], rssOf(pids[id]));
    }, 50);
    const outcomes: string[] = [];
    try {
      for (const l of listeners) {
        // raw TCP: the random bytes (to a TLS port, in place of a ClientHello), then frames announcing 4 GiB
        expect(await blast(l.port, seeded(`random ${l.name}`, MiB)), `${l.name} closes on 1 MiB of random bytes`).toBe(true);
        expect(await blast(l.port, FOUR_GIB_HEADER), `${l.name}: a 4 GiB header`).toBe(true);
        expect(await blast(l.port, FOUR_GIB_DATA), `${l.name}: 4 GiB of data`).toBe(true);
        if (l.kind === 'session') {
          // inside TLS, as a member: the frames themselves
          for (const [what, bytes] of [['random', seeded('session random', MiB)], ['4 GiB header', FOUR_GIB_HEADER], ['4 GiB data', FOUR_GIB_DATA]] as const) {
            const peer = await tlsTo(l.port, memberTls());
            peer.write(bytes);
            expect(await peer.closedWithin(), `${l.name} over TLS: ${what}`).toBe(true);
            peer.destroy();
          }
        }
        if (l.kind === 'grpc') {
          // a gRPC message whose 5-byte prefix announces 0xffffffff bytes
          const fourGib = await grpcRaw(l.port, Buffer.concat([Buffer.from([0, 0xff, 0xff, 0xff, 0xff]), seeded(`grpc 4 GiB ${l.name}`, 256 * 1024)]), false);
          outcomes.push(`${l.name}: a gRPC message announcing 4 GiB -> ${fourGib}`);
          expect(fourGib, `${l.name}: a gRPC message announcing 4 GiB`).toMatch(/grpc-status 8 /);
          // an HTTP/2 frame announcing 16 MiB
          const h2 = await tlsTo(l.port, memberTls(), null, ['h2']);
          h2.write(H2_HUGE_FRAME);
          const closed = await h2.closedWithin(3000);
          const goAway = goAwayCode(Buffer.concat(h2.raw));
          outcomes.push(`${l.name}: an HTTP/2 frame announcing 16 MiB -> ${goAway === null ? 'no GOAWAY' : `GOAWAY error ${goAway}`}, ${closed ? 'closed' : 'connection left open'}`);
          // refused: a GOAWAY (FRAME_SIZE_ERROR: 6), or the connection closed
          expect(closed || goAway !== null, `${l.name}: an HTTP/2 frame announcing 16 MiB`).toBe(true);
          h2.destroy();
          // inside TLS (ALPN h2), as a member: random bytes in place of the HTTP/2 preface
          const peer = await tlsTo(l.port, memberTls(), null, ['h2']);
          peer.write(seeded(`h2 random ${l.name}`, MiB));
          expect(await peer.closedWithin(), `${l.name} over TLS: random bytes`).toBe(true);
          peer.destroy();
        }
      }
      await sleep(1500);
    } finally {
      clearInterval(sampler);
    }
    const lines: string[] = [];
    for (const id of [1, 2] as const) {
      const after = await settledRss(pids[id]);
      lines.push(`node ${id}: RSS before ${(baselineRss[id] / MiB).toFixed(1)} MiB, peak ${(peaks[id] / MiB).toFixed(1)} MiB, after ${(after / MiB).toFixed(1)} MiB`);
      expect(after - baselineRss[id], lines.at(-1)).toBeLessThan(RSS_SLACK_BYTES);
    }
    console.log([...outcomes, ...lines].join('\n'));
    await membersWork('random-and-4gib');
  }, 60_000);

  it('truncated frames and undecodable headers: dropped within the handshake bound', async () => {
    const valid = frameHead(dataHeader, { id: 1, op: DATA_HELLO, fsid, nodeId: 2, nonce: randomBytes(16) }, 0);
    const undecodable = Buffer.concat([Buffer.from([0, 0, 0, 16, 0, 0, 0, 0]), Buffer.alloc(16, 0xff)]);
    const cases: [string, Buffer][] = [
      ['half a prefix', valid.subarray(0, 4)],
      ['a prefix and half a header', valid.subarray(0, valid.length - 5)],
      ['a header announcing 4096 bytes, 10 sent', Buffer.concat([Buffer.from([0, 0, 0x10, 0, 0, 0, 0, 0]), Buffer.alloc(10)])],
      ['an undecodable header', undecodable],
    ];
    // (the gRPC ports speak TLS first: bytes held before a ClientHello are the idle-connection test's)
    await Promise.all(listeners.filter((l) => l.kind !== 'grpc').flatMap((l) => cases.map(async ([what, bytes]) => {
      // held open after the truncated frame: the listener must drop it itself
      const peer = l.kind === 'session' ? await tlsTo(l.port, memberTls()) : await tcp(l.port);
      peer.write(bytes);
      expect(await peer.closedWithin(), `${l.name}: ${what}`).toBe(true);
      peer.destroy();
    })));
    // gRPC: a message cut short, an undecodable one, and one whose prefix says it is compressed
    const outcomes: string[] = [];
    for (const l of listeners.filter((x) => x.kind === 'grpc')) {
      for (const [what, body] of [
        ['a message announcing 1000 bytes, 10 sent', Buffer.concat([Buffer.from([0, 0, 0, 0x03, 0xe8]), Buffer.alloc(10)])],
        ['half a message prefix', Buffer.from([0, 0, 0])],
        ['an undecodable message', Buffer.concat([Buffer.from([0, 0, 0, 0, 7]), Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x34])])],
        // grpc-js takes a "compressed" message without grpc-encoding as plain: it must be
        // decoded like any other (not random bytes, which now and then decode to an empty
        // request, answered with an errno and grpc-status 0: seed 1916156162)
        ['a "compressed" undecodable message', Buffer.concat([Buffer.from([1, 0, 0, 0, 7]), Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x34])])],
      ] as const) {
        const outcome = await grpcRaw(l.port, body, true);
        outcomes.push(`${l.name}: ${what} -> ${outcome}`);
        expect(outcome, `${l.name}: ${what}`).toMatch(/grpc-status [1-9]|RST|stream error/);
      }
    }
    console.log(outcomes.join('\n'));
    await membersWork('truncated');
  }, 45_000);

  it('the data channel handshake out of order, for another file system, or with data: refused', async () => {
    const nonce = () => randomBytes(16);
    const hello: DataHeader = { id: 1, op: DATA_HELLO, fsid, nodeId: 2, nonce: nonce(), protect: false, keyEpoch: 1 };
    const frames = (...headers: [DataHeader, Buffer?][]) => Buffer.concat(headers.map(([h, d]) => Buffer.concat([frameHead(dataHeader, h, d?.length ?? 0), d ?? Buffer.alloc(0)])));
    const cases: [string, Buffer][] = [
      ['a WRITE before HELLO', frames([{ id: 7, op: DATA_WRITE, key: { ino: 2 ** 32, index: 0, replica: 0 }, offset: 0 }])],
      ['a READ before HELLO', frames([{ id: 7, op: DATA_READ, key: { ino: 2 ** 32, index: 0, replica: 0 }, offset: 0, length: 4096 }])],
      ['a PING before HELLO', frames([{ id: 7, op: DATA_PING }])],
      ['an unknown op before HELLO', frames([{ id: 7, op: 99 }])],
      ['a HELLO of another file system', frames([{ ...hello, fsid: 'not-this-file-system' }])],
      ['a HELLO without fsid', frames([{ ...hello, fsid: '' }])],
      ['a HELLO with a short nonce', frames([{ ...hello, nonce: Buffer.alloc(3) }])],
      ['a HELLO of node 0', frames([{ ...hello, nodeId: 0 }])],
      ['an AUTH before HELLO', frames([{ id: 1, op: DATA_AUTH, mac: randomBytes(32) }])],
      ['a HELLO announcing data', frames([hello, Buffer.alloc(16)])],
      ['a HELLO, then a wrong AUTH', frames([hello])],
      ['a HELLO, then a second HELLO', frames([hello])],
    ];
    const outcomes: string[] = [];
    await Promise.all(['root data', 'node 2 data'].flatMap((name) => cases.map(async ([what, bytes]) => {
      const l = listeners.find((x) => x.name === name)!;
      const peer = await tcp<DataHeader>(l.port, dataHeader);
      peer.write(bytes);
      let reply = await peer.next();
      if (what === 'a HELLO, then a wrong AUTH' || what === 'a HELLO, then a second HELLO') {
        expect(reply?.header.errno ?? -1, `${name}: ${what}: the HELLO`).toBe(0);
        peer.send(what.endsWith('AUTH') ? { id: 2, op: DATA_AUTH, mac: randomBytes(32) } : { ...hello, id: 2 });
        reply = await peer.next();
      }
      // refused with EACCES (or dropped without a word), never served
      if (reply) expect(reply.header.errno, `${name}: ${what}`).toBe(E.EACCES);
      expect(await peer.closedWithin(), `${name}: ${what}: closed`).toBe(true);
      outcomes.push(`${name}: ${what} -> ${reply ? `errno ${reply.header.errno}` : 'closed'}`);
      peer.destroy();
    })));
    console.log(outcomes.sort().join('\n'));
    await membersWork('handshake');
  }, 45_000);

  it('a HELLO and an AUTH sent at once (before the HELLO is answered): refused, nothing unhandled', async () => {
    for (const name of ['root data', 'node 2 data']) {
      const l = listeners.find((x) => x.name === name)!;
      const peer = await tcp<DataHeader>(l.port, dataHeader);
      const hello = frameHead(dataHeader, { id: 1, op: DATA_HELLO, fsid, nodeId: 2, nonce: randomBytes(16), protect: false, keyEpoch: 1 }, 0);
      const auth = frameHead(dataHeader, { id: 2, op: DATA_AUTH, mac: randomBytes(32) }, 0);
      peer.write(Buffer.concat([hello, auth]));
      const replies: string[] = [];
      for (let reply = await peer.next(); reply; reply = await peer.next()) replies.push(`id ${reply.header.id} errno ${reply.header.errno}`);
      const closed = await peer.closedWithin();
      console.log(`${name}: HELLO+AUTH in one write -> ${replies.join(', ') || 'no reply'}; ${closed ? 'closed' : 'left open'}`);
      expect(closed, `${name}: closed`).toBe(true);
      peer.destroy();
    }
    await membersWork('pipelined-handshake');
    for (const id of [1, 2]) expect(logSince(id), `node ${id}'s log`).not.toMatch(/unhandled rejection|uncaught/);
  }, 45_000);

  it('DataHeaders with hostile fields from an authenticated peer: errno replies, the connection dropped only for what it must not carry', async () => {
    const { key } = await meta.call('DataKey', {});
    const dataKey = Buffer.from(key);
    /** An authenticated data connection as node 2 (with protect, its frames MACed). */
    const login = async (port: number, protect: boolean) => {
      const peer = await tcp<DataHeader>(port, dataHeader);
      const nonce = randomBytes(16);
      peer.send({ id: 1, op: DATA_HELLO, fsid, nodeId: 2, nonce, protect, keyEpoch: 1 });
      const hello = (await peer.next())!;
      expect(hello?.header.errno).toBe(0);
      expect(Buffer.from(hello.header.mac!).equals(agentProof(dataKey, nonce, hello.header.nonce!))).toBe(true);
      peer.send({ id: 2, op: DATA_AUTH, mac: clientProof(dataKey, nonce, hello.header.nonce!, 2, protect) });
      expect((await peer.next())?.header.errno).toBe(0);
      const macs = protect ? new FrameMacs(dataKey, nonce, hello.header.nonce!, 'client') : null;
      return { peer, macs };
    };
    const fake = (ino: number) => ({ ino, index: 0, replica: 0 });
    const requests: [string, DataHeader, Buffer?][] = [
      ['READ length 0xffffffff', { id: 10, op: DATA_READ, key: fake(2 ** 40), offset: 0, length: U32_MAX }],
      ['READ offset 2^63', { id: 11, op: DATA_READ, key: fake(2 ** 40), offset: 2 ** 63, length: 4096 }],
      ['READ offset 2^64-4096', { id: 12, op: DATA_READ, key: fake(2 ** 40), offset: 2 ** 64 - 4096, length: 4096 }],
      ['READ of ino 2^64-4096', { id: 13, op: DATA_READ, key: { ino: 2 ** 64 - 4096, index: U32_MAX, replica: U32_MAX }, offset: 0, length: 4096 }],
      ['READ of ino 0', { id: 14, op: DATA_READ, key: fake(0), offset: 0, length: 4096 }],
      ['READ without a key', { id: 15, op: DATA_READ, offset: 0, length: 4096 }],
      ['WRITE offset 2^63', { id: 16, op: DATA_WRITE, key: fake(2 ** 40), offset: 2 ** 63 }, Buffer.from('x')],
      ['WRITE past the largest file', { id: 17, op: DATA_WRITE, key: fake(2 ** 40), offset: 2 ** 43 }, Buffer.from('x')],
      ['WRITE of ino 2^53', { id: 18, op: DATA_WRITE, key: fake(2 ** 53), offset: 0 }, Buffer.from('x')],
      ['ALLOCATED without a key', { id: 19, op: DATA_ALLOCATED }],
      ['an unknown op', { id: 20, op: 99, key: fake(2 ** 40) }],
      ['a REPLY', { id: 21, op: 0, errno: 5 }],
      ['a second HELLO', { id: 22, op: DATA_HELLO, fsid, nodeId: 2, nonce: randomBytes(16) }],
    ];
    const outcomes: string[] = [];
    for (const name of ['root data', 'node 2 data']) {
      const l = listeners.find((x) => x.name === name)!;
      for (const protect of [false, true]) {
        const { peer, macs } = await login(l.port, protect);
        for (const [what, header, data] of requests) {
          peer.send(macs ? macs.sign(header, data ?? null) : header, data ?? null);
          const reply = await peer.next();
          expect(reply, `${name}${protect ? ' (protected)' : ''}: ${what}: a reply`).not.toBeNull();
          if (macs) expect(macs.verify(reply!.header, reply!.data.length ? reply!.data : null), `${name}: ${what}: the reply's MAC`).toBe(true);
          expect(reply!.header.id).toBe(header.id);
          expect(reply!.header.errno, `${name}${protect ? ' (protected)' : ''}: ${what}`).not.toBe(0);
          outcomes.push(`${name}${protect ? ' (protected)' : ''}: ${what} -> errno ${reply!.header.errno}`);
        }
        // still serving: a PING
        peer.send(macs ? macs.sign({ id: 30, op: DATA_PING }, null) : { id: 30, op: DATA_PING });
        expect((await peer.next())?.header.errno, `${name}: PING after the hostile requests`).toBe(0);
        if (protect) {
          // a frame whose MAC does not hold: dropped
          peer.send({ id: 31, op: DATA_PING, mac: randomBytes(16) });
        } else {
          // data past what a frame may carry (4 GiB): dropped before any of it is taken
          peer.write(frameHead(dataHeader, { id: 31, op: DATA_WRITE, key: fake(2 ** 40), offset: 0 }, FOUR_GIB_MINUS_1));
        }
        expect(await peer.closedWithin(), `${name}${protect ? ': a bad MAC' : ': 4 GiB of data'}: closed`).toBe(true);
        peer.destroy();
      }
    }
    console.log(outcomes.join('\n'));
    await membersWork('hostile-dataheaders');
  }, 60_000);

  it('an authenticated peer\'s READs sent in one write: no more than 64 served at once (IN_FLIGHT_PER_CONNECTION_MAX)', async () => {
    // 256 READs of up to 16 MiB of one object of 2 MiB on node 2, in one write of 7 KiB: if the
    // agent took only 64 at a time, as it means to, it would hold at most 64 x 2 MiB of data at once
    const { key } = await meta.call('DataKey', {});
    const dataKey = Buffer.from(key);
    const ino = (await meta.call('Getattr', { path: '/striped' })).attr!.ino;
    const stripe = await cluster.kdfs(['getstripe', '--json', cluster.path(1, 'striped')]);
    const { objects } = JSON.parse(stripe.stdout) as { objects: { index: number; replicas: { node: number }[] }[] };
    const object = objects.find((o) => o.replicas.some((r) => r.node === 2))!;
    const objectKey = { ino, index: object.index, replica: object.replicas.findIndex((r) => r.node === 2) };
    const peer = await tcp<DataHeader>(listener(2, 'data').port, dataHeader);
    const nonce = randomBytes(16);
    peer.send({ id: 1, op: DATA_HELLO, fsid, nodeId: 2, nonce, protect: false, keyEpoch: 1 });
    const hello = (await peer.next())!;
    peer.send({ id: 2, op: DATA_AUTH, mac: clientProof(dataKey, nonce, hello.header.nonce!, 2, false) });
    expect((await peer.next())?.header.errno).toBe(0);
    const count = 256;
    const before = await settledRss(pids[2]);
    let peak = before;
    const sampler = setInterval(() => (peak = Math.max(peak, rssOf(pids[2]))), 20);
    let replies = 0;
    let bytes = 0;
    try {
      peer.write(Buffer.concat(Array.from({ length: count }, (_, i) =>
        frameHead(dataHeader, { id: 100 + i, op: DATA_READ, key: objectKey, offset: 0, length: 16 * MiB }, 0))));
      while (replies < count) {
        const reply = await peer.next(20_000);
        if (!reply) break;
        replies++;
        bytes += reply.data.length;
      }
    } finally {
      clearInterval(sampler);
      peer.destroy();
    }
    await sleep(1000);
    const after = rssOf(pids[2]);
    console.log(`node 2: ${replies}/${count} READs answered (${(bytes / MiB).toFixed(0)} MiB); RSS before ${(before / MiB).toFixed(0)} MiB, peak ${(peak / MiB).toFixed(0)} MiB, 1 s after ${(after / MiB).toFixed(0)} MiB`);
    expect(replies).toBe(count);
    // at most 64 MiB of reads in flight and 32 MiB of replies waiting to leave (REPLY_BACKLOG_MAX_BYTES),
    // with what garbage collection has not given back yet: far from the GiBs unbounded reads took
    expect(peak - before, 'what node 2 held at once for one connection\'s READs').toBeLessThan(200 * MiB);
    await membersWork('pipelined-reads');
  }, 60_000);

  it('TLS ports: garbage instead of a ClientHello, no client certificate, a certificate of another authority: refused', async () => {
    const foreign = credentialPaths(foreignDir);
    const foreignId: TlsIdentity = { ca: member.ca, key: fs.readFileSync(foreign.key, 'utf8'), cert: fs.readFileSync(foreign.cert, 'utf8') };
    const noCert: TlsIdentity = { ca: member.ca };
    const outcomes: string[] = [];
    for (const l of listeners.filter((x) => x.kind !== 'data')) {
      // not TLS at all
      expect(await blast(l.port, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')), `${l.name}: HTTP/1.1`).toBe(true);
      expect(await blast(l.port, Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n')), `${l.name}: cleartext HTTP/2`).toBe(true);
      // a TLS record header announcing a huge handshake message, then silence
      expect(await blast(l.port, Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff, 0x01, 0xff, 0xff, 0xff])), `${l.name}: a truncated ClientHello`).toBe(true);
      for (const [who, id] of [['no client certificate', noCert], ['a certificate of another authority', foreignId]] as const) {
        if (l.kind === 'session') {
          // TLS 1.3: the client's handshake completes before the server checks its certificate
          const peer = await tlsTo<SessionHeader>(l.port, id, sessionHeader).catch((err: Error) => err);
          if (peer instanceof Error) {
            outcomes.push(`${l.name}: ${who} -> ${peer.message}`);
            continue;
          }
          peer.send({ id: 1, kind: SESSION_HELLO }, Buffer.from(sessionHello.encode({ fsid, nodeId: 2, incarnation: 'fuzz' }).finish()));
          const reply = await peer.next();
          expect(reply, `${l.name}: ${who}: no reply`).toBeNull();
          expect(await peer.closedWithin(), `${l.name}: ${who}: closed`).toBe(true);
          outcomes.push(`${l.name}: ${who} -> closed (${peer.error?.message ?? 'no error'})`);
          peer.destroy();
        } else {
          // a real gRPC client with that identity
          const client = new grpc.Client(`127.0.0.1:${l.port}`, id.key
            ? grpc.credentials.createSsl(Buffer.from(id.ca), Buffer.from(id.key), Buffer.from(id.cert!), { checkServerIdentity: () => undefined })
            : grpc.credentials.createSsl(Buffer.from(id.ca), null, null, { checkServerIdentity: () => undefined }),
          { 'grpc.ssl_target_name_override': MEMBER_SERVERNAME });
          const definition = serviceDefinition('Agent').Stat;
          const err = await new Promise<grpc.ServiceError | null>((resolve) => {
            const metadata = new grpc.Metadata();
            metadata.set('kdfs-fsid', fsid);
            client.makeUnaryRequest(definition.path, definition.requestSerialize, definition.responseDeserialize, {}, metadata, { deadline: Date.now() + 4000 }, (e) => resolve(e));
          });
          client.close();
          expect(err, `${l.name}: ${who}: the call must fail`).not.toBeNull();
          outcomes.push(`${l.name}: ${who} -> ${grpc.status[err!.code]} ${err!.details}`);
        }
      }
    }
    console.log(outcomes.join('\n'));
    await membersWork('tls');
  }, 60_000);

  it('64 idle connections held on every listener, then 1000 more on each of the root\'s: the members work meanwhile', async () => {
    const held: { l: Listener; peer: Peer; tls: boolean }[] = [];
    for (const l of listeners) {
      for (let i = 0; i < 64; i++) held.push({ l, peer: await tcp(l.port), tls: false });
      // past the TLS handshake, as a member, but silent
      if (l.kind !== 'data') for (let i = 0; i < 8; i++) held.push({ l, peer: await tlsTo(l.port, memberTls(), null, l.kind === 'grpc' ? ['h2'] : undefined), tls: true });
    }
    const opened = Date.now();
    try {
      await membersWork('idle-connections');
      await sleep(Math.max(0, opened + 7000 - Date.now()));
      idleReport = listeners.map((l) => {
        const open = held.filter((h) => h.l === l && !h.peer.closed);
        return { l, open: open.filter((h) => !h.tls).length, openTls: open.filter((h) => h.tls).length, flooded: 0 };
      });
      console.log(idleReport.map((r) => `${r.l.name}: after 7 s, ${r.open}/64 idle TCP connections and ${r.openTls}/${r.l.kind === 'data' ? 0 : 8} silent TLS ones still open`).join('\n'));
      // the data channel drops a peer that does not authenticate within HANDSHAKE_TIMEOUT_MS (5 s) (the TLS ports: see the next test)
      for (const r of idleReport.filter((x) => x.l.kind === 'data')) expect(r.open, `${r.l.name}: idle connections still open after 7 s`).toBe(0);
      // a silent session (no HELLO) is dropped by the watchdog (SESSION_SILENCE_MS, 4 s)
      expect(idleReport.find((r) => r.l.kind === 'session')!.openTls, 'silent sessions').toBe(0);

      // 1000 more silent connections on each of the root's listeners, while the members work
      const rssBefore = await settledRss(pids[1]);
      const fdsBefore = fs.readdirSync(`/proc/${pids[1]}/fd`).length;
      const flood = (async () => {
        for (let i = 0; i < 1000; i++) {
          for (const l of listeners.filter((x) => x.node === 1)) held.push({ l, peer: await tcp(l.port), tls: false });
        }
      })();
      await membersWork('flood-of-idle-connections');
      await flood;
      await sleep(1000);
      for (const r of idleReport) r.flooded = held.filter((h) => h.l === r.l && !h.tls && !h.peer.closed).length;
      const grown = (await settledRss(pids[1])) - rssBefore;
      const fds = fs.readdirSync(`/proc/${pids[1]}/fd`).length - fdsBefore;
      console.log([
        ...idleReport.filter((r) => r.l.node === 1).map((r) => `${r.l.name}: of 1064 silent connections, ${r.flooded} still open`),
        `root: ${fds} more descriptors, RSS ${(grown / MiB).toFixed(1)} MiB more (${(grown / 3000 / 1024).toFixed(1)} KiB per connection made)`,
      ].join('\n'));
      await membersWork('many-idle-connections');
    } finally {
      for (const h of held) h.peer.destroy();
    }
    await membersWork('after-idle-connections');
  }, 60_000);

  it('the TLS ports (gRPC, session) drop a silent peer within HANDSHAKE_TIMEOUT_MS, and keep at most 128 waiting, like the data ports', () => {
    // src/security/tls.ts: "A peer that has not finished its TLS handshake by then is dropped" (5 s),
    // and src/security/pending.ts keeps at most 128 waiting per listener, gRPC's included (boundHandshakes).
    expect(idleReport.length).toBe(listeners.length);
    const failures: string[] = [];
    for (const r of idleReport) {
      if (r.open > 0) failures.push(`${r.l.name}: ${r.open} of 64 silent connections still open after 7 s`);
      if (r.l.node === 1 && r.flooded > 128) failures.push(`${r.l.name}: ${r.flooded} of 1064 silent connections open at once`);
    }
    expect(failures).toEqual([]);
  });

  it('Meta and Agent calls with invalid arguments from an authenticated member: an errno or an error each, never a crash', async () => {
    const create = (entry: { ino?: number; path?: string; name?: string }, mode = 0o100644, extra = {}) =>
      meta.call('Create', { entry, mode, uid: 0, gid: 0, ...extra });
    const badNames = ['', '.', '..', 'a/b', 'x'.repeat(300), 'a\0b', '/', '\0'];
    const layout = (l: object) => ({ unitBytes: MiB, nodes: [1], replicas: 1, mirrors: [], stale: [], moves: [], ...l });
    const created = (l: object, ino = 2 ** 33, entry = { ino: 1, name: 'published' }) => ({ entry, mode: 0o100644, uid: 0, gid: 0, ino, layout: layout(l), time: { sec: 1, nsec: 0 } });
    type Case = [string, () => Promise<{ errno?: number }>];
    const cases: Case[] = [
      ...badNames.map((name): Case => [`Create name ${JSON.stringify(name.length > 20 ? `${name.length} bytes` : name)}`, () => create({ ino: 1, name })]),
      ...badNames.filter(Boolean).map((name): Case => [`Remove name ${JSON.stringify(name.slice(0, 20))}`, () => meta.call('Remove', { entry: { ino: 1, name }, directory: false })]),
      ...badNames.filter(Boolean).map((name): Case => [`Rename to ${JSON.stringify(name.slice(0, 20))}`, () => meta.call('Rename', { from: { ino: 1, name: 'victim' }, to: { ino: 1, name } })]),
      ...badNames.filter(Boolean).map((name): Case => [`Link as ${JSON.stringify(name.slice(0, 20))}`, () => meta.call('Link', { inode: { ino: victimIno }, entry: { ino: 1, name } })]),
      ['Create in ino 0', () => create({ ino: 0, name: 'x' })],
      ['Create in ino 2^53', () => create({ ino: 2 ** 53, name: 'x' })],
      ['Create in ino -1', () => create({ ino: -1, name: 'x' })],
      ['Create in a regular file', () => create({ ino: victimIno, name: 'x' })],
      ['Create with a path of 5000 bytes', () => create({ path: '/' + 'a/'.repeat(2500) + 'x' })],
      ['Create of file type 0170000', () => create({ ino: victimDirIno, name: 'odd' }, 0o170644)],
      ['Create of a symlink to 1 MiB', () => create({ ino: victimDirIno, name: 'longlink' }, 0o120777, { target: 'x'.repeat(MiB) })],
      ['Create of a symlink to ""', () => create({ ino: victimDirIno, name: 'emptylink' }, 0o120777, { target: '' })],
      ['Getattr ino 0', () => meta.call('Getattr', { ino: 0 })],
      ['Getattr ino 2^53', () => meta.call('Getattr', { ino: 2 ** 53 })],
      ['Getattr ino -1', () => meta.call('Getattr', { ino: -1 })],
      ['Getattr path "relative"', () => meta.call('Getattr', { path: 'relative' })],
      ['Getattr path with NUL', () => meta.call('Getattr', { path: '/a\0b' })],
      ['Getattr path of 1 MiB', () => meta.call('Getattr', { path: '/' + 'a'.repeat(MiB) })],
      ['Getattr name ".." of a file', () => meta.call('Getattr', { ino: victimIno, name: '..' })],
      ['Setattr size -1', () => meta.call('Setattr', { target: { ino: victimIno }, valid: 8, size: -1 })],
      ['Setattr size 2^62', () => meta.call('Setattr', { target: { ino: victimIno }, valid: 8, size: 2 ** 62 })],
      ['Setattr size 2^53', () => meta.call('Setattr', { target: { ino: victimIno }, valid: 8, size: 2 ** 53 })],
      ['Setattr every bit, size -1', () => meta.call('Setattr', { target: { ino: victimIno }, valid: U32_MAX, size: -1 })],
      ['Setattr size of a directory', () => meta.call('Setattr', { target: { ino: victimDirIno }, valid: 8, size: 10 })],
      ['Setattr mtime nsec 2e9', () => meta.call('Setattr', { target: { ino: victimIno }, valid: 32, mtime: { sec: 0, nsec: 2e9 } })],
      ['Setattr of ino 0', () => meta.call('Setattr', { target: { ino: 0 }, valid: 1, mode: 0o777 })],
      ['Setattr of ino 2^53', () => meta.call('Setattr', { target: { ino: 2 ** 53 }, valid: 1, mode: 0o777 })],
      ['Setattr of ino -1', () => meta.call('Setattr', { target: { ino: -1 }, valid: 1, mode: 0o777 })],
      ['Remove of ino 2^53', () => meta.call('Remove', { entry: { ino: 2 ** 53, name: 'x' }, directory: false })],
      ['Remove of the root', () => meta.call('Remove', { entry: { path: '/' }, directory: true })],
      ['Rename into itself', () => meta.call('Rename', { from: { ino: 1, name: 'victimdir' }, to: { ino: victimDirIno, name: 'inside' } })],
      ['Rename with every flag', () => meta.call('Rename', { from: { ino: 1, name: 'victim' }, to: { ino: 1, name: 'victim2' }, flags: U32_MAX })],
      ['Rename of a missing name', () => meta.call('Rename', { from: { ino: 1, name: 'no-such' }, to: { ino: 1, name: 'x' } })],
      ['Link of the root directory', () => meta.call('Link', { inode: { ino: 1 }, entry: { ino: victimDirIno, name: 'rootlink' } })],
      ['Link of ino 2^53', () => meta.call('Link', { inode: { ino: 2 ** 53 }, entry: { ino: 1, name: 'l' } })],
      ['Link into a file', () => meta.call('Link', { inode: { ino: victimIno }, entry: { ino: victimIno, name: 'l' } })],
      ['ReadDir of a file', () => meta.call('ReadDir', { target: { ino: victimIno }, after: '', limit: U32_MAX })],
      ['ReadDir of ino 2^53', () => meta.call('ReadDir', { target: { ino: 2 ** 53 }, after: '\0', limit: 0 })],
      ['ReadLink of a file', () => meta.call('ReadLink', { ino: victimIno })],
      ['Open of ino 2^53', () => meta.call('Open', { target: { ino: 2 ** 53 }, nodeId: 2 })],
      ['Open of ino -1', () => meta.call('Open', { target: { ino: -1 }, nodeId: 2 })],
      ['CommitWrite of ino 0', () => meta.call('CommitWrite', { ino: 0, size: 1, mtime: null, sync: false })],
      ['CommitWrite of ino 2^53', () => meta.call('CommitWrite', { ino: 2 ** 53, size: 1, mtime: null, sync: false })],
      ['CommitWrite of ino -1', () => meta.call('CommitWrite', { ino: -1, size: 1, mtime: null, sync: false })],
      ['CommitWrite size 2^62', () => meta.call('CommitWrite', { ino: victimIno, size: 2 ** 62, mtime: null, sync: false })],
      ['CommitWrite size -1', () => meta.call('CommitWrite', { ino: victimIno, size: -1, mtime: null, sync: false })],
      ['CommitWrite of a directory', () => meta.call('CommitWrite', { ino: victimDirIno, size: 1, mtime: null, sync: false })],
      ['CommitWrite inline data of 64 KiB', () => meta.call('CommitWrite', { ino: victimIno, size: 65536, mtime: null, sync: false, inlined: true, inlineData: Buffer.alloc(65536) })],
      ['CommitWrite mtime nsec 2e9', () => meta.call('CommitWrite', { ino: victimIno, size: 1, mtime: { sec: 0, nsec: 2e9 }, sync: false, inlined: true, inlineData: Buffer.from('v') })],
      ['CommitWrite with a bogus create (no node)', () => meta.call('CommitWrite', { ino: 2 ** 33, size: 1, mtime: null, sync: false, creates: [created({ nodes: [99] })] })],
      ['Publish a create with no layout', () => meta.call('Publish', { creates: [{ ...created({}), layout: null }] })],
      ['Publish a create on node 99', () => meta.call('Publish', { creates: [created({ nodes: [99] })] })],
      ['ReserveInos 0', () => meta.call('ReserveInos', { count: 0 })],
      ['ReserveInos 2^32-1', () => meta.call('ReserveInos', { count: U32_MAX })],
      ['GetXattr name ""', () => meta.call('GetXattr', { target: { ino: victimIno }, name: '' })],
      ['GetXattr name of 300 bytes', () => meta.call('GetXattr', { target: { ino: victimIno }, name: 'user.' + 'x'.repeat(300) })],
      ['SetXattr value of 1 MiB', () => meta.call('SetXattr', { target: { ino: victimIno }, name: 'user.big', value: Buffer.alloc(MiB), flags: 0 })],
      ['SetXattr name with NUL', () => meta.call('SetXattr', { target: { ino: victimIno }, name: 'user.\0', value: Buffer.from('v'), flags: U32_MAX })],
      ['SetXattr name "weird.x"', () => meta.call('SetXattr', { target: { ino: victimIno }, name: 'weird.x', value: Buffer.from('v'), flags: 0 })],
      ['RemoveXattr name ""', () => meta.call('RemoveXattr', { target: { ino: victimIno }, name: '' })],
      ['SetStripe unit, count and replicas 2^32-1', () => meta.call('SetStripe', { target: { ino: victimDirIno }, policy: { unitBytes: U32_MAX, count: U32_MAX, replicas: U32_MAX } })],
      ['SetStripe without a policy', () => meta.call('SetStripe', { target: { ino: victimDirIno }, policy: null as never })],
      ['SetStripe placement of 10000 bytes', () => meta.call('SetStripe', { target: { ino: victimDirIno }, policy: { unitBytes: 0, count: 0, placement: 'x'.repeat(10_000) } })],
      ['MarkStale of ino 2^53', () => meta.call('MarkStale', { ino: 2 ** 53, slots: [0] })],
      ['MarkStale of ino 0', () => meta.call('MarkStale', { ino: 0, slots: [U32_MAX] })],
      ['Repair of ino 2^53', () => meta.call('Repair', { ino: 2 ** 53 })],
      ['GetStripe of ino -1', () => meta.call('GetStripe', { ino: -1 })],
      ['Append to ino 0', () => meta.call('Append', { ino: 0, data: Buffer.from('x') })],
      ['Append to a directory', () => meta.call('Append', { ino: victimDirIno, data: Buffer.from('x') })],
      ['Lock over gRPC', () => meta.call('Lock', { ino: victimIno, owner: 'x', kind: 0, type: 99, start: 10, end: 5, pid: 1 })],
      ['NodeAdmin op 99', () => meta.call('NodeAdmin', { op: 99, ids: [2] })],
      ['NodeAdmin add node 2^32-1', () => meta.call('NodeAdmin', { op: NODE_ADD, ids: [U32_MAX] })],
      ['NodeAdmin remove node 0', () => meta.call('NodeAdmin', { op: NODE_REMOVE, ids: [0] })],
      ['Scheduler change "{"', () => meta.call('Scheduler', { op: 1, json: '{', nodeId: 0 })],
      ['Scheduler put values of 1 MiB of garbage', () => meta.call('Scheduler', { op: 2, json: 'x'.repeat(MiB), nodeId: 99 })],
      ['Scheduler op 99', () => meta.call('Scheduler', { op: 99, json: '', nodeId: 0 })],
      ['Register as node 3', () => meta.call('Register', { nodeId: 3, nodeUuid: 'x', address: '127.0.0.1:1', fsid, openInos: [], incarnation: 'fuzz', dataAddress: '127.0.0.1:1' })],
      ['Register as node 2^32-1', () => meta.call('Register', { nodeId: U32_MAX, nodeUuid: 'x', address: 'x', fsid, openInos: [], incarnation: 'fuzz', dataAddress: 'x' })],
    ];
    const key = (ino: number) => ({ ino, index: 0, replica: 0 });
    for (const [name, agent] of [['root', rootAgent], ['node 2', node2Agent]] as const) {
      cases.push(
        [`${name} Agent Read length 2^32-1`, () => agent.call('Read', { key: key(2 ** 40), offset: 0, length: U32_MAX })],
        [`${name} Agent Read offset 2^63`, () => agent.call('Read', { key: key(2 ** 40), offset: 2 ** 63, length: 1 })],
        [`${name} Agent Read of ino 2^53`, () => agent.call('Read', { key: key(2 ** 53), offset: 0, length: 1 })],
        [`${name} Agent Write offset 2^63`, () => agent.call('Write', { key: key(2 ** 40), offset: 2 ** 63, data: Buffer.from('x') })],
        [`${name} Agent Write of ino 0`, () => agent.call('Write', { key: key(0), offset: 0, data: Buffer.from('x') })],
        [`${name} Agent Truncate to 2^63`, () => agent.call('Truncate', { key: key(2 ** 40), length: 2 ** 63 })],
        [`${name} Agent Truncate of ino -1`, () => agent.call('Truncate', { key: key(-1), length: 0 })],
        [`${name} Agent Sums of 2^32-1 blocks`, () => agent.call('Sums', { key: key(2 ** 40), first: 0, count: U32_MAX })],
        [`${name} Agent Sums from block 2^63`, () => agent.call('Sums', { key: key(2 ** 40), first: 2 ** 63, count: 1 })],
        [`${name} Agent Remove of ino 0`, () => agent.call('Remove', { keys: [key(0)] })],
        [`${name} Agent Sync of ino 2^53`, () => agent.call('Sync', { keys: [key(2 ** 53)] })],
        [`${name} Agent Fence of ino 0`, () => agent.call('Fence', { keys: [key(0)] })],
        [`${name} Agent Fence with generation 2^63`, () => agent.call('Fence', { keys: [{ ...key(2 ** 40), gen: 2 ** 63 }] })],
        [`${name} Agent Write with generation 2^63`, () => agent.call('Write', { key: { ...key(2 ** 40), gen: 2 ** 63 }, offset: 0, data: Buffer.from('x') })],
      );
    }
    const outcomes: string[] = [];
    const served: string[] = [];
    for (const [what, call] of cases) {
      const outcome = await bounded(what, call().then((reply) => `errno ${reply.errno ?? 0}`, (err: Error) => `error: ${err.message.split('\n')[0].slice(0, 160)}`), 10_000);
      outcomes.push(`${what} -> ${outcome}`);
      if (outcome === 'errno 0') served.push(what);
      for (const id of [1, 2]) expect(isAlive(pids[id]), `node ${id} after ${what}`).toBe(true);
    }
    console.log(outcomes.join('\n'));
    // some are harmless to serve (an empty symlink target, an unknown scheduler op); none may crash or hang
    console.log(`served (errno 0): ${served.join('; ') || 'none'}`);
    // (Repair of an inode that does not exist finds nothing to do)
    expect(served.filter((what) => !/symlink to ""|Scheduler op 99|Repair of ino/.test(what)), 'invalid calls served').toEqual([]);
    // no name was made or moved in the root
    const root = await meta.call('ReadDir', { target: { ino: 1 }, after: '', limit: 0 });
    expect(root.entries.map((e) => e.name).filter((n) => !n.startsWith('member-')).sort()).toEqual(['.kdfs', 'mid', 'small', 'striped', 'tree', 'victim', 'victimdir']);
    await membersWork('invalid-calls');
  }, 90_000);

  it('a member\'s session with invalid requests: errno replies, bogus creates refused, the session dropped only for what it must not carry', async () => {
    // a member that is no node of the cluster: node 4's credentials, from a token made on the root
    const token = makeToken(cluster.nodeDir(1), fsid, cluster.rootAddress, 4);
    const node4: TlsIdentity = { ca: token.ca, key: token.key, cert: token.cert };
    const port = listener(1, 'session').port;
    const definition = serviceDefinition('Meta');
    const open = async () => {
      const peer = await tlsTo<SessionHeader>(port, node4, sessionHeader);
      peer.send({ id: 1, kind: SESSION_HELLO }, Buffer.from(sessionHello.encode({ fsid, nodeId: 4, incarnation: `fuzz-${SEED}` }).finish()));
      const reply = await peer.next();
      expect(reply?.header.errno, 'the session opens').toBe(0);
      return peer;
    };
    let nextId = 100;
    const request = async (peer: Peer<SessionHeader>, method: string, body: unknown | Buffer) => {
      const id = nextId++;
      const payload = Buffer.isBuffer(body) ? body : definition[method].requestSerialize(body) as Buffer;
      peer.send({ id, kind: SESSION_REQUEST, method }, payload);
      // callbacks to node 4 would come first: none is expected (it caches nothing)
      const reply = await peer.next(10_000);
      if (!reply) return { errno: null as number | null, reply: null as Record<string, unknown> | null };
      expect(reply.header.id).toBe(id);
      expect(reply.header.kind).toBe(SESSION_REPLY);
      const body2 = reply.header.errno ? null : definition[method].responseDeserialize(reply.data) as Record<string, unknown>;
      return { errno: reply.header.errno ?? 0, reply: body2 };
    };
    const layout = (l: object) => ({ unitBytes: MiB, nodes: [1], replicas: 1, mirrors: [], stale: [], moves: [], ...l });
    const create = (over: object, l: object = {}) => ({ entry: { ino: victimDirIno, name: 'published' }, mode: 0o100644, uid: 0, gid: 0, ino: 2 ** 40, layout: layout(l), time: { sec: 1, nsec: 0 }, ...over });
    const bogusCreates: [string, object][] = [
      ['no layout', create({ layout: null })],
      ['a unit of 0', create({}, { unitBytes: 0 })],
      ['a unit of 2^32-1', create({}, { unitBytes: U32_MAX })],
      ['no nodes', create({}, { nodes: [] })],
      ['node 99', create({}, { nodes: [99] })],
      ['node 0', create({}, { nodes: [0] })],
      ['10000 nodes', create({}, { nodes: new Array(10_000).fill(1) })],
      ['replicas 2^32-1', create({}, { replicas: U32_MAX })],
      ['mirrors that do not match the replicas', create({}, { replicas: 2, mirrors: [] })],
      ['a mirror on node 99', create({}, { replicas: 2, mirrors: [99] })],
      ['a stale slot', create({}, { stale: [0] })],
      ['a move', create({}, { moves: [{ slot: 0, node: 2 }] })],
      ['a directory', create({ mode: 0o040755 })],
      ['a device', create({ mode: 0o020644 })],
      ['ino 0', create({ ino: 0 })],
      ['ino 2^53', create({ ino: 2 ** 53 })],
      ['an existing inode (the victim)', create({ ino: victimIno, entry: { ino: victimDirIno, name: 'hijack' } })],
      ['the root inode', create({ ino: 1, entry: { ino: victimDirIno, name: 'hijack-root' } })],
      ['name ".."', create({ entry: { ino: victimDirIno, name: '..' } })],
      ['name "a/b"', create({ entry: { ino: victimDirIno, name: 'a/b' } })],
      ['a 300-byte name', create({ entry: { ino: victimDirIno, name: 'x'.repeat(300) } })],
      ['in a regular file', create({ entry: { ino: victimIno, name: 'x' } })],
      ['in ino 2^53', create({ entry: { ino: 2 ** 53, name: 'x' } })],
      ['time nsec 2e9', create({ time: { sec: 0, nsec: 2e9 } })],
    ];
    const outcomes: string[] = [];
    const peer = await open();
    try {
      for (const [what, bogus] of bogusCreates) {
        const { errno, reply } = await request(peer, 'Publish', { creates: [bogus] });
        const failed = (reply?.failed as { errno: number }[] | undefined) ?? [];
        outcomes.push(`Publish, ${what} -> errno ${errno}, failed ${JSON.stringify(failed.map((f) => f.errno))}`);
        expect(errno === null || errno !== 0 || (reply?.errno as number) !== 0 || failed.length === 1, `Publish of a create with ${what} is refused`).toBe(true);
      }
      // the same bogus creates carried by a CommitWrite of one of them
      const { errno: commitErrno, reply: commit } = await request(peer, 'CommitWrite', { ino: 2 ** 40, size: 1, mtime: null, sync: false, creates: bogusCreates.map(([, c]) => c) });
      outcomes.push(`CommitWrite with every bogus create -> errno ${commitErrno}/${commit?.errno}, failed ${(commit?.failed as unknown[] | undefined)?.length}`);
      expect(commitErrno !== 0 || commit?.errno !== 0).toBe(true);
      const more: [string, string, unknown | Buffer][] = [
        ['an unknown method', 'NoSuchMethod', Buffer.alloc(0)],
        ['Register on a session', 'Register', { nodeId: 4, fsid }],
        ['ReserveInos 0', 'ReserveInos', { count: 0 }],
        ['Lock with type 99, start after end', 'Lock', { ino: victimIno, owner: 'fuzz', kind: 0, type: 99, start: 10, end: 5, pid: 1 }],
        ['Lock of ino 2^53', 'Lock', { ino: 2 ** 53, owner: 'fuzz', kind: 7, type: 1, start: 0, end: 2 ** 63, pid: 1, test: true }],
        ['CancelLock 2^32-1', 'CancelLock', { waitId: U32_MAX }],
        ['ReclaimLocks of bogus locks', 'ReclaimLocks', { locks: [{ ino: 2 ** 53, owner: '', kind: 99, type: 99, start: 5, end: 1, pid: 0 }, { ino: 0, owner: 'x'.repeat(10_000), kind: 0, type: 0, start: 0, end: 0, pid: 0 }] }],
        ['Close of ghosts', 'Close', { ino: 2 ** 53, nodeId: 4, inos: [0, 2 ** 53, -1], opens: [0, -1] }],
        ['Getattr of an empty payload', 'Getattr', Buffer.alloc(0)],
      ];
      for (const [what, method, body] of more) {
        const { errno, reply } = await request(peer, method, body);
        outcomes.push(`${what} -> errno ${errno}${reply ? `/${reply.errno}` : ''}`);
        expect(errno, `${what}: a reply`).not.toBeNull();
      }
      // frames a session answers or ignores
      peer.send({ id: 5000, kind: SESSION_CALLBACK_DONE });
      peer.send({ id: 5001, kind: SESSION_PING });
      expect((await peer.next())?.header.id, 'a PING after the rest').toBe(5001);
    } finally {
      peer.destroy();
    }
    // what a session must not carry: dropped (a fresh session each)
    const dropped: [string, (p: Peer<SessionHeader>) => void][] = [
      ['a garbage payload', (p) => p.send({ id: 9, kind: SESSION_REQUEST, method: 'Getattr' }, Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x34]))],
      ['16 MiB of zeros as a request', (p) => p.send({ id: 9, kind: SESSION_REQUEST, method: 'Create' }, Buffer.alloc(16 * MiB))],
      ['a REPLY from the node', (p) => p.send({ id: 9, kind: SESSION_REPLY, errno: 5 })],
      ['an unknown kind', (p) => p.send({ id: 9, kind: 99 })],
      ['a second HELLO', (p) => p.send({ id: 9, kind: SESSION_HELLO }, Buffer.from(sessionHello.encode({ fsid, nodeId: 2, incarnation: 'x' }).finish()))],
      ['16 MiB + 1 of data', (p) => p.write(frameHead(sessionHeader, { id: 9, kind: SESSION_REQUEST, method: 'Getattr' }, 16 * MiB + 1))],
    ];
    for (const [what, send] of dropped) {
      const p = await open();
      send(p);
      const reply = await p.next(3000);
      const closed = await p.closedWithin();
      outcomes.push(`${what} -> ${reply ? `reply errno ${reply.header.errno}, ` : ''}${closed ? 'dropped' : 'kept'}`);
      // a second HELLO may be answered, the rest must not be served
      if (what !== 'a second HELLO') expect(closed || (reply?.header.errno ?? 0) !== 0, `${what}: dropped or refused`).toBe(true);
      p.destroy();
    }
    // HELLOs that must be refused: another node's id (EACCES, for good: its
    // client stops trying), another file system, REQUEST first (EINVAL)
    const refusals: [string, (p: Peer<SessionHeader>) => void, number][] = [
      ['a HELLO of node 2 with node 4\'s certificate', (p) => p.send({ id: 1, kind: SESSION_HELLO }, Buffer.from(sessionHello.encode({ fsid, nodeId: 2, incarnation: 'x' }).finish())), E.EACCES],
      ['a HELLO of another file system', (p) => p.send({ id: 1, kind: SESSION_HELLO }, Buffer.from(sessionHello.encode({ fsid: 'not-this-file-system', nodeId: 4, incarnation: 'x' }).finish())), E.EINVAL],
      ['a HELLO of node 0', (p) => p.send({ id: 1, kind: SESSION_HELLO }, Buffer.from(sessionHello.encode({ fsid, nodeId: 0, incarnation: 'x' }).finish())), E.EINVAL],
      ['an undecodable HELLO', (p) => p.send({ id: 1, kind: SESSION_HELLO }, Buffer.from([0xff, 0xff, 0xff])), E.EINVAL],
      ['a REQUEST before HELLO', (p) => p.send({ id: 1, kind: SESSION_REQUEST, method: 'Getattr' }, definition.Getattr.requestSerialize({ path: '/' }) as Buffer), E.EINVAL],
    ];
    for (const [what, send, errno] of refusals) {
      const p = await tlsTo<SessionHeader>(port, node4, sessionHeader);
      send(p);
      const reply = await p.next();
      outcomes.push(`${what} -> ${reply ? `errno ${reply.header.errno}` : 'no reply'}`);
      expect(reply?.header.errno, what).toBe(errno);
      expect(await p.closedWithin(), `${what}: closed`).toBe(true);
      p.destroy();
    }
    console.log(outcomes.join('\n'));
    const names = (await meta.call('ReadDir', { target: { ino: victimDirIno }, after: '', limit: 0 })).entries.map((e) => e.name);
    expect(names, 'no bogus create was made').toEqual([]);
    await membersWork('session');
  }, 90_000);

  it('the files written before the attacks read back identical through the three mounts; no node crashed', async () => {
    for (const id of [1, 2, 3]) {
      for (const [name, digest] of before) {
        const back = await bounded(`read ${name} through node ${id}`, fsp.readFile(cluster.path(id, name)));
        expect(sha256(back), `${name} through node ${id}`).toBe(digest);
      }
    }
    const lines: string[] = [];
    for (const id of [1, 2, 3]) {
      expect(isAlive(pids[id]), `node ${id}`).toBe(true);
      expect(cluster.pid(id), `node ${id} was not restarted`).toBe(pids[id]);
      const log = logSince(id);
      expect(log, `node ${id}'s log`).not.toMatch(/uncaught|FATAL|out of memory/i);
      lines.push(`node ${id}: RSS ${(rssOf(pids[id]) / MiB).toFixed(1)} MiB at the end${baselineRss[id] ? ` (${(baselineRss[id] / MiB).toFixed(1)} before the attacks)` : ''}; ${log.split('\n').filter(Boolean).length} log lines during the attacks`);
    }
    console.log([...lines, 'RSS after each attack:', ...rssTrail].join('\n'));
  }, 60_000);
});
