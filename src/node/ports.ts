// DIR/ports.json: the ports a node listened on, taken again when it starts
// anew with none configured (mkfs.kdfs's default listen address, port 0). Peers
// that knew its addresses before a restart then reach it there without asking
// the metadata service where it went, which they could not do while the service
// is between two leaders: a write to a node restarted just before a failover
// would fail with EIO at the 5 s bound instead of going through.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { nodePaths } from '../format/paths.js';
import { log } from '../common/log.js';

export type Listener = 'rpc' | 'data' | 'session';
export type Ports = Partial<Record<Listener, number>>;

const LISTENERS: Listener[] = ['rpc', 'data', 'session'];
const PORT_MAX = 65_535;

export function readPorts(dir: string): Ports {
  let saved: Record<string, unknown>;
  try {
    saved = JSON.parse(readFileSync(nodePaths(dir).ports, 'utf8')) as Record<string, unknown>;
  } catch {
    return {};
  }
  const ports: Ports = {};
  for (const listener of LISTENERS) {
    const port = saved?.[listener];
    if (Number.isInteger(port) && (port as number) > 0 && (port as number) <= PORT_MAX) ports[listener] = port as number;
  }
  return ports;
}

/** Remembers where a listener of this node listens now (the others' ports stay). */
export function rememberPort(dir: string, listener: Listener, port: number): void {
  const ports = { ...readPorts(dir), [listener]: port };
  const file = nodePaths(dir).ports;
  try {
    // written whole or not at all: a node killed mid-write keeps the last ports
    writeFileSync(`${file}.new`, JSON.stringify(ports) + '\n');
    renameSync(`${file}.new`, file);
  } catch (err) {
    // only a convenience for peers: the node serves without it
    log.warn(`cannot remember the ports of this node in ${file}: ${(err as Error).message}`);
  }
}

/** Listens on the port the listener had last time if it is free, else on any
 *  port (0); remembers the one it got. Returns it. */
export async function listenAsBefore(dir: string, listener: Listener, listen: (port: number) => Promise<number>): Promise<number> {
  const before = readPorts(dir)[listener];
  let port: number | null = null;
  if (before !== undefined) {
    try {
      port = await listen(before);
    } catch (err) {
      log.info(`the ${listener} port of this node before, ${before}, is taken (${(err as Error).message}): listening on another`);
    }
  }
  port ??= await listen(0);
  if (port !== before) rememberPort(dir, listener, port);
  return port;
}
