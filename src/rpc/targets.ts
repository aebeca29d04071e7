// What a metadata request names: the inodes of its targets (a file, a directory
// by one of its entries), and whether one is a path, which may cross any
// directory. Both ends of delegated creates need it: the node, to send its
// creates before a call that names them, and the service, to recall
// delegations before it serves a call about their directories.

/** The fields of Meta requests that hold a Target (see proto/kdfs.proto). */
const TARGET_FIELDS = ['target', 'entry', 'from', 'to', 'inode'] as const;

export interface Named { inos: number[]; path: boolean }

export function namedBy(request: unknown): Named {
  const named: Named = { inos: [], path: false };
  const r = request as Record<string, unknown>;
  // a Target may be the request itself (Getattr, ReadLink, GetStripe)
  for (const t of [r, ...TARGET_FIELDS.map((field) => r[field])] as ({ ino?: unknown; path?: unknown } | null | undefined)[]) {
    if (!t || typeof t !== 'object') continue;
    if (typeof t.path === 'string' && t.path.length > 0) named.path = true;
    if (typeof t.ino === 'number' && t.ino > 0) named.inos.push(t.ino);
  }
  // Close names the inodes it closes and opens
  for (const field of ['inos', 'opens']) {
    const list = r[field];
    if (Array.isArray(list)) for (const ino of list) if (typeof ino === 'number' && ino > 0) named.inos.push(ino);
  }
  return named;
}
