// Calls sent again: a node sends a call again when the connection it went on
// was lost before the reply came (the root restarted, a failover): the service
// may have applied it and died before answering. Applying it again would fail
// (unlink: ENOENT, O_EXCL: EEXIST) or do it twice (O_APPEND). So every
// transaction of such a call also writes the call's mark ("Q" record: node,
// process incarnation, call id) in the same atomic write; a call sent again
// whose mark is there was applied, and gets the reply it would have had,
// rebuilt from the state now, without being applied again. Marks expire: with
// an etcd lease (kv/etcd.ts), or swept from level (kv/level.ts), long after any
// call could be sent again.
import { E, FsError } from '../common/errno.js';
import type { MetaMethods, Target } from '../rpc/messages.js';

/** Calls that cannot simply be applied again: they are marked, and answered
 *  again from their mark (see replayed). The others set what they set, and are
 *  applied again as they come: their marks would change nothing. */
export const MARKED_METHODS: ReadonlySet<string> = new Set<keyof MetaMethods>([
  'Create', 'Remove', 'Rename', 'Link', 'Publish', 'SetXattr', 'RemoveXattr', 'Append',
]);

type Call = (request: unknown) => Promise<unknown>;

/** Runs again, turning "already done" (errno) into success. */
async function doneIf(again: Promise<unknown>, errno: number, reply: () => Promise<unknown> = async () => ({ errno: 0 })): Promise<unknown> {
  try {
    const result = await again;
    return (result as { errno?: number }).errno === errno ? reply() : result;
  } catch (err) {
    if (err instanceof FsError && err.errno === errno) return reply();
    throw err;
  }
}

/** The reply to a call applied before (its mark was found). `again` runs a
 *  request without marking it; getattr looks an entry or inode up. */
export function replayed(method: string, request: unknown, again: Call, getattr: (target: Target) => Promise<unknown>): Promise<unknown> {
  switch (method) {
    case 'Remove':
    case 'Rename':
      return doneIf(again(request), E.ENOENT);
    case 'Create': {
      const create = request as MetaMethods['Create'][0];
      // a file opens as it is now; anything else is looked up
      return doneIf(again({ ...create, exclusive: false }).then((reply) => ({ ...(reply as object), created: true })), E.EEXIST,
        async () => ({ ...(await getattr(create.entry as Target) as object), created: true }));
    }
    case 'Link':
      return doneIf(again(request), E.EEXIST, () => getattr((request as MetaMethods['Link'][0]).inode as Target));
    case 'SetXattr':
      return doneIf(again(request), E.EEXIST);
    case 'RemoveXattr':
      return doneIf(again(request), E.ENODATA);
    case 'Append':
      // its data is in the file already: the file as it is now
      return getattr({ ino: (request as MetaMethods['Append'][0]).ino } as Target);
    case 'Publish':
      // the creates that went in the first time are there now
      return again(request).then((reply) => {
        const published = reply as MetaMethods['Publish'][1];
        return { ...published, failed: (published.failed ?? []).filter((f) => f.errno !== E.EEXIST) };
      });
    default:
      // only the calls above are marked (MARKED_METHODS)
      throw new Error(`no reply rebuilt for ${method}, a call sent again`);
  }
}
