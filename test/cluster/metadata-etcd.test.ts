// The metadata in etcd (mkfs.kdfs --meta etcd://...): a 3-member etcd cluster on
// loopback with mutual TLS, every node a candidate for the metadata service's
// leadership. The leader killed with kill -9 during creates, renames and
// removes from node 2: the workload goes on without an error and loses nothing
// it was told was done; a leader stopped (SIGSTOP) past its lease is deposed
// and commits nothing when it wakes; an etcd member killed changes nothing.
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Cluster, objectBytes } from '../harness/cluster.js';
import { RemoteAgent } from '../../src/agent/remote.js';
import { stopMember, clientCredentials } from '../../src/etcd/local.js';
import { connectEtcd, fsPrefix } from '../../src/meta/kv/etcd.js';
import { openEtcdEngine } from '../../src/meta/kv/target.js';
import { readLeader } from '../../src/meta/leader/election.js';
import { readSuperblock } from '../../src/format/superblock.js';
import { FAILOVER_BOUND_MS } from '../../src/meta/leader/election.js';
import { MetaStore } from '../../src/meta/store.js';
import { MetaService } from '../../src/meta/service.js';
import { ObjectStore } from '../../src/agent/objectStore.js';
import { FIRST_INO, ROOT_INO, requestKey } from '../../src/meta/records.js';
import { E } from '../../src/common/errno.js';
import { metaClientFor } from '../../src/cli/common.js';
import { Locker, PENDING, killAll, within } from '../harness/locker.js';

const CHURN = path.resolve(__dirname, '..', 'tools', 'churn.js');
const sha = (data: Buffer) => createHash('sha256').update(data).digest('hex');

/** Runs test/tools/churn.js on a mount; resolves with its exit status and stderr. */
function churn(dir: string, tag: string, rounds: number, log: string): Promise<{ code: number; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CHURN, dir, tag, String(rounds), log], { timeout: 120_000, killSignal: 'SIGKILL' }, (err, _stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stderr });
    });
  });
}

/** What a churn log says exists at the end: created or renamed to, and not removed. */
function survivors(log: string): Set<string> {
  const names = new Set<string>();
  for (const line of fs.readFileSync(log, 'utf8').split('\n').filter(Boolean)) {
    const [what, name, renamed] = line.split(' ');
    if (what === 'created') names.add(name);
    else if (what === 'renamed') {
      names.delete(name);
      names.add(renamed);
    } else if (what === 'removed') names.delete(name);
  }
  return names;
}

function lines(file: string): number {
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).length : 0;
}

/** Waits (polling, within boundMs) until check() holds; returns how long it took. */
async function until(check: () => boolean | Promise<boolean>, boundMs: number, what: string): Promise<number> {
  const start = Date.now();
  while (!(await check())) {
    if (Date.now() - start > boundMs) throw new Error(`${what}: not within ${boundMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return Date.now() - start;
}

async function leaderOf(cluster: Cluster): Promise<number | null> {
  const sb = await readSuperblock(cluster.nodeDir(2));
  const client = connectEtcd({ endpoints: cluster.etcdEndpoints, ...clientCredentials(path.join(cluster.etcdDir, 'pki')) });
  try {
    return (await readLeader(client, sb.fsid))?.nodeId ?? null;
  } finally {
    client.close();
  }
}

describe('metadata in etcd: the leader killed during a metadata workload', () => {
  let cluster: Cluster;
  let logs: string;
  beforeAll(async () => {
    cluster = await Cluster.start({ nodes: 3, etcd: true, replicas: 2 });
    logs = fs.mkdtempSync(path.join(os.tmpdir(), 'kdfs-churn-'));
  }, 120_000);
  afterAll(async () => {
    await killAll();
    await cluster?.stop();
    if (logs) fs.rmSync(logs, { recursive: true, force: true });
  });

  it('serves from every node, node 1 leading; kdfs status names the leader', async () => {
    fs.mkdirSync(cluster.path(2, 'first'));
    fs.writeFileSync(cluster.path(2, 'first', 'a'), 'made on node 2');
    expect(fs.readFileSync(cluster.path(3, 'first', 'a'), 'utf8')).toBe('made on node 2');
    const status = JSON.parse((await cluster.kdfs(['status', '--json', cluster.mnt(3)])).stdout) as {
      metaLeader: number; metaEngine: string; metaStandbys: number[]; etcdMembers: { healthy: boolean; leader: boolean }[];
    };
    expect(status).toMatchObject({ metaLeader: 1, metaEngine: 'etcd', metaStandbys: [2, 3] });
    expect(status.etcdMembers.map((m) => m.healthy)).toEqual([true, true, true]);
    expect(status.etcdMembers.filter((m) => m.leader).length).toBe(1);
  });

  it('kill -9 of the leader: the processes on nodes 2 and 3 (creates, renames, removes; a 24 MiB write) finish without errors, nothing they were told is lost, files read back identical', async () => {
    fs.mkdirSync(cluster.path(2, 'work'));
    // files written and closed before the kill
    const before = new Map<string, string>();
    for (let i = 0; i < 12; i++) {
      const data = randomBytes(64 * 1024 + i * 4099);
      fs.writeFileSync(cluster.path(2, 'work', `before${i}`), data);
      before.set(`before${i}`, sha(data));
    }
    const logA = path.join(logs, 'a.log');
    const logB = path.join(logs, 'b.log');
    const logC = path.join(logs, 'c.log');
    const runs = [churn(cluster.path(2, 'work'), 'a', 300, logA), churn(cluster.path(2, 'work'), 'b', 300, logB), churn(cluster.path(3, 'work'), 'c', 200, logC)];
    // and a file written through node 3 across the kill, synced at its end
    const source = path.join(logs, 'big.src');
    fs.writeFileSync(source, randomBytes(24 * 1024 * 1024));
    // well into the workload, the leader dies
    await until(() => lines(logA) + lines(logB) >= 80, 60_000, 'the workload started');
    const writing = new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile('dd', [`if=${source}`, `of=${cluster.path(3, 'work', 'big')}`, 'bs=1M', 'conv=fsync', 'status=none'], { timeout: 120_000 }, (err, _out, stderr) =>
        resolve({ code: err ? 1 : 0, stderr }));
    });
    // a lock held on node 2 across the kill, and one asked right after it
    fs.writeFileSync(cluster.path(2, 'locked'), '');
    const [holder, taker] = await Promise.all([Locker.start('node2'), Locker.start('node3')]);
    const [held, taken] = await Promise.all([holder.open(cluster.path(2, 'locked')), taker.open(cluster.path(3, 'locked'))]);
    expect(await holder.lock(held, 'w', 0, 10)).toBe('ok');
    await cluster.kill9(1);
    const killedMs = Date.now();
    // within the failover bound, though node 1's node (a member) never reclaims its locks
    const asked = within(taker.send({ op: 'lock', fd: taken, type: 'w', start: 100, len: 1 }).then((answer) => ({ answer, ms: Date.now() - killedMs })), FAILOVER_BOUND_MS + 30_000);
    const electedMs = await until(async () => {
      const leader = await leaderOf(cluster).catch(() => null);
      return leader !== null && leader !== 1;
    }, FAILOVER_BOUND_MS, 'another node leads');
    const granted = await asked;
    expect(granted).not.toBe(PENDING);
    if (granted !== PENDING) {
      expect(granted.answer).toMatchObject({ ok: true });
      expect(granted.ms).toBeLessThanOrEqual(FAILOVER_BOUND_MS);
      process.stdout.write(`a lock asked at the kill granted after ${granted.ms} ms\n`);
    }
    // node 2 reclaimed its own: never two holders
    expect(['EAGAIN', 'EACCES']).toContain(await taker.lock(taken, 'w', 0, 1));
    holder.kill();
    taker.kill();
    const [a, b, c] = await Promise.all(runs);
    const written = await writing;
    expect(a.stderr + b.stderr + c.stderr + written.stderr).toBe('');
    expect([a.code, b.code, c.code, written.code]).toEqual([0, 0, 0, 0]);
    // what each process was told, as node 2 sees it (node 3 made some)
    const present = new Set(fs.readdirSync(cluster.path(2, 'work')));
    for (const log of [logA, logB, logC]) {
      for (const name of survivors(log)) expect(present.has(name), `${name} is there`).toBe(true);
    }
    expect(sha(fs.readFileSync(cluster.path(2, 'work', 'big')))).toBe(sha(fs.readFileSync(source)));
    const expected = new Set([...survivors(logA), ...survivors(logB), ...survivors(logC), ...before.keys(), 'big']);
    expect([...present].filter((name) => !expected.has(name))).toEqual([]);
    for (const [name, digest] of before) expect(sha(fs.readFileSync(cluster.path(3, 'work', name))), name).toBe(digest);
    process.stdout.write(`a new leader within ${electedMs} ms of the kill\n`);
    const status = JSON.parse((await cluster.kdfs(['status', '--json', cluster.mnt(3)])).stdout) as { metaLeader: number };
    expect([2, 3]).toContain(status.metaLeader);
  }, 150_000);

  it('a removal, truncation or write of objects by the deposed leader is refused by the agents (ESTALE): nothing changed', async () => {
    const sb = await readSuperblock(cluster.nodeDir(2));
    const data = randomBytes(3 * 1024 * 1024);
    fs.writeFileSync(cluster.path(2, 'work', 'kept'), data);
    const ino = Number(fs.statSync(cluster.path(2, 'work', 'kept')).ino);
    const status = JSON.parse((await cluster.kdfs(['status', '--json', cluster.mnt(2)])).stdout) as { nodes: { id: number; address: string; dataAddress: string }[] };
    const held = objectBytes(cluster.nodeDir(3));
    // as node 1 would, still believing it leads under the first epoch: over gRPC, and writes over the data channel too
    // (node 1's credentials, and the data key the service gives every member)
    const meta = await metaClientFor(cluster.nodeDir(1));
    const node3 = status.nodes.find((n) => n.id === 3)!;
    expect(node3.dataAddress).toMatch(/:\d+$/);
    const agents = [new RemoteAgent(node3.address, '', sb.fsid), new RemoteAgent(node3.address, node3.dataAddress, sb.fsid)];
    try {
      const keys = [0, 1, 2].flatMap((index) => [0, 1].map((replica) => ({ ino, index, replica })));
      for (const agent of agents) {
        agent.leaderEpoch = 1;
        await expect(agent.remove(keys)).rejects.toMatchObject({ errno: E.ESTALE });
        await expect(agent.truncate(keys[0], 0)).rejects.toMatchObject({ errno: E.ESTALE });
        for (const key of keys) await expect(agent.write(key, 0, Buffer.alloc(4096, 7))).rejects.toMatchObject({ errno: E.ESTALE });
      }
    } finally {
      for (const agent of agents) agent.close();
      meta.disconnect();
    }
    expect(objectBytes(cluster.nodeDir(3))).toBe(held);
    expect(sha(fs.readFileSync(cluster.path(3, 'work', 'kept')))).toBe(sha(data));
  });

  it('node 1 mounted again follows the new leader and sees everything', async () => {
    await cluster.mount(1);
    expect(fs.readdirSync(cluster.path(1, 'first'))).toEqual(['a']);
    fs.writeFileSync(cluster.path(1, 'first', 'b'), 'made on node 1, not leading');
    expect(fs.readFileSync(cluster.path(2, 'first', 'b'), 'utf8')).toBe('made on node 1, not leading');
    expect(await leaderOf(cluster)).not.toBe(1);
  }, 60_000);

  it('the etcd member leading etcd\'s Raft killed: the service goes on, under the same metadata leader', async () => {
    type Member = { endpoint: string; healthy: boolean; leader: boolean };
    const members = async () => (JSON.parse((await cluster.kdfs(['status', '--json', cluster.mnt(2)])).stdout) as { etcdMembers: Member[] }).etcdMembers;
    const raftLeader = (await members()).findIndex((m) => m.leader);
    expect(raftLeader).toBeGreaterThanOrEqual(0);
    const metaLeader = await leaderOf(cluster);
    await stopMember(cluster.etcdDir, `m${raftLeader + 1}`, 'SIGKILL');
    fs.mkdirSync(cluster.path(2, 'after-member'));
    for (let i = 0; i < 20; i++) fs.writeFileSync(cluster.path(2, 'after-member', `f${i}`), `f${i}`);
    expect(fs.readdirSync(cluster.path(3, 'after-member')).length).toBe(20);
    // kdfs status tells which member is down
    const dead = cluster.etcdEndpoints[raftLeader];
    expect((await members()).map((m) => [m.endpoint, m.healthy])).toEqual(cluster.etcdEndpoints.map((e) => [e, e !== dead]));
    // etcd's new Raft leader keeps the leases: the metadata leader goes on (suspended meanwhile at most)
    expect(await leaderOf(cluster)).toBe(metaLeader);
  }, 60_000);
});

describe('metadata in etcd: a leader stopped past its lease', () => {
  let cluster: Cluster;
  let logs: string;
  beforeAll(async () => {
    cluster = await Cluster.start({ nodes: 3, etcd: true });
    logs = fs.mkdtempSync(path.join(os.tmpdir(), 'kdfs-churn-'));
  }, 120_000);
  afterAll(async () => {
    const pid = cluster?.pid(1);
    if (pid) process.kill(pid, 'SIGCONT');
    await cluster?.stop();
    if (logs) fs.rmSync(logs, { recursive: true, force: true });
  });

  it('SIGSTOP of the leader for 30 s: another leads; woken, it commits nothing, steps down, and its mount follows the new leader', async () => {
    fs.mkdirSync(cluster.path(2, 'work'));
    const pid = cluster.pid(1)!;
    const log = path.join(logs, 'n1.log');
    process.kill(pid, 'SIGSTOP');
    const stoppedAt = Date.now();
    // node 1's own mount has calls waiting in its stopped process
    const onNode1 = churn(cluster.path(1, 'work'), 'n1', 40, log);
    try {
      await until(async () => ![1, null].includes(await leaderOf(cluster).catch(() => null)), FAILOVER_BOUND_MS + 5000, 'another node leads');
      for (let i = 0; i < 20; i++) fs.writeFileSync(cluster.path(2, 'work', `during${i}`), `during${i}`);
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, 30_000 - (Date.now() - stoppedAt))));
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    const n1 = await onNode1;
    expect(n1.stderr).toBe('');
    expect(n1.code).toBe(0);
    const nodeLog = fs.readFileSync(path.join(cluster.nodeDir(1), 'kdfs.log'), 'utf8');
    expect(nodeLog).toMatch(/metadata leadership of node 1 lost/);
    const leader = await leaderOf(cluster);
    expect(leader).not.toBe(1);
    const present = new Set(fs.readdirSync(cluster.path(3, 'work')));
    for (const name of survivors(log)) expect(present.has(name), `${name} is there`).toBe(true);
    for (let i = 0; i < 20; i++) expect(present.has(`during${i}`)).toBe(true);
  }, 120_000);

  it('a commit fenced by an old epoch changes nothing in etcd', async () => {
    const sb = await readSuperblock(cluster.nodeDir(2));
    const target = { endpoints: cluster.etcdEndpoints, ...clientCredentials(path.join(cluster.etcdDir, 'pki')) };
    const engine = openEtcdEngine(target, sb.fsid);
    try {
      const key = Buffer.from('fence-probe');
      // the leader key's create revision of the first leadership, long gone
      engine.fenceOn(Buffer.from(`kdfs/${sb.fsid}!leader`), '1');
      await expect(engine.write([[{ type: 'put', key, value: Buffer.from('stale') }]], true)).rejects.toThrow(/no longer the leader/);
      expect(await engine.get(key)).toBeUndefined();
      const client = connectEtcd(target);
      try {
        expect((await client.kv.range({ key: Buffer.concat([fsPrefix(sb.fsid), key]) })).kvs).toEqual([]);
      } finally {
        client.close();
      }
    } finally {
      await engine.close();
    }
  });
});

describe('metadata in etcd: a call applied, then sent again to the next leader', () => {
  let cluster: Cluster;
  let scratch: string;
  beforeAll(async () => {
    cluster = await Cluster.start({ nodes: 1, etcd: true });
    scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'kdfs-replay-'));
  }, 120_000);
  afterAll(async () => {
    await cluster?.stop();
    if (scratch) fs.rmSync(scratch, { recursive: true, force: true });
  });

  it('is answered as the first time (no ENOENT, no EEXIST, no second append); a call never applied runs', async () => {
    // a service of its own file system in the cluster's etcd, as a new leader would run it
    const fsid = `replay-${randomBytes(4).toString('hex')}`;
    const target = { endpoints: cluster.etcdEndpoints, ...clientCredentials(path.join(cluster.etcdDir, 'pki')) };
    const now = { sec: Math.floor(Date.now() / 1000), nsec: 0 };
    const records = MetaStore.initialRecords(
      { fsid, nextIno: FIRST_INO, defaultPolicy: { unitBytes: 0, count: 0, replicas: 1 }, rootNodeId: 1, createdSec: now.sec },
      { attr: { ino: ROOT_INO, mode: 0o40755, uid: 0, gid: 0, nlink: 2, size: 4096, rdev: 0, atime: now, mtime: now, ctime: now },
        layout: null, target: '', parent: ROOT_INO, entries: 0, policy: null, xattrs: {}, inlined: false, inlineData: Buffer.alloc(0) },
      { id: 1, uuid: 'u', address: '127.0.0.1:1', joinedSec: now.sec, dataAddress: '', domain: '' },
    );
    const setup = openEtcdEngine(target, fsid);
    await setup.write([records], true);
    await setup.close();
    ObjectStore.create(path.join(scratch, 'objects'));
    const objects = new ObjectStore(path.join(scratch, 'objects'));
    let leading = true;
    const meta = await MetaService.open(openEtcdEngine(target, fsid), { nodeId: 1, objects, leaderEpoch: 7, leading: () => leading });
    try {
      const caller = { nodeId: 2 };
      const incarnation = randomBytes(16).toString('hex');
      const call = (id: number, resent: boolean) => ({ key: requestKey(2, incarnation, id), resent });
      const dir = { ino: ROOT_INO, name: 'd' };
      const made = await meta.call('Create', { entry: dir, mode: 0o40755, uid: 0, gid: 0, exclusive: true }, caller, call(1, false)) as { attr: { ino: number } };
      // the reply was lost: sent again, with the same id
      const again = await meta.call('Create', { entry: dir, mode: 0o40755, uid: 0, gid: 0, exclusive: true }, caller, call(1, true)) as { errno: number; attr: { ino: number } };
      expect(again.errno ?? 0).toBe(0);
      expect(again.attr.ino).toBe(made.attr.ino);
      // a new call of the same thing is refused, as it must be
      await expect(meta.call('Create', { entry: dir, mode: 0o40755, uid: 0, gid: 0, exclusive: true }, caller, call(2, false))).rejects.toMatchObject({ errno: E.EEXIST });
      await meta.call('Remove', { entry: dir, directory: true }, caller, call(3, false));
      expect((await meta.call('Remove', { entry: dir, directory: true }, caller, call(3, true)) as { errno?: number }).errno ?? 0).toBe(0);
      // sent again but never applied (the leader died before): it runs
      await expect(meta.call('Remove', { entry: dir, directory: true }, caller, call(4, true))).rejects.toMatchObject({ errno: E.ENOENT });
      // its own node's objects are called in-process: once deposed, it removes and truncates nothing there either
      const key = { ino: FIRST_INO + 99, index: 0, replica: 0 };
      await objects.write(key, 0, Buffer.from('kept'));
      leading = false;
      await expect(meta.cluster.agent(1).remove([key])).rejects.toMatchObject({ errno: E.ESTALE });
      await expect(meta.cluster.agent(1).truncate(key, 0)).rejects.toMatchObject({ errno: E.ESTALE });
      await expect(meta.cluster.agent(1).write(key, 0, Buffer.from('gone'))).rejects.toMatchObject({ errno: E.ESTALE });
      expect((await objects.read(key, 0, 4)).toString()).toBe('kept');
    } finally {
      await meta.close();
    }
  });
});
