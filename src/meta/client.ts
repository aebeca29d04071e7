// The metadata service as a node's client sees it: one method per namespace
// operation, errors thrown as FsError(errno).
import { check } from '../common/errno.js';
import { META_DEADLINE_MS } from '../common/limits.js';
import { RpcClient } from '../rpc/client.js';
import type { RpcChannel } from '../rpc/local.js';
import type {
  Attr, CreateRequest, EntryReply, Layout, MetaMethods, NodeInfo, ReadDirReply, RegisterReply, RegisterRequest,
  SetattrRequest, StatfsReply, StripePolicy, StripeReply, Target, Timespec,
} from '../rpc/messages.js';

export interface Entry { attr: Attr; layout: Layout | null; inlined: boolean; inlineData: Buffer; created: boolean }

function entry(reply: EntryReply): Entry {
  check(reply.errno);
  return {
    attr: reply.attr!, layout: reply.layout, inlined: reply.inlined ?? false, inlineData: reply.inlineData ?? Buffer.alloc(0),
    created: reply.created ?? false,
  };
}

export class MetaClient {
  constructor(readonly rpc: RpcChannel<MetaMethods>) {}

  /** The metadata service of the root node at address, over gRPC. */
  static remote(address: string, fsid: string): MetaClient {
    return new MetaClient(new RpcClient<MetaMethods>(address, 'Meta', fsid, META_DEADLINE_MS));
  }

  setFsid(fsid: string): void {
    this.rpc.setFsid(fsid);
  }

  /** Registration answers with errno and a reason rather than throwing: the caller reports it. */
  register(request: RegisterRequest, deadlineMs?: number): Promise<RegisterReply> {
    return this.rpc.call('Register', request, deadlineMs);
  }

  async listNodes(): Promise<NodeInfo[]> {
    return (await this.rpc.call('ListNodes', {})).nodes;
  }

  async statfs(): Promise<StatfsReply> {
    const reply = await this.rpc.call('Statfs', {});
    check(reply.errno);
    return reply;
  }

  async getattr(target: Target): Promise<Attr> {
    const reply = await this.rpc.call('Getattr', target);
    check(reply.errno);
    return reply.attr!;
  }

  async setattr(request: SetattrRequest): Promise<Attr> {
    const reply = await this.rpc.call('Setattr', request);
    check(reply.errno);
    return reply.attr!;
  }

  async create(request: CreateRequest): Promise<Entry> {
    return entry(await this.rpc.call('Create', request));
  }

  async remove(entry: Target, directory: boolean): Promise<void> {
    check((await this.rpc.call('Remove', { entry, directory })).errno);
  }

  async rename(from: Target, to: Target, flags = 0): Promise<void> {
    check((await this.rpc.call('Rename', { from, to, flags })).errno);
  }

  async link(inode: Target, entry: Target): Promise<Attr> {
    const reply = await this.rpc.call('Link', { inode, entry });
    check(reply.errno);
    return reply.attr!;
  }

  /** One page of a directory after `after`. */
  async readDir(target: Target, after: string): Promise<ReadDirReply> {
    const reply = await this.rpc.call('ReadDir', { target, after, limit: 0 });
    check(reply.errno);
    return reply;
  }

  async readLink(target: Target): Promise<string> {
    const reply = await this.rpc.call('ReadLink', target);
    check(reply.errno);
    return reply.target;
  }

  async open(target: Target, nodeId: number): Promise<Entry> {
    return entry(await this.rpc.call('Open', { target, nodeId }));
  }

  async close(ino: number, nodeId: number): Promise<void> {
    check((await this.rpc.call('Close', { ino, nodeId })).errno);
  }

  /** inline: the whole content of a file still inlined (EAGAIN if it no longer is). */
  async commitWrite(ino: number, size: number, mtime: Timespec, sync: boolean, inline: Buffer | null = null): Promise<Attr> {
    const reply = await this.rpc.call('CommitWrite', { ino, size, mtime, sync, inlined: inline !== null, inlineData: inline ?? undefined });
    check(reply.errno);
    return reply.attr!;
  }

  async sync(): Promise<void> {
    check((await this.rpc.call('Sync', {})).errno);
  }

  async getXattr(target: Target, name: string): Promise<Buffer> {
    const reply = await this.rpc.call('GetXattr', { target, name });
    check(reply.errno);
    return reply.value;
  }

  async setXattr(target: Target, name: string, value: Uint8Array, flags: number): Promise<void> {
    check((await this.rpc.call('SetXattr', { target, name, value, flags })).errno);
  }

  async listXattr(target: Target): Promise<string[]> {
    const reply = await this.rpc.call('ListXattr', { target });
    check(reply.errno);
    return reply.names;
  }

  async removeXattr(target: Target, name: string): Promise<void> {
    check((await this.rpc.call('RemoveXattr', { target, name })).errno);
  }

  async setStripe(target: Target, policy: StripePolicy): Promise<void> {
    check((await this.rpc.call('SetStripe', { target, policy })).errno);
  }

  async getStripe(target: Target): Promise<StripeReply> {
    const reply = await this.rpc.call('GetStripe', target);
    check(reply.errno);
    return reply;
  }

  disconnect(): void {
    this.rpc.close();
  }
}
