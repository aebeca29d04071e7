// The program's side of kDFS's checkpoint protocol (docs/checkpoint.md), as
// sdk/node/checkpoint.js implements it. Outside `kdfs run` (no
// $KDFS_CKPT_APP) every call does nothing, so a program runs the same anywhere.

/** Listens for SIGUSR2, then registers as procs/<NODE>.<PID>; the rank is
 *  $KDFS_CKPT_RANK (default 0). False when not under `kdfs run`. Throws on a
 *  bad variable or when registering fails. */
export function init(): boolean;

/** True when a checkpoint was asked for and not yet answered. The signal is
 *  seen from the event loop: a program that never yields never sees it. */
export function pending(): boolean;

/** At a point where `state` is consistent: answers every checkpoint waiting for
 *  this process. Throws when one could not be answered `done` (that checkpoint
 *  fails; the program may go on). */
export function save(state: Buffer): void;

/** Under `restart`: this rank's saved state. Null when not restarting; throws
 *  on any error (a missing file is an error, never an empty state). */
export function restore(): Buffer | null;

/** Registers (as init) and saves fn()'s state at the tick after each signal; a
 *  throw from fn answers `fail`, a failed save is a process warning. */
export function onCheckpoint(fn: () => Buffer): boolean;
