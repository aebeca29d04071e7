// Wall-clock time with nanosecond resolution: the wall clock read once, then
// advanced by the monotonic high-resolution clock, so that two events in a row
// get distinct, ordered times.
import type { Timespec } from '../rpc/messages.js';

const NS_PER_S = 1_000_000_000n;
const baseNs = BigInt(Date.now()) * 1_000_000n - process.hrtime.bigint();

export function nowNs(): bigint {
  return baseNs + process.hrtime.bigint();
}

export function now(): Timespec {
  const ns = nowNs();
  return { sec: Number(ns / NS_PER_S), nsec: Number(ns % NS_PER_S) };
}
