// Types of the parts of fuse-native (as patched) that the adapter uses.
declare module 'fuse-native' {
  class Fuse {
    constructor(mountPoint: string, operations: object, options?: { timeout?: false | number; onexit?: () => void });
    mount(callback: (err: Error | null) => void): void;
    unmount(callback: (err: Error | null) => void): void;
    /** uid, gid, pid and umask of the caller of the operation being dispatched. */
    static context: Uint32Array;
  }
  export = Fuse;
}
