// Mounts of this machine (/proc/mounts), and clearing stale kDFS mounts.
import { execFileSync } from 'node:child_process';
import { readFileSync, statfsSync } from 'node:fs';

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

/** True when the mount's FUSE daemon is gone: the kernel answers ENOTCONN
 *  (ECONNABORTED on recent kernels, for a connection aborted by its death).
 *  statfs always reaches the daemon; stat may be answered from the kernel's cache. */
export function isStale(mountPoint: string): boolean {
  try {
    statfsSync(mountPoint);
    return false;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOTCONN' || code === 'ECONNABORTED';
  }
}

/** Detaches a mount at once (lazy unmount), whatever state its daemon is in. */
export function detach(mountPoint: string): void {
  try {
    execFileSync('fusermount', ['-u', '-z', mountPoint], { stdio: 'ignore' });
  } catch {
    execFileSync('umount', ['-l', mountPoint], { stdio: 'ignore' });
  }
}
