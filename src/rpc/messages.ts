// TypeScript shapes of the messages of proto/kdfs.proto, as protobufjs decodes
// them: camelCase fields, 64-bit integers as numbers (see proto.ts), bytes as
// Buffer, absent message fields as null. Kept in step with the .proto file:
// test/unit/messagesInStep.test.ts fails on a field or method that differs.

export interface Timespec { sec: number; nsec: number }

export interface Superblock {
  formatVersion: number;
  nodeId: number;
  rootNodeId: number;
  listenAddress: string;
  rootAddress: string;
  fsid: string;
  nodeUuid: string;
  createdSec: number;
  domain?: string;
  /** Formatted to take the place of a member whose directory was lost (mkfs.kdfs --replace). */
  replace?: boolean;
  /** Where the metadata lives: empty for level (DIR/meta on the root), or etcd://HOST:PORT,... */
  meta?: string;
}

export interface StripePolicy { unitBytes: number; count: number; replicas?: number; placement?: string }
/** See Layout in proto/kdfs.proto: mirrors and stale are absent (empty) in old records. */
export interface Layout { unitBytes: number; nodes: number[]; replicas: number; mirrors?: number[]; stale?: number[]; moves?: LayoutMove[]; gen?: number }
/** A copy being made on another node: see Layout.moves in proto/kdfs.proto. */
export interface LayoutMove { slot: number; node: number }

export interface FsRecord {
  fsid: string;
  nextIno: number;
  defaultPolicy: StripePolicy | null;
  rootNodeId: number;
  createdSec: number;
  /** A rebalance is under way (it goes on after a restart of the service). */
  rebalancing?: boolean;
}

export interface NodeRecord {
  id: number; uuid: string; address: string; joinedSec: number; dataAddress: string; domain?: string;
  /** Administrative state: '' is an older record's, read as 'active'. */
  admin?: AdminState | ''; adminSinceSec?: number;
}
/** See NodeRecord.admin in proto/kdfs.proto. */
export type AdminState = 'joined' | 'active' | 'draining' | 'removed' | 'maintenance' | 'revoked';

export interface Attr {
  ino: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  size: number;
  rdev: number;
  atime: Timespec | null;
  mtime: Timespec | null;
  ctime: Timespec | null;
  /** 512-byte blocks of disk the file takes. */
  blocks?: number;
}

export interface Inode {
  attr: Attr;
  layout: Layout | null;
  target: string;
  parent: number;
  entries: number;
  policy: StripePolicy | null;
  xattrs: Record<string, Buffer>;
  inlined: boolean;
  inlineData: Buffer;
}

export interface Empty {}
/** What a call changed, in its reply (see ErrnoReply in proto/kdfs.proto). */
export interface ChangedInReply { changed?: number[]; changedAttrs?: Attr[]; changedCacheMs?: number }
export interface ErrnoReply extends ChangedInReply { errno: number }
export interface Target { ino?: number; path?: string; name?: string }
export interface FailedCreate { ino: number; errno: number }
export interface AttrReply extends ChangedInReply { errno: number; attr: Attr | null; cacheMs?: number; failed?: FailedCreate[]; inlineMerged?: boolean }
export interface EntryReply extends ChangedInReply {
  errno: number;
  attr: Attr | null;
  layout: Layout | null;
  inlined?: boolean;
  inlineData?: Buffer;
  created?: boolean;
  cacheMs?: number;
  delegation?: Delegation | null;
}

export interface RegisterRequest {
  nodeId: number;
  nodeUuid: string;
  address: string;
  fsid: string;
  openInos: number[];
  incarnation: string;
  dataAddress: string;
  domain?: string;
  replace?: boolean;
}
export interface RegisterReply { errno: number; message: string; fsid: string; sessionAddress?: string }
export interface HealthRequest { inosMax: number; countCopies?: boolean }
export interface NodeCopies { id: number; copies: number; lastCopies: number; belowR: number }
export interface HealthReply {
  errno: number; degradedObjects: number; repairingObjects: number; degradedInos: number[]; repairedCopies: number; nodeCopies?: NodeCopies[];
}
export const NODE_ADD = 0;
export const NODE_REMOVE = 1;
export const NODE_REMOVE_FORCE = 2;
export const NODE_MAINTENANCE_ON = 3;
export const NODE_MAINTENANCE_OFF = 4;
export const NODE_REVOKE = 5;
export interface NodeAdminRequest { op: number; ids: number[] }
export interface NodeAdminReply { errno: number; message: string }
export type MoveState = 'idle' | 'running' | 'done' | 'stopped' | 'failed';
export interface MoveProgress {
  state: MoveState; objectsMoved: number; bytesMoved: number; objectsLeft: number; bytesLeft: number; bytesPerS: number;
  filesWaiting: number; message: string; startedSec: number; draining: number[]; passes: number;
}
export const REBALANCE_STATUS = 0;
export const REBALANCE_START = 1;
export const REBALANCE_STOP = 2;
export interface RebalanceRequest { op: number }
export interface SchedulerRequest { op: number; json: string; nodeId: number }
export interface DataKeyReply { errno: number; key: Uint8Array; epoch: number }
export interface SchedulerReply { errno: number; config: string; values: string; weights: string }
export const SCHEDULER_GET = 0;
export const SCHEDULER_CHANGE = 1;
export const SCHEDULER_PUT_VALUES = 2;
export interface NodeShare { id: number; storedBytes: number; share: number; targetShare: number }
export interface RebalanceReply { errno: number; message: string; rebalance: MoveProgress | null; drain: MoveProgress | null; shares: NodeShare[] }
export interface NodeInfo {
  checksumErrors?: number;
  domain?: string;
  admin?: AdminState;
  weight?: number;
  id: number;
  address: string;
  up: boolean;
  capacityBytes: number;
  usedBytes: number;
  freeBytes: number;
  dataAddress: string;
  state: NodeState;
}
export type NodeState = 'up' | 'suspect' | 'down';
export interface NodesReply { nodes: NodeInfo[] }
export interface StatfsReply { errno: number; totalBytes: number; freeBytes: number; files: number; filesFree: number }

export const SETATTR_MODE = 1;
export const SETATTR_UID = 2;
export const SETATTR_GID = 4;
export const SETATTR_SIZE = 8;
export const SETATTR_ATIME = 16;
export const SETATTR_MTIME = 32;
export const SETATTR_ATIME_NOW = 64;
export const SETATTR_MTIME_NOW = 128;

export interface SetattrRequest {
  target: Target;
  valid: number;
  mode?: number;
  uid?: number;
  gid?: number;
  size?: number;
  atime?: Timespec | null;
  mtime?: Timespec | null;
}

export interface CreateRequest {
  entry: Target;
  mode: number;
  uid: number;
  gid: number;
  rdev?: number;
  target?: string;
  exclusive?: boolean;
  openNode?: number;
  wantDelegation?: boolean;
  wantInos?: number;
}

export interface Delegation {
  dir: number;
  cacheMs: number;
  inoFirst: number;
  inoCount: number;
  policy: StripePolicy | null;
  nodeIds: number[];
  nodeDomains?: string[];
  nodeWeights?: number[];
  parentMode: number;
  parentGid: number;
}
export interface DelegatedCreate { entry: Target; mode: number; uid: number; gid: number; ino: number; layout: Layout | null; time: Timespec | null; changed?: Attr | null; spilled?: boolean }
export interface PublishRequest { creates: DelegatedCreate[] }
export interface ReserveInosRequest { count: number }
export interface ReserveInosReply { errno: number; inoFirst: number; inoCount: number }
export interface PublishReply extends ChangedInReply { errno: number; failed: FailedCreate[] }

export interface RemoveRequest { entry: Target; directory: boolean }
export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;
export interface RenameRequest { from: Target; to: Target; flags?: number }
export interface LinkRequest { inode: Target; entry: Target }
export interface ReadDirRequest { target: Target; after: string; limit: number; plus?: boolean }
export interface DirEntry {
  name: string; ino: number; mode: number;
  /** ReadDir plus: see DirEntry in proto/kdfs.proto. */
  attr?: Attr | null; layout?: Layout | null; inlined?: boolean; inlineData?: Buffer; noXattrs?: boolean;
}
export interface ReadDirReply { errno: number; ino: number; parent: number; entries: DirEntry[]; more: boolean; cacheMs?: number; names?: number }
export interface ReadLinkReply { errno: number; target: string }
export interface OpenRequest { target: Target; nodeId: number }
export interface CloseRequest { ino: number; nodeId: number; inos?: number[]; opens?: number[] }
export interface CommitWriteRequest {
  ino: number;
  size: number;
  mtime: Timespec | null;
  sync: boolean;
  inlined?: boolean;
  inlineData?: Uint8Array;
  inlinePatches?: InlinePatch[];
  spilled?: boolean;
  spilledContent?: Uint8Array;
  allocatedKnown?: boolean;
  allocatedBytes?: number;
  staleSlots?: number[];
  creates?: DelegatedCreate[];
}
export interface InlinePatch { offset: number; data: Uint8Array }
export interface AppendRequest { ino: number; data: Uint8Array }
export interface XattrRequest { target: Target; name?: string; value?: Uint8Array; flags?: number }
export interface XattrReply { errno: number; value: Buffer; names: string[] }
export interface SetStripeRequest { target: Target; policy: StripePolicy }
export interface MarkStaleRequest { ino: number; slots: number[] }
export interface RepairRequest { ino: number }
export const LOCK_POSIX = 0;
export const LOCK_FLOCK = 1;
export const F_RDLCK = 0;
export const F_WRLCK = 1;
export const F_UNLCK = 2;
export interface LockRequest {
  ino: number;
  owner: string;
  kind: number;
  type: number;
  start: number;
  end: number;
  pid: number;
  wait?: boolean;
  test?: boolean;
  waitId?: number;
  reclaim?: boolean;
}
export interface LockReply { errno: number; type?: number; start?: number; end?: number; pid?: number; nodeId?: number }
export interface CancelLockRequest { waitId: number }
export interface ReclaimRequest { locks: LockRequest[] }
export interface StripeReply { errno: number; directory: boolean; policy: StripePolicy | null; layout: Layout | null }

/** gen: see ObjectKey.gen in proto/kdfs.proto (absent: 0). */
export interface ObjectKey { ino: number; index: number; replica: number; gen?: number }

export const DATA_REPLY = 0;
export const DATA_HELLO = 1;
export const DATA_WRITE = 2;
export const DATA_READ = 3;
export const DATA_ALLOCATED = 4;
export const DATA_PING = 5;
export const DATA_AUTH = 6;
export interface DataHeader {
  id: number;
  op: number;
  key?: ObjectKey | null;
  offset?: number;
  length?: number;
  errno?: number;
  fsid?: string;
  nodeId?: number;
  nonce?: Uint8Array;
  mac?: Uint8Array;
  protect?: boolean;
  keyEpoch?: number;
  leaderEpoch?: number;
  targetNode?: number;
  wantAllocated?: boolean;
}
export interface ObjectWriteRequest { key: ObjectKey; offset: number; data: Uint8Array; leaderEpoch?: number }
export interface ObjectReadRequest { key: ObjectKey; offset: number; length: number }
export interface ObjectReadReply { errno: number; data: Buffer }
export interface ObjectTruncateRequest { key: ObjectKey; length: number; leaderEpoch?: number }
export interface ObjectFallocateRequest { key: ObjectKey; mode: number; offset: number; length: number; extend?: boolean }
/** ObjectFallocateRequest.mode (see proto/kdfs.proto). */
export const FALLOCATE_ALLOCATE = 0;
export const FALLOCATE_PUNCH = 1;
export const FALLOCATE_ZERO = 2;
export interface ObjectsRequest { keys: ObjectKey[]; leaderEpoch?: number }
export interface AgentStatReply { nodeId: number; capacityBytes: number; freeBytes: number; usedBytes: number; checksumErrors?: number }
export interface SumsRequest { key: ObjectKey; first: number; count: number }
export interface SumsReply { errno: number; length: number; sums: Buffer }

export const SESSION_HELLO = 0;
export const SESSION_REQUEST = 1;
export const SESSION_REPLY = 2;
export const SESSION_CALLBACK = 3;
export const SESSION_CALLBACK_DONE = 4;
export const SESSION_PING = 5;
export const SESSION_CALLBACK_TAKEN = 6;
export interface SessionHeader { id: number; kind: number; method?: string; errno?: number; resent?: boolean }
export interface SessionHello { fsid: string; nodeId: number; incarnation: string }

export const INVALIDATE_ATTR = 0;
export const INVALIDATE_DATA = 1;
export const INVALIDATE_ENTRY = 2;
export const INVALIDATE_DELEGATION = 3;
/** Invalidation.reasons */
export const CHANGED_SIZE = 1;
export const CHANGED_MTIME = 2;
/** The layout changed (copies moved): nodes writing the file write by the new one, once their writes in flight are done. */
export const CHANGED_LAYOUT = 4;
export interface Invalidation { kind: number; ino: number; parent: number; name: string; reasons: number; size?: number; newParent?: number; newName?: string }
export interface Invalidations { items: Invalidation[] }

/** Request and reply types of each RPC, by service and method name. */
export type MetaMethods = {
  Register: [RegisterRequest, RegisterReply];
  ListNodes: [Empty, NodesReply];
  Health: [HealthRequest, HealthReply];
  NodeAdmin: [NodeAdminRequest, NodeAdminReply];
  Rebalance: [RebalanceRequest, RebalanceReply];
  Scheduler: [SchedulerRequest, SchedulerReply];
  DataKey: [Empty, DataKeyReply];
  Statfs: [Empty, StatfsReply];
  Getattr: [Target, AttrReply];
  Setattr: [SetattrRequest, AttrReply];
  Create: [CreateRequest, EntryReply];
  Remove: [RemoveRequest, ErrnoReply];
  Rename: [RenameRequest, ErrnoReply];
  Link: [LinkRequest, AttrReply];
  ReadDir: [ReadDirRequest, ReadDirReply];
  ReadLink: [Target, ReadLinkReply];
  Open: [OpenRequest, EntryReply];
  Close: [CloseRequest, ErrnoReply];
  CommitWrite: [CommitWriteRequest, AttrReply];
  Publish: [PublishRequest, PublishReply];
  ReserveInos: [ReserveInosRequest, ReserveInosReply];
  Sync: [Empty, ErrnoReply];
  GetXattr: [XattrRequest, XattrReply];
  SetXattr: [XattrRequest, ErrnoReply];
  ListXattr: [XattrRequest, XattrReply];
  RemoveXattr: [XattrRequest, ErrnoReply];
  SetStripe: [SetStripeRequest, ErrnoReply];
  MarkStale: [MarkStaleRequest, ErrnoReply];
  Repair: [RepairRequest, ErrnoReply];
  GetStripe: [Target, StripeReply];
  Append: [AppendRequest, AttrReply];
  Lock: [LockRequest, LockReply];
  CancelLock: [CancelLockRequest, ErrnoReply];
  ReclaimLocks: [ReclaimRequest, ErrnoReply];
};

export type AgentMethods = {
  Write: [ObjectWriteRequest, ErrnoReply];
  Read: [ObjectReadRequest, ObjectReadReply];
  Truncate: [ObjectTruncateRequest, ErrnoReply];
  Fallocate: [ObjectFallocateRequest, ErrnoReply];
  Sync: [ObjectsRequest, ErrnoReply];
  Remove: [ObjectsRequest, ErrnoReply];
  Stat: [Empty, AgentStatReply];
  Sums: [SumsRequest, SumsReply];
  Fence: [ObjectsRequest, ErrnoReply];
};

export type Methods = Record<string, [unknown, unknown]>;
/** caller: the node a call comes from, on its session or in its own process; none for gRPC callers. */
export type Handlers<M extends Methods> = { [K in keyof M]: (request: M[K][0], caller?: { nodeId: number }) => Promise<M[K][1]> };
