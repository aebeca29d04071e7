// The agent's side of the data channel's handshake (see dataAuth.ts): HELLO
// (fsid, node id, client nonce, protection) answered with the agent's nonce
// and proof, then AUTH with the client's proof. Anything else, or a wrong
// proof, ends the connection.
import { DATA_AUTH, DATA_HELLO, type DataHeader } from '../rpc/messages.js';
import { FrameMacs, agentProof, clientProof, currentDataKey, newNonce, proofsEqual, type DataKey } from './dataAuth.js';

const NONCE_BYTES = 16;

export type Answer = { ok: true; reply: Partial<DataHeader> } | { ok: false; why: string };

export class AgentHandshake {
  private hello: { nodeId: number; nonce: Uint8Array; protect: boolean } | null = null;
  private key: DataKey | null = null;
  private agentNonce: Buffer | null = null;
  done = false;
  macs: FrameMacs | null = null;

  /** nodeId: this agent's node, which a HELLO meant for another is refused. */
  constructor(private readonly fsid: () => string, private readonly nodeId: number) {}

  get epoch(): number {
    return this.key?.epoch ?? 0;
  }

  async step(header: DataHeader): Promise<Answer> {
    if (!this.hello) {
      const expected = this.fsid();
      if (header.op !== DATA_HELLO) return { ok: false, why: `op ${header.op} before HELLO` };
      if (!expected || header.fsid !== expected) return { ok: false, why: 'another file system' };
      if (!header.nodeId || header.nonce?.length !== NONCE_BYTES) return { ok: false, why: 'a HELLO without node or nonce' };
      if (header.targetNode && header.targetNode !== this.nodeId) return { ok: false, why: `meant for node ${header.targetNode}, and this is node ${this.nodeId}` };
      this.hello = { nodeId: header.nodeId, nonce: header.nonce, protect: header.protect ?? false };
      // a client with a newer key than this node's: ask for the current one
      this.key = await currentDataKey(false, header.keyEpoch ?? 0).catch(() => null);
      if (!this.key) return { ok: false, why: 'this node has no data key' };
      this.agentNonce = newNonce();
      return { ok: true, reply: { nonce: this.agentNonce, mac: agentProof(this.key.key, this.hello.nonce, this.agentNonce), keyEpoch: this.key.epoch } };
    }
    if (header.op !== DATA_AUTH) return { ok: false, why: `op ${header.op} before AUTH` };
    const expected = clientProof(this.key!.key, this.hello.nonce, this.agentNonce!, this.hello.nodeId, this.hello.protect);
    if (!proofsEqual(header.mac, expected)) return { ok: false, why: `node ${this.hello.nodeId}'s proof does not hold (not a member, or a revoked one)` };
    this.done = true;
    if (this.hello.protect) this.macs = new FrameMacs(this.key!.key, this.hello.nonce, this.agentNonce!, 'agent');
    return { ok: true, reply: {} };
  }
}
