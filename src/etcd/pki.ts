// Credentials of a one-machine etcd cluster (kdfs up --meta etcd), made like
// the nodes' (EC P-256, files readable by root only): an authority of its own,
// one certificate the members use as servers and as peers, and the client
// certificate kDFS reaches etcd with. etcd runs with --client-cert-auth: no
// certificate of this authority, no access.
import { chmodSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { openssl, type EtcdCredentials } from '../security/credentials.js';
import { writeFileSync } from 'node:fs';

const DAYS = 3650;

export function pkiPaths(pkiDir: string) {
  const at = (name: string) => path.join(pkiDir, name);
  return { ca: at('ca.pem'), caKey: at('ca.key'), server: at('server.pem'), serverKey: at('server.key'), client: at('client.pem'), clientKey: at('client.key') };
}

function sign(pkiDir: string, name: string, subject: string, ext: string): void {
  writeFileSync(path.join(pkiDir, `${name}.ext`), ext);
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', subject], pkiDir);
  openssl(['x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.pem', '-CAkey', 'ca.key', '-set_serial', '0x' + randomBytes(16).toString('hex'),
    '-days', String(DAYS), '-extfile', `${name}.ext`, '-out', `${name}.pem`], pkiDir);
}

/** Makes the authority and the members' and client's certificates in pkiDir (new). */
export function createEtcdPki(pkiDir: string): void {
  mkdirSync(pkiDir, { recursive: true, mode: 0o700 });
  chmodSync(pkiDir, 0o700);
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem',
    '-days', String(DAYS), '-subj', '/O=kdfs etcd/CN=kdfs etcd authority', '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], pkiDir);
  sign(pkiDir, 'server', '/O=kdfs etcd/CN=kdfs etcd member',
    'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n');
  sign(pkiDir, 'client', '/O=kdfs etcd/CN=kdfs',
    'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n');
  for (const name of readdirSync(pkiDir)) chmodSync(path.join(pkiDir, name), 0o600);
}

/** What mkfs.kdfs --etcd-ca/--etcd-cert/--etcd-key takes, from a PKI made here. */
export function clientCredentials(pkiDir: string): EtcdCredentials {
  const p = pkiPaths(pkiDir);
  return { ca: readFileSync(p.ca, 'utf8'), cert: readFileSync(p.client, 'utf8'), key: readFileSync(p.clientKey, 'utf8') };
}
