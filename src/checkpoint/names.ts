// The names of a checkpoint directory's files (docs/checkpoint.md, "Layout"):
// the seed's (LinuxSSI 4.2.4) with an application directory named after its
// PID and the node it started on, since PIDs here are per node.

/** `<PID>@node<N>`, with `.<K>` after it when an older application had the same PID there. */
export function appDirName(pid: number, nodeId: number, generation = 1): string {
  return `${pid}@node${nodeId}` + (generation > 1 ? `.${generation}` : '');
}

export function parseAppDirName(name: string): { pid: number; nodeId: number } | null {
  const match = /^(\d+)@node(\d+)(?:\.\d+)?$/.exec(name);
  return match ? { pid: Number(match[1]), nodeId: Number(match[2]) } : null;
}

export const descriptionName = (sn: number) => `description_v${sn}.txt`;
export const globalName = (sn: number) => `global_v${sn}.bin`;
export const nodeName = (nodeId: number, sn: number) => `node_${nodeId}_v${sn}.bin`;
export const taskName = (pid: number, sn: number) => `task_${pid}_v${sn}.bin`;
export const taskMmName = (pid: number, sn: number) => `task_mm_${pid}_v${sn}.bin`;
/** CRIU's images of SN, in one directory. */
export const criuDirName = (sn: number) => `criu_v${sn}`;
/** A checkpoint being built. */
export const stagingName = (sn: number) => `.v${sn}`;
export const COMMAND_FILE = 'command.json';
export const PROCS_DIR = 'procs';
export const REQUEST_FILE = 'request';
/** Who builds a staging directory: `<node> <pid>` of the checkpoint command. */
export const BUILDER_FILE = 'builder';

/** The SN a file or staging directory of a set belongs to, or null for other names. */
export function snOf(name: string): number | null {
  const match = /_v(\d+)(?:\.txt|\.bin)?$/.exec(name) ?? /^\.v(\d+)$/.exec(name);
  return match ? Number(match[1]) : null;
}

export function isDescription(name: string): boolean {
  return /^description_v\d+\.txt$/.test(name);
}

/** `procs/<node>.<pid>`: a process of the application, registered by the library. */
export function parseProcName(name: string): { nodeId: number; pid: number } | null {
  const match = /^(\d+)\.(\d+)$/.exec(name);
  return match ? { nodeId: Number(match[1]), pid: Number(match[2]) } : null;
}
