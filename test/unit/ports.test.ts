// A node's ports kept across restarts (src/node/ports.ts), with real listening
// sockets on loopback: the port of last time when it is free, another (and
// remembered) when it is taken, and a damaged ports file is no obstacle.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { nodePaths } from '../../src/format/paths.js';
import { listenAsBefore, readPorts } from '../../src/node/ports.js';

const servers: net.Server[] = [];
let dir = '';

function listener(): (port: number) => Promise<number> {
  return (port) => new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      servers.push(server);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}

const closeAll = () => Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'kdfs-ports-'));
});
afterEach(async () => {
  await closeAll();
  fs.rmSync(dir, { recursive: true, force: true });
});

describe('the ports of a node', () => {
  it('are taken again after a restart, each listener its own', async () => {
    const data = await listenAsBefore(dir, 'data', listener());
    const session = await listenAsBefore(dir, 'session', listener());
    expect(data).toBeGreaterThan(0);
    expect(session).not.toBe(data);
    expect(readPorts(dir)).toEqual({ data, session });
    await closeAll();
    expect(await listenAsBefore(dir, 'session', listener())).toBe(session);
    expect(await listenAsBefore(dir, 'data', listener())).toBe(data);
  });

  it('move to another port when the old one is taken, which they remember', async () => {
    const first = await listenAsBefore(dir, 'data', listener());
    // the old port stays held (by the first listener) while the node starts again
    const second = await listenAsBefore(dir, 'data', listener());
    expect(second).not.toBe(first);
    expect(readPorts(dir).data).toBe(second);
  });

  it('start anywhere when the ports file is damaged, and write it anew', async () => {
    fs.writeFileSync(nodePaths(dir).ports, '{"data": "x", "rpc": 70000, "session": ');
    expect(readPorts(dir)).toEqual({});
    const port = await listenAsBefore(dir, 'rpc', listener());
    expect(readPorts(dir)).toEqual({ rpc: port });
  });
});
