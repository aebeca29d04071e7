// The description of a checkpoint (description_v<SN>.txt): readable by people,
// and the manifest restart checks the set against: every file's size and
// xxhash64. Its presence is what makes SN a checkpoint.
import { open } from 'node:fs/promises';
import path from 'node:path';
import { h64Stream, initHash } from '../common/hash.js';

export interface ManifestFile { name: string; sizeBytes: number; xxh64: string }

export interface Manifest {
  app: string;
  sn: number;
  timeSec: number;
  capture: string;
  command: string[];
  files: ManifestFile[];
}

const MAGIC = 'kDFS checkpoint 1';
const HASH_CHUNK_BYTES = 4 * 1024 * 1024;

export function formatManifest(m: Manifest): string {
  const lines = [
    MAGIC,
    `application: ${m.app}`,
    `sn: ${m.sn}`,
    `time: ${new Date(m.timeSec * 1000).toISOString()} (${m.timeSec})`,
    `capture: ${m.capture}`,
    `command: ${JSON.stringify(m.command)}`,
    `files: ${m.files.length} (name, size in bytes, xxhash64)`,
    ...m.files.map((f) => `${f.name} ${f.sizeBytes} ${f.xxh64}`),
  ];
  return lines.join('\n') + '\n';
}

/** The manifest in `text`, or an error message saying what is wrong with it. */
export function parseManifest(text: string): Manifest | string {
  const lines = text.split('\n');
  if (lines[0] !== MAGIC) return 'not a kDFS checkpoint description';
  const field = (name: string) => lines.find((l) => l.startsWith(name + ': '))?.slice(name.length + 2);
  const sn = Number(field('sn'));
  const timeSec = Number(/\((\d+)\)$/.exec(field('time') ?? '')?.[1]);
  const count = Number(/^(\d+)/.exec(field('files') ?? '')?.[1]);
  let command: string[];
  try {
    command = JSON.parse(field('command') ?? '') as string[];
  } catch {
    return 'its command line is damaged';
  }
  const start = lines.findIndex((l) => l.startsWith('files: ')) + 1;
  const files: ManifestFile[] = [];
  for (const line of lines.slice(start, start + count)) {
    const match = /^(\S+) (\d+) ([0-9a-f]{16})$/.exec(line);
    if (!match) return `damaged file line ${JSON.stringify(line)}`;
    files.push({ name: match[1], sizeBytes: Number(match[2]), xxh64: match[3] });
  }
  if (!Number.isInteger(sn) || !Number.isInteger(timeSec) || files.length !== count || !Array.isArray(command)) return 'its header is damaged';
  return { app: field('application') ?? '', sn, timeSec, capture: field('capture') ?? '', command, files };
}

/** Size and xxhash64 of a file, read in chunks. */
export async function describeFile(file: string): Promise<ManifestFile> {
  await initHash();
  const handle = await open(file, 'r');
  try {
    const hash = h64Stream();
    const buffer = Buffer.allocUnsafe(HASH_CHUNK_BYTES);
    let sizeBytes = 0;
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, sizeBytes);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
      sizeBytes += bytesRead;
    }
    return { name: path.basename(file), sizeBytes, xxh64: hash.digest().toString(16).padStart(16, '0') };
  } finally {
    await handle.close();
  }
}

/** The first file of the set in `dir` that is missing or differs from the manifest, as a message; null when all match. */
export async function verifyManifest(dir: string, manifest: Manifest): Promise<string | null> {
  for (const expected of manifest.files) {
    let found: ManifestFile;
    try {
      found = await describeFile(path.join(dir, expected.name));
    } catch (err) {
      return `${expected.name}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'missing' : (err as Error).message}`;
    }
    if (found.sizeBytes !== expected.sizeBytes) return `${expected.name}: ${found.sizeBytes} bytes, the manifest says ${expected.sizeBytes}`;
    if (found.xxh64 !== expected.xxh64) return `${expected.name}: its content differs from the manifest (xxhash64 ${found.xxh64}, expected ${expected.xxh64})`;
  }
  return null;
}
