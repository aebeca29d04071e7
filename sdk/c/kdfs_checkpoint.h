/* The program's side of kDFS's checkpoint protocol (docs/checkpoint.md, "The
 * protocol of checkpointable programs"). Single-threaded use: call these from
 * the thread that owns the state. Outside `kdfs run` (no $KDFS_CKPT_APP)
 * every call succeeds and does nothing, so a program runs the same anywhere. */
#ifndef KDFS_CHECKPOINT_H
#define KDFS_CHECKPOINT_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Installs the SIGUSR2 handler, then creates procs/<NODE>.<PID> in
 * $KDFS_CKPT_APP; the rank is $KDFS_CKPT_RANK (default 0). Returns 0 (also
 * when not under `kdfs run`), -1 with errno set. Call it again in a forked
 * child that is part of the application, after setting KDFS_CKPT_RANK. */
int kdfs_ckpt_init(void);

/* Nonzero when a checkpoint was asked for and not yet answered. */
int kdfs_ckpt_pending(void);

/* At a point where `state` is consistent: answers every checkpoint waiting
 * for this process (saves `bytes` bytes of `state` and tells `checkpoint`).
 * Returns 0, or -1 with errno set when a checkpoint could not be answered
 * (that checkpoint fails; the program may go on). */
int kdfs_ckpt_save(const void *state, size_t bytes);

/* At start, under `restart`: sets *state to a malloc'd copy of this rank's
 * saved state (the caller frees it) and returns its size. Returns 0 with
 * *state NULL when not restarting, -1 with errno set on any error (a missing
 * file is an error, never an empty state). */
long kdfs_ckpt_restore(void **state);

#ifdef __cplusplus
}
#endif

#endif
