// errno is the one error currency of kDFS: the metadata service and the agents
// reply with a positive errno, the VFS throws FsError, the FUSE adapter hands
// the negated value to the kernel.
import { constants } from 'node:os';

export const E = constants.errno as Readonly<Record<string, number>> & {
  EPERM: number; ENOENT: number; EIO: number; EBADF: number; EAGAIN: number;
  EACCES: number; EEXIST: number; EXDEV: number; ENOTDIR: number; EISDIR: number;
  EINVAL: number; EFBIG: number; ENOSPC: number; EROFS: number; EMLINK: number;
  ERANGE: number; ENAMETOOLONG: number; ENOSYS: number; ENOTEMPTY: number;
  ELOOP: number; ENODATA: number; EOPNOTSUPP: number; E2BIG: number;
  ENOTCONN: number; ETIMEDOUT: number; EBUSY: number; ESTALE: number;
};

/** An errno as an exception. Most are answers, not faults (ENOENT of a lookup,
 *  ENODATA of a getxattr): they carry no stack, which costs as much as the rest
 *  of a request. */
export class FsError extends Error {
  constructor(readonly errno: number, message?: string) {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    super(message ?? errnoName(errno));
    Error.stackTraceLimit = limit;
  }
}

/** Throws FsError(errno) unless errno is 0: for replies of the services. */
export function check(errno: number, what?: string): void {
  if (errno !== 0) throw new FsError(errno, what ? `${what}: ${errnoName(errno)}` : undefined);
}

const names = new Map<number, string>();
for (const [name, value] of Object.entries(constants.errno)) if (!names.has(value)) names.set(value, name);

export function errnoName(errno: number): string {
  return names.get(errno) ?? `errno ${errno}`;
}

/** The errno of a Node.js system error (err.code 'ENOSPC' and the like), else EIO. */
export function errnoOf(err: unknown): number {
  if (err instanceof FsError) return err.errno;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code && code in constants.errno) return (constants.errno as Record<string, number>)[code];
  return E.EIO;
}
