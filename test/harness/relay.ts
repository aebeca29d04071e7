// A TCP relay between a client and a server of kDFS's framed channels (the data
// channel: src/rpc/frames.ts), in the test's process, that can hold what the
// client sends (as a stopped peer or a cut link would: the bytes are on their
// way, not lost) and deliver it later. While held, the client hears nothing and
// its close is not passed on.
import net from 'node:net';
import { PREFIX_BYTES } from '../../src/rpc/frames.js';

/** Complete frames at the start of `bytes`. */
function framesIn(bytes: Buffer): number {
  let frames = 0;
  for (let at = 0; at + PREFIX_BYTES <= bytes.length; frames++) {
    const end = at + PREFIX_BYTES + bytes.readUInt32BE(at) + bytes.readUInt32BE(at + 4);
    if (end > bytes.length) break;
    at = end;
  }
  return frames;
}

export class HoldingRelay {
  private readonly server: net.Server;
  private readonly upstreams = new Set<net.Socket>();
  private held: { upstream: net.Socket; data: Buffer }[] | null = null;
  /** After a release: what the server sent since, by connection. */
  private answers: Map<net.Socket, Buffer[]> | null = null;
  private onUpstreamData: (() => void) | null = null;
  private onUpstreamClose: (() => void) | null = null;

  private constructor(private readonly target: { host: string; port: number }) {
    this.server = net.createServer((client) => this.relay(client));
  }

  /** A relay to `address` (host:port), listening on loopback. */
  static async start(address: string): Promise<HoldingRelay> {
    const at = address.lastIndexOf(':');
    const relay = new HoldingRelay({ host: address.slice(0, at), port: Number(address.slice(at + 1)) });
    await new Promise<void>((resolve) => relay.server.listen(0, '127.0.0.1', resolve));
    return relay;
  }

  get address(): string {
    return `127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
  }

  /** Bytes held so far (what clients sent since hold). */
  get heldBytes(): number {
    return (this.held ?? []).reduce((sum, h) => sum + h.data.length, 0);
  }

  /** From now on, what clients send is kept, and nothing reaches them. */
  hold(): void {
    this.held = [];
  }

  /** Delivers what was held to the server; resolves once the server has
   *  answered every frame of it (one reply each): it has handled them all.
   *  Fails if a connection closes first, or after timeoutMs. */
  async release(timeoutMs: number): Promise<void> {
    const held = this.held ?? [];
    this.held = null;
    const requests = new Map<net.Socket, number>();
    for (const upstream of new Set(held.map((h) => h.upstream))) {
      requests.set(upstream, framesIn(Buffer.concat(held.filter((h) => h.upstream === upstream).map((h) => h.data))));
    }
    this.answers = new Map([...requests.keys()].map((upstream) => [upstream, []]));
    let timer: NodeJS.Timeout | undefined;
    const answered = new Promise<void>((resolve, reject) => {
      const check = () => {
        if ([...requests].every(([upstream, count]) => framesIn(Buffer.concat(this.answers!.get(upstream)!)) >= count)) resolve();
      };
      this.onUpstreamData = check;
      this.onUpstreamClose = () => reject(new Error('the server closed a connection before answering what was held'));
      timer = setTimeout(() => reject(new Error(`what was held was not answered within ${timeoutMs} ms`)), timeoutMs);
      check();
    });
    for (const { upstream, data } of held) upstream.write(data);
    try {
      await answered;
    } finally {
      clearTimeout(timer);
      this.onUpstreamData = this.onUpstreamClose = null;
    }
  }

  close(): void {
    for (const upstream of this.upstreams) upstream.destroy();
    this.server.close();
  }

  private relay(client: net.Socket): void {
    const upstream = net.connect(this.target);
    this.upstreams.add(upstream);
    client.on('data', (data) => (this.held ? this.held.push({ upstream, data }) : upstream.write(data)));
    upstream.on('data', (data) => {
      this.answers?.get(upstream)?.push(data);
      this.onUpstreamData?.();
      if (!this.held && !client.destroyed) client.write(data);
    });
    client.on('close', () => {
      if (!this.held) upstream.end();
    });
    upstream.on('close', () => {
      this.upstreams.delete(upstream);
      client.destroy();
      this.onUpstreamClose?.();
    });
    client.on('error', () => {});
    upstream.on('error', () => {});
  }
}
