// What a setattr does to an inode's attributes, besides its size: applied by
// the metadata service, and by a node to a file it made under a delegation and
// has not sent yet (the change goes with the create: see Delegations.change).
import { E, FsError } from '../common/errno.js';
import { PERMISSION_BITS, S_IFMT } from '../common/mode.js';
import {
  type Attr, type SetattrRequest, type Timespec,
  SETATTR_ATIME, SETATTR_ATIME_NOW, SETATTR_GID, SETATTR_MODE, SETATTR_MTIME, SETATTR_MTIME_NOW, SETATTR_UID,
} from '../rpc/messages.js';

/** A time from a request: EINVAL if it is no time. */
export function checkTime(time: Timespec | null | undefined): { sec: number; nsec: number } {
  const sec = time?.sec ?? 0;
  const nsec = time?.nsec ?? 0;
  if (!Number.isSafeInteger(sec) || !Number.isInteger(nsec) || nsec < 0 || nsec >= 1e9) throw new FsError(E.EINVAL);
  return { sec, nsec };
}

/** Sets in attr the mode, owner and times the request asks (not the size), and its ctime to `time`. */
export function applyAttrChanges(attr: Attr, request: Omit<SetattrRequest, 'target'>, time: Timespec): void {
  const valid = request.valid;
  if (valid & SETATTR_MODE) attr.mode = (attr.mode & S_IFMT) | ((request.mode ?? 0) & PERMISSION_BITS);
  if (valid & SETATTR_UID) attr.uid = request.uid ?? 0;
  if (valid & SETATTR_GID) attr.gid = request.gid ?? 0;
  if (valid & SETATTR_ATIME_NOW) attr.atime = time;
  else if (valid & SETATTR_ATIME) attr.atime = checkTime(request.atime);
  if (valid & SETATTR_MTIME_NOW) attr.mtime = time;
  else if (valid & SETATTR_MTIME) attr.mtime = checkTime(request.mtime);
  attr.ctime = time;
}
