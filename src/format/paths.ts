// What a formatted node directory holds.
import path from 'node:path';

export const OBJECT_BUCKETS = 256;

export function nodePaths(dir: string) {
  return {
    superblock: path.join(dir, 'superblock'),
    /** Stripe objects, spread over OBJECT_BUCKETS subdirectories by inode number. */
    objects: path.join(dir, 'objects'),
    /** The root meta-file: the metadata store (level), on the root node only. */
    meta: path.join(dir, 'meta'),
    /** Space kept aside for the metadata store (see src/meta/reserve.ts). */
    metaReserve: path.join(dir, 'meta.reserve'),
    log: path.join(dir, 'kdfs.log'),
    /** pid and mount point of the running node process. */
    run: path.join(dir, 'kdfs.run'),
    /** The members as the node last heard of them (see src/node/members.ts). */
    members: path.join(dir, 'members.json'),
    /** The ports the node listened on last (see src/node/ports.ts). */
    ports: path.join(dir, 'ports.json'),
  };
}

export function bucketName(index: number): string {
  return index.toString(16).padStart(2, '0');
}
