// The members of the file system as this node last heard of them from the root,
// kept in its directory: `kdfs status` reads it to probe the nodes itself when
// the root does not answer.
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { nodePaths } from '../format/paths.js';

export interface Member { id: number; address: string }

export function readMembers(dir: string): Member[] {
  try {
    const members = JSON.parse(readFileSync(nodePaths(dir).members, 'utf8')) as Member[];
    return Array.isArray(members) ? members.filter((m) => Number.isInteger(m.id) && typeof m.address === 'string') : [];
  } catch {
    return [];
  }
}

/** Replaces the file whole (a reader never sees half of it); nothing if unchanged. */
export function writeMembers(dir: string, members: Member[]): void {
  const text = JSON.stringify(members.map(({ id, address }) => ({ id, address }))) + '\n';
  const file = nodePaths(dir).members;
  try {
    if (readFileSync(file, 'utf8') === text) return;
  } catch {
    // not written yet
  }
  writeFileSync(`${file}.tmp`, text);
  renameSync(`${file}.tmp`, file);
}
