// Checks of the fields of agent requests, the same for both ways in: the Agent
// gRPC service and the data channel. A bad field is EINVAL, never a crash.
import { E, FsError } from '../common/errno.js';
import { FILE_MAX_BYTES } from '../common/limits.js';
import type { ObjectKey } from '../rpc/messages.js';

export function validKey(key: ObjectKey | null | undefined): ObjectKey {
  if (!key || !Number.isSafeInteger(key.ino) || key.ino <= 0) throw new FsError(E.EINVAL, 'bad object key');
  if (key.gen !== undefined && key.gen !== null && !(Number.isSafeInteger(key.gen) && key.gen >= 0)) throw new FsError(E.EINVAL, 'bad object key generation');
  return key;
}

export function validOffset(offset: number | undefined): number {
  if (offset === undefined || !Number.isSafeInteger(offset) || offset < 0 || offset > FILE_MAX_BYTES) throw new FsError(E.EINVAL, 'bad offset');
  return offset;
}
