// The scheduler's configuration, as the metadata service keeps it (one record
// in its store, so that it lives in kDFS and every node sees the same): which
// probes are loaded, the schedulers and their policies, every attribute's
// value, and the links from policies' ports to probes' values (PlugProPol's
// `ln -s`). Changes are checked here, with the errno a configfs user expects.
import { E, FsError } from '../common/errno.js';

export interface AttributeSpec {
  default: number | string;
  /** Integers only, within [min, max], when these are given. */
  min?: number;
  max?: number;
  /** For string attributes: a pattern the value must match. */
  pattern?: string;
  description?: string;
}

/** What a module declares about itself (see docs/scheduler.md). */
export interface ModuleInfo {
  kind: 'probe' | 'policy';
  description: string;
  attributes: Record<string, AttributeSpec>;
  /** Probes: the values they measure. */
  values: string[];
  /** Policies: the ports they read probes' values through. */
  ports: string[];
}

export interface LoadedModule { module: string; info: ModuleInfo; attrs: Record<string, string>; loadedSec: number }
export interface PolicyConfig extends LoadedModule {
  /** port -> "PROBE/VALUE" */
  links: Record<string, string>;
}
export interface SchedulerConfig {
  version: number;
  probes: Record<string, LoadedModule>;
  schedulers: Record<string, { policies: Record<string, PolicyConfig> }>;
}

export type ConfigOp =
  | { op: 'load-probe'; name: string; info: ModuleInfo }
  | { op: 'unload-probe'; name: string }
  | { op: 'make-scheduler'; name: string }
  | { op: 'remove-scheduler'; name: string }
  | { op: 'load-policy'; scheduler: string; name: string; info: ModuleInfo }
  | { op: 'unload-policy'; scheduler: string; name: string }
  | { op: 'set'; scheduler: string | null; name: string; attr: string; value: string }
  | { op: 'link'; scheduler: string; policy: string; port: string; probe: string; value: string }
  | { op: 'unlink'; scheduler: string; policy: string; port: string };

/** Every probe samples this often unless told otherwise (probe_period). */
export const PROBE_PERIOD_DEFAULT_MS = 1000;
export const PROBE_PERIOD_ATTR = 'probe_period';
const PROBE_PERIOD_SPEC: AttributeSpec = { default: PROBE_PERIOD_DEFAULT_MS, min: 100, max: 3_600_000, description: 'milliseconds between two samples' };
/** A module or scheduler name, and an attribute's. */
export const MODULE_NAME = /^[a-z0-9][a-z0-9_.-]{0,62}$/;
const ATTRIBUTE_VALUE_MAX_BYTES = 4096;
const MODULES_MAX = 256;

export function emptyConfig(): SchedulerConfig {
  return { version: 0, probes: {}, schedulers: {} };
}

/** A module's declared attributes, with the ones every probe has. */
export function attributesOf(info: ModuleInfo): Record<string, AttributeSpec> {
  return info.kind === 'probe' ? { [PROBE_PERIOD_ATTR]: PROBE_PERIOD_SPEC, ...info.attributes } : info.attributes;
}

/** The value an attribute takes when set to `text` (a newline at the end, as echo writes, is dropped); EINVAL if it may not. */
export function checkValue(spec: AttributeSpec, text: string): string {
  const value = text.replace(/\n$/, '');
  if (Buffer.byteLength(value) > ATTRIBUTE_VALUE_MAX_BYTES) throw new FsError(E.EINVAL, 'value too long');
  if (typeof spec.default === 'number') {
    if (!/^-?\d+$/.test(value.trim())) throw new FsError(E.EINVAL, `not an integer: ${JSON.stringify(value)}`);
    const n = Number(value.trim());
    if ((spec.min !== undefined && n < spec.min) || (spec.max !== undefined && n > spec.max)) throw new FsError(E.EINVAL, `out of range [${spec.min}, ${spec.max}]: ${n}`);
    return String(n);
  }
  if (spec.pattern !== undefined && !new RegExp(spec.pattern).test(value)) throw new FsError(E.EINVAL, `does not match ${spec.pattern}: ${JSON.stringify(value)}`);
  return value;
}

/** The current value of every attribute of a loaded module (defaults for those never set). */
export function attributeValues(loaded: LoadedModule): Record<string, string> {
  const values: Record<string, string> = {};
  for (const [name, spec] of Object.entries(attributesOf(loaded.info))) values[name] = loaded.attrs[name] ?? String(spec.default);
  return values;
}

/** The configuration after `op`; throws FsError (and changes nothing) if it may not apply. */
export function applyOp(config: SchedulerConfig, op: ConfigOp, nowSec: number): SchedulerConfig {
  const next = structuredClone(config);
  next.version++;
  const scheduler = (name: string) => next.schedulers[name] ?? fail(E.ENOENT, `no scheduler ${name}`);
  const policy = (s: string, name: string) => scheduler(s).policies[name] ?? fail(E.ENOENT, `no policy ${name} in ${s}`);
  const count = () => Object.keys(next.probes).length + Object.values(next.schedulers).reduce((n, s) => n + 1 + Object.keys(s.policies).length, 0);
  switch (op.op) {
    case 'load-probe':
      checkName(op.name);
      if (next.probes[op.name]) fail(E.EEXIST, `probe ${op.name} is loaded`);
      if (op.info.kind !== 'probe') fail(E.EINVAL, `${op.name} is not a probe module`);
      if (count() >= MODULES_MAX) fail(E.ENOSPC, `at most ${MODULES_MAX} modules and schedulers`);
      next.probes[op.name] = { module: op.name, info: op.info, attrs: {}, loadedSec: nowSec };
      break;
    case 'unload-probe': {
      if (!next.probes[op.name]) fail(E.ENOENT, `probe ${op.name} is not loaded`);
      const user = linksTo(next, op.name)[0];
      if (user) fail(E.EBUSY, `probe ${op.name} is linked to ${user}`);
      delete next.probes[op.name];
      break;
    }
    case 'make-scheduler':
      checkName(op.name);
      if (next.schedulers[op.name]) fail(E.EEXIST, `scheduler ${op.name} exists`);
      if (count() >= MODULES_MAX) fail(E.ENOSPC, `at most ${MODULES_MAX} modules and schedulers`);
      next.schedulers[op.name] = { policies: {} };
      break;
    case 'remove-scheduler':
      if (Object.keys(scheduler(op.name).policies).length > 0) fail(E.ENOTEMPTY, `scheduler ${op.name} has policies loaded`);
      delete next.schedulers[op.name];
      break;
    case 'load-policy':
      checkName(op.name);
      if (scheduler(op.scheduler).policies[op.name]) fail(E.EEXIST, `policy ${op.name} is loaded in ${op.scheduler}`);
      if (op.info.kind !== 'policy') fail(E.EINVAL, `${op.name} is not a policy module`);
      if (count() >= MODULES_MAX) fail(E.ENOSPC, `at most ${MODULES_MAX} modules and schedulers`);
      scheduler(op.scheduler).policies[op.name] = { module: op.name, info: op.info, attrs: {}, loadedSec: nowSec, links: {} };
      break;
    case 'unload-policy':
      policy(op.scheduler, op.name);
      delete scheduler(op.scheduler).policies[op.name];
      break;
    case 'set': {
      const loaded = op.scheduler === null ? next.probes[op.name] ?? fail(E.ENOENT, `probe ${op.name} is not loaded`) : policy(op.scheduler, op.name);
      const spec = attributesOf(loaded.info)[op.attr] ?? fail(E.ENOENT, `${op.name} has no attribute ${op.attr}`);
      loaded.attrs[op.attr] = checkValue(spec, op.value);
      break;
    }
    case 'link': {
      const target = policy(op.scheduler, op.policy);
      if (!target.info.ports.includes(op.port)) fail(E.EINVAL, `policy ${op.policy} has no port ${op.port} (it has ${target.info.ports.join(', ') || 'none'})`);
      if (target.links[op.port]) fail(E.EEXIST, `port ${op.port} is linked`);
      const probe = next.probes[op.probe] ?? fail(E.ENOENT, `probe ${op.probe} is not loaded`);
      if (!probe.info.values.includes(op.value)) fail(E.EINVAL, `probe ${op.probe} has no value ${op.value}`);
      target.links[op.port] = `${op.probe}/${op.value}`;
      break;
    }
    case 'unlink': {
      const target = policy(op.scheduler, op.policy);
      if (!target.links[op.port]) fail(E.ENOENT, `port ${op.port} is not linked`);
      delete target.links[op.port];
      break;
    }
  }
  return next;
}

/** The policies (as SCHEDULER/POLICY) linked to a probe's values. */
export function linksTo(config: SchedulerConfig, probe: string): string[] {
  const users: string[] = [];
  for (const [s, { policies }] of Object.entries(config.schedulers)) {
    for (const [p, policy] of Object.entries(policies)) {
      if (Object.values(policy.links).some((link) => link.split('/')[0] === probe)) users.push(`${s}/${p}`);
    }
  }
  return users;
}

function checkName(name: string): void {
  if (!MODULE_NAME.test(name)) fail(E.EINVAL, `bad name ${JSON.stringify(name)}`);
}

function fail(errno: number, message: string): never {
  throw new FsError(errno, message);
}
