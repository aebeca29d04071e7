// xxHash64 (xxhash-wasm), initialised once per process.
import xxhash from 'xxhash-wasm';

type Hasher = Awaited<ReturnType<typeof xxhash>>;
let hasher: Hasher | null = null;
let loading: Promise<Hasher> | null = null;

export async function initHash(): Promise<void> {
  if (hasher) return;
  loading ??= xxhash();
  hasher = await loading;
}

/** xxHash64 of bytes; initHash() must have completed. */
export function h64(bytes: Uint8Array): bigint {
  if (!hasher) throw new Error('initHash() was not awaited');
  return hasher.h64Raw(bytes);
}

/** xxHash64 of a stream of chunks (a file too large to hold); initHash() must have completed. */
export function h64Stream(): { update(bytes: Uint8Array): void; digest(): bigint } {
  if (!hasher) throw new Error('initHash() was not awaited');
  const state = hasher.create64();
  return { update: (bytes) => void state.update(bytes), digest: () => state.digest() };
}
