/* XXH64 (seed 0), the hash in a checkpoint's manifest: the library reports
 * the hash of the state it writes, so that `checkpoint` need not read the
 * state back through the file system to make the manifest. */
#ifndef KDFS_XXH64_H
#define KDFS_XXH64_H
#include <stddef.h>
#include <stdint.h>

uint64_t kdfs_xxh64(const void *data, size_t bytes);

#endif
