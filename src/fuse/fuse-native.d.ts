// Types of the low-level API that patches/fuse-native+2.2.6.patch adds to
// fuse-native (node_modules/fuse-native/lowlevel.c documents each call).
declare module 'fuse-native/lowlevel' {
  type Handler = (op: number, slot: number, str1: string | null, str2: string | null, data: Buffer | null) => void;
  const lowlevel: {
    /** Operation names, indexed by the op number handed to the handler. */
    OPS: string[];
    /** Numeric arguments of the request being dispatched: [0] uid [1] gid [2] pid [3] umask [4] ino, then per operation. */
    args: Float64Array;
    mount(mountPoint: string, options: string, handler: Handler): void;
    unmount(): void;
    replyErr(slot: number, errno: number): number;
    replyEntry(slot: number, attr: Float64Array, entryTimeoutS: number, attrTimeoutS: number): number;
    replyAttr(slot: number, attr: Float64Array, attrTimeoutS: number): number;
    replyOpen(slot: number, fh: number, flags: number): number;
    replyCreate(slot: number, attr: Float64Array, entryTimeoutS: number, attrTimeoutS: number, fh: number, flags: number): number;
    replyWrite(slot: number, count: number): number;
    replyBuf(slot: number, data: Buffer | null, length?: number): number;
    replyIov(slot: number, pieces: Buffer[]): number;
    replyReadlink(slot: number, target: string): number;
    replyStatfs(slot: number, statfs: Float64Array): number;
    replyXattr(slot: number, size: number): number;
    replyDir(slot: number, size: number, offset: number, names: string[], inos: Float64Array, modes: Uint32Array): number;
    notifyInvalInode(ino: number, offset: number, length: number): number;
    notifyInvalEntry(parent: number, name: string): number;
  };
  export = lowlevel;
}
