// Types of kdfs-sys (see index.js and src/).

export const FALLOC_FL_KEEP_SIZE: number;
export const FALLOC_FL_PUNCH_HOLE: number;
export const FALLOC_FL_ZERO_RANGE: number;
/** fallocate(2) on an open descriptor; rejects with an error as node:fs's (code, errno, syscall).
 *  Throws a TypeError or RangeError at once on arguments the call cannot take. */
export function fallocate(fd: number, mode: number, offset: number, length: number): Promise<void>;
