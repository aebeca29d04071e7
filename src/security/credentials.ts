// A file system's credentials: a small certificate authority made by mkfs of
// the root node, and a certificate for each node, signed by it, naming the
// node (CN kdfs-node-<id>) and the file system (O kdfs <fsid>). Every
// connection between nodes, and of the commands, is mutual TLS with them
// (docs/security.md). A node gets its key and certificate in a join token
// that the administrator makes on the root (kdfs token create) and copies to
// the node (mkfs.kdfs --token). Files holding keys are readable by root only.
import { execFileSync } from 'node:child_process';
import { createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

/** The credentials of one node (and of the commands run with its directory). */
export interface Credentials { ca: string; key: string; cert: string; nodeId: number; fsid: string }

/** An etcd client's credentials (PEM): etcd's authority, a key and its certificate. */
export interface EtcdCredentials { ca: string; cert: string; key: string }

/** What a join token holds: a node's credentials and where to find its file system
 *  (and, for metadata in etcd, where it is and the credentials to reach it). */
export interface Token extends Credentials { version: 1; rootAddress: string; meta?: string; etcd?: EtcdCredentials }

const CERT_DAYS = 3650;
const CA_DAYS = 36500;
const TOKEN_MAX_BYTES = 64 * 1024;

export function credentialPaths(nodeDir: string) {
  const dir = path.join(nodeDir, 'credentials');
  return { dir, ca: path.join(dir, 'ca.pem'), caKey: path.join(dir, 'ca.key'), key: path.join(dir, 'node.key'), cert: path.join(dir, 'node.pem') };
}

export const nodeCommonName = (nodeId: number) => `kdfs-node-${nodeId}`;

/** The node id a member's certificate names, or null for a certificate that names none. */
export function nodeIdOfCert(commonName: string | undefined): number | null {
  const match = /^kdfs-node-(\d{1,10})$/.exec(commonName ?? '');
  return match ? Number(match[1]) : null;
}

export function openssl(args: string[], cwd: string): void {
  try {
    execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const stderr = String((err as { stderr?: Buffer }).stderr ?? '').trim().split('\n').pop();
    throw new Error(`openssl ${args[0]}: ${stderr || (err as Error).message}`);
  }
}

/** Writes a file readable by its owner only (root, for a node's directory). */
function writeSecret(file: string, data: string): void {
  writeFileSync(file, data, { mode: 0o600 });
  chmodSync(file, 0o600);
}

/** mkfs of the root node: the authority, and the root node's own certificate. */
export function createAuthority(nodeDir: string, fsid: string, nodeId: number): void {
  const paths = credentialPaths(nodeDir);
  mkdirSync(paths.dir, { mode: 0o700 });
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'ca.key', '-out', 'ca.pem',
    '-days', String(CA_DAYS), '-subj', `/O=kdfs ${fsid}/CN=kdfs authority`, '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], paths.dir);
  chmodSync(paths.caKey, 0o600);
  chmodSync(paths.ca, 0o600);
  const issued = issue(nodeDir, fsid, nodeId);
  writeSecret(paths.key, issued.key);
  writeSecret(paths.cert, issued.cert);
}

/** A key and certificate for node `nodeId`, signed by the authority in the root's directory. */
export function issue(rootDir: string, fsid: string, nodeId: number): { key: string; cert: string } {
  const paths = credentialPaths(rootDir);
  if (!existsSync(paths.caKey)) throw new Error(`${rootDir} holds no certificate authority: it is not the root node's directory`);
  const work = mkdtempSync(path.join(os.tmpdir(), 'kdfs-issue-'));
  try {
    const name = nodeCommonName(nodeId);
    writeFileSync(path.join(work, 'ext'), `basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=DNS:${name}\n`);
    openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', 'node.key', '-out', 'node.csr', '-subj', `/O=kdfs ${fsid}/CN=${name}`], work);
    openssl(['x509', '-req', '-in', 'node.csr', '-CA', paths.ca, '-CAkey', paths.caKey, '-set_serial', '0x' + randomBytes(16).toString('hex'),
      '-days', String(CERT_DAYS), '-extfile', 'ext', '-out', 'node.pem'], work);
    return { key: readFileSync(path.join(work, 'node.key'), 'utf8'), cert: readFileSync(path.join(work, 'node.pem'), 'utf8') };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** A join token for node `nodeId` (kdfs token create); meta: the root's superblock's. */
export function makeToken(rootDir: string, fsid: string, rootAddress: string, nodeId: number, meta = ''): Token {
  const { key, cert } = issue(rootDir, fsid, nodeId);
  const token: Token = { version: 1, fsid, rootAddress, nodeId, ca: readFileSync(credentialPaths(rootDir).ca, 'utf8'), key, cert };
  if (meta) return { ...token, meta, etcd: readEtcdCredentials(rootDir) };
  return token;
}

export function etcdCredentialPaths(nodeDir: string) {
  const dir = credentialPaths(nodeDir).dir;
  return { ca: path.join(dir, 'etcd-ca.pem'), cert: path.join(dir, 'etcd.pem'), key: path.join(dir, 'etcd.key') };
}

/** The etcd client credentials of a node directory; throws a one-line reason if it has none. */
export function readEtcdCredentials(nodeDir: string): EtcdCredentials {
  const paths = etcdCredentialPaths(nodeDir);
  try {
    return { ca: readFileSync(paths.ca, 'utf8'), cert: readFileSync(paths.cert, 'utf8'), key: readFileSync(paths.key, 'utf8') };
  } catch {
    throw new Error(`${nodeDir} has no etcd credentials (mkfs.kdfs --etcd-ca, --etcd-cert and --etcd-key on the root; a token of such a root on the others)`);
  }
}

/** Installs etcd client credentials into a node directory, readable by root only. */
export function installEtcdCredentials(nodeDir: string, creds: EtcdCredentials): void {
  const paths = etcdCredentialPaths(nodeDir);
  mkdirSync(path.dirname(paths.ca), { recursive: true, mode: 0o700 });
  writeSecret(paths.ca, creds.ca);
  writeSecret(paths.cert, creds.cert);
  writeSecret(paths.key, creds.key);
}

export function writeToken(file: string, token: Token): void {
  writeSecret(file, JSON.stringify(token, null, 1) + '\n');
}

/** A token read and checked (its certificate signed by its authority, for its node); throws why not. */
export function readToken(file: string): Token {
  let token: Token;
  try {
    const text = readFileSync(file, 'utf8');
    if (text.length > TOKEN_MAX_BYTES) throw new Error('too large');
    token = JSON.parse(text) as Token;
  } catch (err) {
    throw new Error(`${file} is not a kDFS join token: ${(err as Error).message}`);
  }
  if (token.version !== 1 || typeof token.fsid !== 'string' || !Number.isInteger(token.nodeId)) throw new Error(`${file} is not a kDFS join token`);
  checkCredentials(token);
  return token;
}

/** Throws unless cert is the authority's certificate for node nodeId of file system fsid. */
export function checkCredentials(creds: Credentials): void {
  let cert: X509Certificate;
  let ca: X509Certificate;
  try {
    cert = new X509Certificate(creds.cert);
    ca = new X509Certificate(creds.ca);
  } catch (err) {
    throw new Error(`unreadable certificate: ${(err as Error).message}`);
  }
  if (!cert.verify(ca.publicKey)) throw new Error('the certificate is not signed by the file system\'s authority');
  if (!cert.subject.includes(`CN=${nodeCommonName(creds.nodeId)}`)) throw new Error(`the certificate is not node ${creds.nodeId}'s`);
  if (!cert.subject.includes(`O=kdfs ${creds.fsid}`)) throw new Error('the certificate is of another file system');
  if (!cert.checkPrivateKey(createPrivateKey(creds.key))) throw new Error('the key does not match the certificate');
}

/** Installs a node's credentials into its directory (mkfs.kdfs --token, and rotation). */
export function installCredentials(nodeDir: string, creds: Credentials): void {
  const paths = credentialPaths(nodeDir);
  mkdirSync(paths.dir, { recursive: true, mode: 0o700 });
  chmodSync(paths.dir, 0o700);
  writeSecret(paths.ca, creds.ca);
  writeSecret(paths.key, creds.key);
  writeSecret(paths.cert, creds.cert);
}

/** The credentials of a node directory; throws a one-line reason if it has none. */
export function loadCredentials(nodeDir: string, nodeId: number, fsid: string): Credentials {
  const paths = credentialPaths(nodeDir);
  try {
    return { ca: readFileSync(paths.ca, 'utf8'), key: readFileSync(paths.key, 'utf8'), cert: readFileSync(paths.cert, 'utf8'), nodeId, fsid };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EACCES') throw new Error(`${paths.dir} is readable by root only`);
    throw new Error(`${nodeDir} has no credentials (format it with mkfs.kdfs --token FILE from kdfs token create on the root)`);
  }
}
