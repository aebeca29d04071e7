// The checkpoints of one application directory: SN allocation, commit, listing,
// retention and the clean-up of what killed checkpoints left
// (docs/checkpoint.md, "Atomicity").
import { chown, mkdir, open, readdir, readFile, rename, rm, stat, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { isAlive } from '../node/runfile.js';
import { BUILDER_FILE, descriptionName, isDescription, snOf, stagingName } from './names.js';
import { formatManifest, parseManifest, type Manifest, type ManifestFile } from './manifest.js';

/** SNs tried before giving up on allocation (each EEXIST is another checkpoint's). */
const SN_TRIES_MAX = 1000;

export interface Owner { uid: number; gid: number }

/** A checkpoint being built in `.v<SN>/`. */
export interface Staging { appDir: string; sn: number; dir: string }

/** Takes the next SN: mkdir of `.v<SN>/` is exclusive across the cluster. */
export async function allocate(appDir: string, nodeId: number, owner: Owner): Promise<Staging> {
  let sn = highestSn(await readdir(appDir)) + 1;
  for (let tries = 0; tries < SN_TRIES_MAX; tries++, sn++) {
    const dir = path.join(appDir, stagingName(sn));
    try {
      await mkdir(dir, { mode: 0o700 });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw err;
    }
    await chownIfRoot(dir, owner);
    await writeFile(path.join(dir, BUILDER_FILE), `${nodeId} ${process.pid}\n`, { mode: 0o600 });
    return { appDir, sn, dir };
  }
  throw new Error(`no free SN after ${SN_TRIES_MAX} tries in ${appDir}`);
}

function highestSn(names: string[]): number {
  let highest = 0;
  for (const name of names) highest = Math.max(highest, snOf(name) ?? 0);
  return highest;
}

/** Writes a file of the set in its staging directory, owned by the application's owner, mode 0600, and fsyncs it. */
export async function writeSetFile(staging: Staging, name: string, data: string | Buffer, owner: Owner): Promise<void> {
  const file = path.join(staging.dir, name);
  const handle = await open(file, 'wx', 0o600);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  await chownIfRoot(file, owner);
}

/** Makes SN visible: data files renamed into the application's directory, the
 *  description (written and fsynced first) renamed last; then the staging
 *  directory goes. A crash before the last rename leaves no checkpoint SN. */
export async function commit(staging: Staging, manifest: Manifest, owner: Owner): Promise<void> {
  const description = descriptionName(staging.sn);
  await writeSetFile(staging, description, formatManifest(manifest), owner);
  for (const file of manifest.files) await rename(path.join(staging.dir, file.name), path.join(staging.appDir, file.name));
  await rename(path.join(staging.dir, description), path.join(staging.appDir, description));
  await fsyncDir(staging.appDir);
  await rm(staging.dir, { recursive: true, force: true });
}

export async function abandon(staging: Staging): Promise<void> {
  await rm(staging.dir, { recursive: true, force: true });
}

async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

export interface SetInfo {
  sn: number;
  /** complete: its description exists; building: a checkpoint command is writing it; abandoned: left by one that died. */
  state: 'complete' | 'damaged' | 'building' | 'abandoned';
  timeSec: number;
  sizeBytes: number;
  manifest: Manifest | null;
  problem: string | null;
}

/** The sets of an application directory, newest first. Sizes are checked
 *  against the manifest (cheap); contents only by verifyManifest. */
export async function listSets(appDir: string): Promise<SetInfo[]> {
  const names = await readdir(appDir);
  const present = new Set(names);
  const sets: SetInfo[] = [];
  for (const name of names) {
    const sn = snOf(name);
    if (sn === null) continue;
    if (isDescription(name)) {
      const manifest = await readManifest(appDir, sn);
      if (typeof manifest === 'string') {
        sets.push({ sn, state: 'damaged', timeSec: 0, sizeBytes: 0, manifest: null, problem: manifest });
        continue;
      }
      let problem: string | null = null;
      for (const file of manifest.files) {
        if (!present.has(file.name)) problem ??= `${file.name}: missing`;
        else {
          const sizeBytes = (await stat(path.join(appDir, file.name))).size;
          if (sizeBytes !== file.sizeBytes) problem ??= `${file.name}: ${sizeBytes} bytes, the manifest says ${file.sizeBytes}`;
        }
      }
      const sizeBytes = manifest.files.reduce((sum, f) => sum + f.sizeBytes, 0);
      sets.push({ sn, state: problem ? 'damaged' : 'complete', timeSec: manifest.timeSec, sizeBytes, manifest, problem });
    } else if (name === stagingName(sn)) {
      const builder = await readBuilder(path.join(appDir, name));
      const st = await stat(path.join(appDir, name)).catch(() => null);
      sets.push({ sn, state: builder.alive ? 'building' : 'abandoned', timeSec: Math.floor((st?.mtimeMs ?? 0) / 1000), sizeBytes: 0, manifest: null, problem: null });
    }
  }
  return sets.sort((a, b) => b.sn - a.sn);
}

export async function readManifest(appDir: string, sn: number): Promise<Manifest | string> {
  let text: string;
  try {
    text = await readFile(path.join(appDir, descriptionName(sn)), 'utf8');
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'ENOENT' ? `checkpoint ${sn} does not exist` : (err as Error).message;
  }
  const manifest = parseManifest(text);
  if (typeof manifest !== 'string' && manifest.sn !== sn) return `its description names SN ${manifest.sn}`;
  return manifest;
}

/** A staging directory without its builder file this long after it was made was left by a command that died. */
const BUILDER_GRACE_MS = 60_000;

/** Whether the checkpoint command building a staging directory may still run:
 *  only one of this node whose process is gone, or one that never wrote its
 *  builder file long ago, is known dead (one on another node is taken as alive). */
async function readBuilder(dir: string): Promise<{ alive: boolean }> {
  const text = await readFile(path.join(dir, BUILDER_FILE), 'utf8').catch(() => '');
  const match = /^(\d+) (\d+)/.exec(text);
  if (!match) {
    const made = await stat(dir).catch(() => null);
    return { alive: made !== null && Date.now() - made.mtimeMs < BUILDER_GRACE_MS };
  }
  return { alive: Number(match[1]) !== localNodeId || isAlive(Number(match[2])) };
}

let localNodeId = 0;
/** The node this command runs on, for telling live builders from dead ones. */
export function setLocalNode(nodeId: number): void {
  localNodeId = nodeId;
}

/** Removes what checkpoints that died left: their staging directories (only
 *  those known abandoned), then files of SNs with neither a description nor a
 *  staging directory. Each is checked again just before it goes: another
 *  checkpoint may be allocating or committing meanwhile, and a commit renames
 *  the description in before it removes its staging directory. */
export async function cleanAbandoned(appDir: string): Promise<void> {
  for (const set of await listSets(appDir)) {
    if (set.state === 'abandoned') await rm(path.join(appDir, stagingName(set.sn)), { recursive: true, force: true });
  }
  const exists = (name: string) => stat(path.join(appDir, name)).then(() => true, () => false);
  for (const name of await readdir(appDir)) {
    const sn = snOf(name);
    if (sn === null || name === stagingName(sn) || isDescription(name)) continue;
    if (await exists(stagingName(sn)) || await exists(descriptionName(sn))) continue;
    await rm(path.join(appDir, name), { recursive: true, force: true });
  }
}

/** Keeps the newest `keep` complete sets: the description of an older one goes
 *  first, so that a set half removed is never taken as complete. */
export async function prune(appDir: string, keep: number): Promise<number[]> {
  const complete = (await listSets(appDir)).filter((s) => s.state !== 'building' && s.state !== 'abandoned');
  const removed: number[] = [];
  for (const set of complete.slice(keep)) {
    await unlink(path.join(appDir, descriptionName(set.sn))).catch(() => {});
    for (const name of await readdir(appDir)) {
      if (snOf(name) === set.sn) await rm(path.join(appDir, name), { recursive: true, force: true });
    }
    removed.push(set.sn);
  }
  return removed;
}

export async function chownIfRoot(file: string, owner: Owner): Promise<void> {
  if (process.getuid?.() === 0) await chown(file, owner.uid, owner.gid);
}

export type { ManifestFile };
