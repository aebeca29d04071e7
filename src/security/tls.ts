// The TLS side of a process's identity: a node process (or a command run with
// a node's directory) uses its node's credentials for every connection it
// makes or takes. Peers are members: certificates signed by the file system's
// authority; who they are is the node id their certificate names.
import * as grpc from '@grpc/grpc-js';
import tls, { type PeerCertificate, type TLSSocket, type ConnectionOptions, type TlsOptions } from 'node:tls';
import { nodeIdOfCert, type Credentials } from './credentials.js';

let identity: Credentials | null = null;

/** The name a member is asked for (TLS SNI): certificates are checked by checkMember, not by address. */
export const MEMBER_SERVERNAME = 'kdfs-node';
/** A peer that has not finished its TLS handshake by then is dropped. */
export const HANDSHAKE_TIMEOUT_MS = 5000;

/** Sets this process's identity, once, before it connects or listens. */
export function useIdentity(creds: Credentials): void {
  identity = creds;
}

export function currentIdentity(): Credentials | null {
  return identity;
}

function required(): Credentials {
  if (!identity) throw new Error('this process has no credentials: it cannot reach a kDFS node');
  return identity;
}

function commonName(cert: PeerCertificate | undefined): string | undefined {
  const cn = cert?.subject?.CN;
  return Array.isArray(cn) ? undefined : cn;
}

/** A server certificate is a member's: signed by the authority (TLS checked that) and naming a node. */
function checkMember(_host: string, cert: PeerCertificate): Error | undefined {
  return nodeIdOfCert(commonName(cert)) === null ? new Error(`not a kDFS node's certificate: ${cert.subject?.CN}`) : undefined;
}

export function grpcServerCredentials(): grpc.ServerCredentials {
  const id = required();
  return grpc.ServerCredentials.createSsl(Buffer.from(id.ca), [{ private_key: Buffer.from(id.key), cert_chain: Buffer.from(id.cert) }], true);
}

export function grpcChannelCredentials(): grpc.ChannelCredentials {
  const id = required();
  return grpc.credentials.createSsl(Buffer.from(id.ca), Buffer.from(id.key), Buffer.from(id.cert), { checkServerIdentity: checkMember });
}

/** Options of a TLS server taking members only. */
export function tlsServerOptions(): TlsOptions {
  const id = required();
  return { key: id.key, cert: id.cert, ca: id.ca, requestCert: true, rejectUnauthorized: true, minVersion: 'TLSv1.3' };
}

/** Options of a TLS connection to a member. */
export function tlsClientOptions(): ConnectionOptions {
  const id = required();
  return { key: id.key, cert: id.cert, ca: id.ca, checkServerIdentity: checkMember, minVersion: 'TLSv1.3' };
}

/** Why a member at `address` refuses this process's credentials (another file
 *  system's, or not signed by its authority), or null if it takes them or
 *  cannot be reached (a TLS handshake, then closed). */
export function credentialsRefusedBy(address: string, timeoutMs = 3000): Promise<string | null> {
  const colon = address.lastIndexOf(':');
  return new Promise((resolve) => {
    const socket = tls.connect({ host: address.slice(0, colon).replace(/^\[|\]$/g, ''), port: Number(address.slice(colon + 1)), servername: MEMBER_SERVERNAME, ...tlsClientOptions(), ALPNProtocols: ['h2'] });
    const done = (why: string | null) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(why);
    };
    const timer = setTimeout(() => done(null), timeoutMs);
    // TLS 1.3: the server's verdict on the client's certificate comes after the client's handshake ends
    socket.once('secureConnect', () => socket.once('data', () => done(null)).once('end', () => done(null)));
    socket.once('error', (err: NodeJS.ErrnoException) => {
      const certificate = /certificate|unknown ca|self.signed|verify|alert/i.test(err.message) || /CERT|SSL/.test(err.code ?? '');
      done(certificate ? err.message : null);
    });
  });
}

/** The node a TLS peer's certificate names (null: none). */
export function peerNodeId(socket: TLSSocket): number | null {
  return nodeIdOfCert(commonName(socket.getPeerCertificate()));
}

/** The node a gRPC caller's certificate names (null: none). */
export function grpcCallerNodeId(call: { getAuthContext?: () => { sslPeerCertificate?: PeerCertificate } }): number | null {
  return nodeIdOfCert(commonName(call.getAuthContext?.().sslPeerCertificate));
}
