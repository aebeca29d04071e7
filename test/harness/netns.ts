// Nodes on a network of their own: one network namespace per node, each joined
// to a bridge in the test's namespace by a veth link, so that a node can be cut
// off (its link set down) and joined again. The test process reaches every node
// through the bridge's own address. Names carry the test runner's pid, so that
// the global teardown removes what a crashed worker left (sweepNetworks).
import { spawnSync } from 'node:child_process';

/** One /24 per network: 10.77.<subnet>.0. */
const SUBNETS = 250;

function ip(args: string[]): void {
  const result = spawnSync('ip', args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`ip ${args.join(' ')}: ${result.stderr.trim()}`);
}

export class TestNetwork {
  private readonly made: number[] = [];

  private constructor(readonly tag: string, private readonly subnet: number) {}

  /** A bridge with the test's address on it, and a namespace linked to it for each node. */
  static create(nodes: number): TestNetwork {
    const runner = process.env.KDFS_TEST_RUN ?? String(process.pid);
    // names of links are 15 bytes at most: k<runner in base 36><random>
    const tag = `k${Number(runner).toString(36)}${Math.floor(Math.random() * 36 ** 3).toString(36).padStart(3, '0')}`;
    const net = new TestNetwork(tag, 1 + Math.floor(Math.random() * SUBNETS));
    try {
      ip(['link', 'add', net.bridge, 'type', 'bridge']);
      ip(['addr', 'add', `10.77.${net.subnet}.254/24`, 'dev', net.bridge]);
      ip(['link', 'set', net.bridge, 'up']);
      for (let id = 1; id <= nodes; id++) net.addNode(id);
    } catch (err) {
      net.destroy();
      throw err;
    }
    return net;
  }

  get bridge(): string {
    return `${this.tag}b`;
  }

  namespace(id: number): string {
    return `${this.tag}n${id}`;
  }

  address(id: number): string {
    return `10.77.${this.subnet}.${id}`;
  }

  /** The node's end of its link in the test's namespace (the one cut). */
  link(id: number): string {
    return `${this.tag}v${id}`;
  }

  /** The node's link goes down: nothing reaches it, nothing leaves it. */
  cut(id: number): void {
    ip(['link', 'set', this.link(id), 'down']);
  }

  heal(id: number): void {
    ip(['link', 'set', this.link(id), 'up']);
  }

  /** Runs a command in the node's network namespace, its argv to prefix: nsenter
   *  enters that namespace only (ip netns exec would also give it a mount
   *  namespace of its own, where its FUSE mount would stay). */
  inNamespace(id: number): string[] {
    return ['nsenter', `--net=/run/netns/${this.namespace(id)}`];
  }

  destroy(): void {
    for (const id of this.made) spawnSync('ip', ['netns', 'del', this.namespace(id)], { stdio: 'ignore' });
    spawnSync('ip', ['link', 'del', this.bridge], { stdio: 'ignore' });
  }

  private addNode(id: number): void {
    const ns = this.namespace(id);
    const peer = `${this.tag}p${id}`;
    ip(['netns', 'add', ns]);
    this.made.push(id);
    ip(['link', 'add', this.link(id), 'type', 'veth', 'peer', 'name', peer]);
    ip(['link', 'set', peer, 'netns', ns]);
    ip(['link', 'set', this.link(id), 'master', this.bridge]);
    ip(['link', 'set', this.link(id), 'up']);
    ip(['-n', ns, 'addr', 'add', `${this.address(id)}/24`, 'dev', peer]);
    ip(['-n', ns, 'link', 'set', peer, 'up']);
    ip(['-n', ns, 'link', 'set', 'lo', 'up']);
  }
}

/** Removes the namespaces and bridges of test runs that are gone (or of `runner`). */
export function sweepNetworks(isGone: (runner: number) => boolean): void {
  const names = spawnSync('ip', ['-o', 'link', 'show', 'type', 'bridge'], { encoding: 'utf8' }).stdout;
  const namespaces = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout.split('\n').map((line) => line.split(' ')[0]).filter(Boolean);
  const runnerOf = (tag: string) => parseInt(tag.slice(1, -3), 36);
  for (const match of names.matchAll(/^\d+: (k[0-9a-z]+)b[:@]/gm)) {
    const tag = match[1];
    if (!isGone(runnerOf(tag))) continue;
    for (const ns of namespaces.filter((n) => n.startsWith(`${tag}n`))) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
    spawnSync('ip', ['link', 'del', `${tag}b`], { stdio: 'ignore' });
  }
}
