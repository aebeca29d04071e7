// The client's side of the data channel's handshake (see dataAuth.ts and
// agentHandshake.ts): it checks the agent's proof before giving its own.
import { E } from '../common/errno.js';
import { DATA_AUTH, DATA_HELLO, type DataHeader } from '../rpc/messages.js';
import { FrameMacs, agentProof, clientProof, currentDataKey, dataProtection, forgetDataKey, newNonce, proofsEqual, type DataKey } from './dataAuth.js';
import { currentIdentity } from './tls.js';

export class ClientHandshake {
  private readonly nonce = newNonce();
  private readonly protect = dataProtection();
  private key: DataKey | null = null;
  private agentNonce: Uint8Array | null = null;
  macs: FrameMacs | null = null;

  private get nodeId(): number {
    return currentIdentity()?.nodeId ?? 0;
  }

  /** targetNode: the node meant (0: whichever answers at the address). */
  async hello(fsid: string, targetNode: number): Promise<DataHeader> {
    this.key = await currentDataKey();
    return { id: 0, op: DATA_HELLO, fsid, nodeId: this.nodeId, nonce: this.nonce, protect: this.protect, keyEpoch: this.key.epoch, targetNode };
  }

  /** The AUTH frame answering the agent's reply to HELLO; null once the AUTH was answered (authenticated). */
  async answer(reply: DataHeader): Promise<DataHeader | null> {
    if (this.agentNonce) {
      if (this.protect) this.macs = new FrameMacs(this.key!.key, this.nonce, this.agentNonce, 'client');
      return null;
    }
    if (!reply.nonce || reply.nonce.length !== this.nonce.length) throw Object.assign(new Error('the agent sent no nonce'), { errno: E.EACCES });
    // an agent with a newer key (a revocation replaced it): ask for it
    if ((reply.keyEpoch ?? 0) > this.key!.epoch) this.key = await currentDataKey(false, reply.keyEpoch ?? 0);
    if (!proofsEqual(reply.mac, agentProof(this.key!.key, this.nonce, reply.nonce))) {
      // this node's key may be the one before a restart of the metadata service: ask again, once
      forgetDataKey();
      this.key = await currentDataKey();
      if (!proofsEqual(reply.mac, agentProof(this.key.key, this.nonce, reply.nonce))) throw new Error('the agent could not prove it is a member');
    }
    this.agentNonce = reply.nonce;
    return { id: 0, op: DATA_AUTH, mac: clientProof(this.key!.key, this.nonce, this.agentNonce, this.nodeId, this.protect) };
  }
}
