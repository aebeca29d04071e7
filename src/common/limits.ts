// Explicit limits of kDFS. Every queue, name and buffer has one.

export const MiB = 1024 * 1024;

/** Longest name of a directory entry, in bytes (as on ext4). */
export const NAME_MAX_BYTES = 255;
/** Longest symbolic link target, in bytes. */
export const SYMLINK_MAX_BYTES = 4095;
/** Longest path handed to the metadata service, in bytes. */
export const PATH_MAX_BYTES = 4096;
/** Files whose data fits in this many bytes keep it in their inode, not in stripe objects. */
export const INLINE_MAX_BYTES = 8 * 1024;
/** Largest file: 8 TiB, within what one stripe object may hold on ext4 (16 TiB). */
export const FILE_MAX_BYTES = 2 ** 43;
/** Most hard links of one inode. */
export const LINK_MAX = 65000;

/** Extended attributes: longest name, largest value, all of one inode together. */
export const XATTR_NAME_MAX_BYTES = 255;
export const XATTR_VALUE_MAX_BYTES = 64 * 1024;
export const XATTR_TOTAL_MAX_BYTES = 256 * 1024;

/** Stripe units: default, smallest and largest; units are multiples of 64 KiB. */
export const STRIPE_UNIT_DEFAULT_BYTES = 1 * MiB;
export const STRIPE_UNIT_MIN_BYTES = 64 * 1024;
export const STRIPE_UNIT_MAX_BYTES = 64 * MiB;
/** Most stripe objects (and so most nodes) a file is striped over. */
export const STRIPE_COUNT_MAX = 256;

/** Largest message on the wire: a stripe unit of data plus framing. */
export const RPC_MESSAGE_MAX_BYTES = STRIPE_UNIT_MAX_BYTES + 1 * MiB;
/** Most directory entries in one ReadDir reply. */
export const READDIR_PAGE_ENTRIES = 4096;
/** ...and in one with the entries' attributes (each inode read, ~100 bytes each). */
export const READDIR_PLUS_PAGE_ENTRIES = 1024;
/** ...and the small files' content it carries, at most. */
export const READDIR_PLUS_INLINE_MAX_BYTES = 1024 * 1024;
/** Longest read a client asks one agent for in one call. */
export const OBJECT_READ_MAX_BYTES = 16 * MiB;

/** No file system call waits longer than this on a node that does not answer
 *  (dead, stopped, cut off): past it, the call fails with EIO. A node that
 *  restarts within it is waited for. See docs/failures.md. */
export const PEER_BOUND_MS = 5_000;
/** Within the bound: how long a connection may take to be made and greeted... */
export const CONNECT_TIMEOUT_MS = 2_000;
/** ...how long a peer with requests waiting may stay silent (it is pinged once a
 *  second meanwhile, and answers pings however busy it is)... */
export const PEER_SILENCE_MS = 4_000;
/** ...and, once a peer failed a call, for how long later calls fail at once
 *  instead of waiting again. */
export const PEER_DOWN_HOLD_MS = 1_000;
/** Deadlines of a call to a node that does answer (pings) but is slow: a last
 *  resort against a hung disk, far above any request's time. */
export const META_DEADLINE_MS = 60_000;
export const AGENT_DEADLINE_MS = 60_000;
/** How long a node waits for the root when it mounts. */
export const JOIN_TIMEOUT_MS = 30_000;

/** Open file descriptors an agent keeps cached for its objects. */
export const AGENT_OPEN_FILES_MAX = 512;
/** Inode and directory entry records the metadata service keeps in memory, and
 *  about how many bytes they may take (inline data makes some records large). */
export const META_CACHE_RECORDS_MAX = 250_000;
export const META_CACHE_BYTES_MAX = 64 * 1024 * 1024;
/** The JavaScript heap of a node process (MiB), and the size of each half of its
 *  young generation, which mount.kdfs passes to node for its daemon. The heap
 *  limit is far above what the bounded caches hold and is never reached; with
 *  these V8 collects before garbage makes its heap large (by default, on this
 *  24 GiB machine, the heap of a root node grew to 120-140 MiB for 30 of live
 *  objects). Neither changed the rate of creates or writes measurably. */
export const NODE_HEAP_MAX_MIB = 1024;
export const NODE_SEMI_SPACE_MIB = 4;

/** How long a node remembers that a file has no such extended attribute (the
 *  kernel asks for security.capability before every write). Attributes and
 *  entries are cached for as long as the metadata service grants them (see
 *  src/meta/coherence.ts). */
export const ABSENT_XATTR_CACHE_MS = 1000;
