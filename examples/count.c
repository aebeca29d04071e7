/* count STEPS: a deterministic computation long enough to be checkpointed,
 * printing one line that depends on every step, so that a run checkpointed,
 * killed and restarted can be compared with one left alone:
 *     count 10000000 steps: 0x...
 * Its state is {next step, accumulator, STEPS}; it answers checkpoints every
 * CHECK_EVERY steps, where that state is consistent. */
#include "kdfs_checkpoint.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ROUNDS 80 /* 10^7 steps take about 3 s on the 2-core CI machine (measured) */
#define CHECK_EVERY 65536

/* Saved raw: `restart` runs it on the same architecture. */
struct state {
    uint64_t next, acc, steps;
};

/* splitmix64's finalizer: each round depends on the last, so it cannot be
 * vectorized or skipped, and the cost per step is steady. */
static uint64_t mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9u;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

static uint64_t step(uint64_t acc, uint64_t i)
{
    for (int r = 0; r < ROUNDS; r++)
        acc = mix(acc + i + (uint64_t)r);
    return acc;
}

int main(int argc, char **argv)
{
    char *end;
    /* digits only: strtoull would take "-1" as 2^64-1 */
    if (argc != 2 || argv[1][0] < '0' || argv[1][0] > '9') {
        fprintf(stderr, "usage: count STEPS (a number of steps, 0 to 2^64-1)\n");
        return 2;
    }
    errno = 0;
    uint64_t steps = strtoull(argv[1], &end, 10);
    if (errno || *end) {
        fprintf(stderr, "usage: count STEPS (a number of steps, 0 to 2^64-1)\n");
        return 2;
    }
    if (kdfs_ckpt_init() < 0) {
        fprintf(stderr, "count: checkpoint registration: %s\n", strerror(errno));
        return 1;
    }
    struct state s = {0, 0x6b444653u, steps};
    void *saved;
    long n = kdfs_ckpt_restore(&saved);
    if (n < 0) {
        fprintf(stderr, "count: restore: %s\n", strerror(errno));
        return 1;
    }
    if (saved) {
        int bad = n != (long)sizeof s;
        if (!bad)
            memcpy(&s, saved, sizeof s);
        free(saved);
        if (bad || s.next > s.steps) {
            fprintf(stderr, "count: restore: the saved state (%ld bytes) is not count's\n", n);
            return 1;
        }
        if (s.steps != steps) {
            fprintf(stderr, "count: restore: the checkpoint is of `count %" PRIu64 "`, not `count %" PRIu64 "`\n", s.steps, steps);
            return 1;
        }
    }
    for (; s.next < steps; s.next++) {
        /* a failed checkpoint fails that checkpoint only: the count goes on */
        if (s.next % CHECK_EVERY == 0 && kdfs_ckpt_pending() && kdfs_ckpt_save(&s, sizeof s) < 0)
            fprintf(stderr, "count: checkpoint at step %" PRIu64 ": %s\n", s.next, strerror(errno));
        s.acc = step(s.acc, s.next);
    }
    if (printf("count %" PRIu64 " steps: 0x%016" PRIx64 "\n", steps, s.acc) < 0 || fflush(stdout) == EOF)
        return 1;
    return 0;
}
