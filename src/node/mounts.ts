// Mounts of this machine (/proc/mounts), and clearing stale kDFS mounts.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { runningNode } from './runfile.js';

export interface MountEntry { source: string; mountPoint: string; type: string }

function unescape(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(parseInt(octal, 8)));
}

export function listMounts(): MountEntry[] {
  return readFileSync('/proc/mounts', 'utf8').split('\n').filter(Boolean).map((line) => {
    const [source, mountPoint, type] = line.split(' ');
    return { source: unescape(source), mountPoint: unescape(mountPoint), type };
  });
}

export function mountAt(mountPoint: string): MountEntry | undefined {
  return listMounts().reverse().find((m) => m.mountPoint === mountPoint);
}

/** True for a kDFS mount whose node process is gone (its users get ENOTCONN, or
 *  ECONNABORTED on recent kernels). Decided without touching the mount: a live
 *  node may take long to answer when its root is down. */
export function isStaleKdfsMount(mount: MountEntry): boolean {
  return mount.type === 'fuse.kdfs' && mount.source.startsWith('kdfs:') && runningNode(mount.source.slice('kdfs:'.length)) === null;
}

/** Detaches a mount at once (lazy unmount), whatever state its daemon is in. */
export function detach(mountPoint: string): void {
  try {
    execFileSync('fusermount', ['-u', '-z', mountPoint], { stdio: 'ignore' });
  } catch {
    execFileSync('umount', ['-l', mountPoint], { stdio: 'ignore' });
  }
}
