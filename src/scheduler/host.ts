// Runs one scheduler module in a worker thread with a memory limit, and each
// call with a time limit: a module that overruns either is terminated, and its
// callers hear an error (a policy's users fall back to round-robin).
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import { E, FsError } from '../common/errno.js';
import { MODULE_NAME, type ModuleInfo } from './config.js';

/** Memory a module's heap may use. */
const MODULE_HEAP_MB = 64;
/** Time a module may take to load and describe itself, and each call. */
export const MODULE_LOAD_TIMEOUT_MS = 5000;
export const MODULE_CALL_TIMEOUT_MS = 2000;
/** Calls waiting on one module at most (a slower module drops the excess). */
const CALLS_PENDING_MAX = 16;

interface Waiting { resolve: (value: unknown) => void; reject: (err: Error) => void; timer: NodeJS.Timeout }

export class ModuleWorker {
  private readonly waiting = new Map<number, Waiting>();
  private nextId = 1;
  private failure: string | null = null;

  private constructor(readonly name: string, private readonly worker: Worker, readonly info: ModuleInfo) {}

  /** Starts `source` as module `name`; rejects with EINVAL if it is not a valid module of `kind`. */
  static async start(name: string, source: string, kind: ModuleInfo['kind']): Promise<ModuleWorker> {
    const worker = new Worker(path.join(__dirname, 'worker.js'), {
      workerData: { source, filename: `/kdfs-modules/${name}.js` },
      resourceLimits: { maxOldGenerationSizeMb: MODULE_HEAP_MB, maxYoungGenerationSizeMb: 8, stackSizeMb: 4 },
      stdout: true, stderr: true,
    });
    worker.unref();
    const described = await new Promise<unknown>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`did not load within ${MODULE_LOAD_TIMEOUT_MS} ms`)), MODULE_LOAD_TIMEOUT_MS);
      worker.once('message', (message: { result?: unknown; error?: string }) => {
        clearTimeout(timer);
        if (message.error !== undefined) reject(new Error(message.error));
        else resolve(message.result);
      });
      worker.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    }).catch(async (err: Error) => {
      await worker.terminate();
      throw new FsError(E.EINVAL, `module ${name}: ${err.message}`);
    });
    const info = checkInfo(name, described, kind);
    if (typeof info === 'string') {
      await worker.terminate();
      throw new FsError(E.EINVAL, `module ${name}: ${info}`);
    }
    const host = new ModuleWorker(name, worker, info);
    worker.on('message', (message: { id: number; result?: unknown; error?: string }) => host.answered(message));
    worker.on('error', (err) => host.fail(`crashed: ${err.message}`));
    worker.on('exit', () => host.fail('exited'));
    return host;
  }

  /** Why the module stopped working, or null while it works. */
  get failed(): string | null {
    return this.failure;
  }

  call(fn: string, args: unknown[], timeoutMs = MODULE_CALL_TIMEOUT_MS): Promise<unknown> {
    if (this.failure) return Promise.reject(new Error(`module ${this.name} ${this.failure}`));
    if (this.waiting.size >= CALLS_PENDING_MAX) return Promise.reject(new Error(`module ${this.name} is behind by ${CALLS_PENDING_MAX} calls`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.fail(`took more than ${timeoutMs} ms in ${fn}: stopped`);
      }, timeoutMs);
      this.waiting.set(id, { resolve, reject, timer });
      this.worker.postMessage({ id, fn, args });
    });
  }

  async stop(): Promise<void> {
    this.fail('unloaded');
    await this.worker.terminate();
  }

  private answered(message: { id: number; result?: unknown; error?: string }): void {
    const waiting = this.waiting.get(message.id);
    if (!waiting) return;
    this.waiting.delete(message.id);
    clearTimeout(waiting.timer);
    if (message.error !== undefined) waiting.reject(new Error(`module ${this.name}: ${message.error}`));
    else waiting.resolve(message.result);
  }

  private fail(why: string): void {
    if (this.failure) return;
    this.failure = why;
    void this.worker.terminate();
    for (const waiting of this.waiting.values()) {
      clearTimeout(waiting.timer);
      waiting.reject(new Error(`module ${this.name} ${why}`));
    }
    this.waiting.clear();
  }
}

/** The module's declaration, checked; or what is wrong with it. */
function checkInfo(name: string, described: unknown, kind: ModuleInfo['kind']): ModuleInfo | string {
  const d = described as Partial<ModuleInfo> | null;
  if (!d || (d.kind !== 'probe' && d.kind !== 'policy')) return 'it exports no kind ("probe" or "policy")';
  if (d.kind !== kind) return `it is a ${d.kind} module, not a ${kind}`;
  const names = [...(d.values ?? []), ...(d.ports ?? []), ...Object.keys(d.attributes ?? {})];
  const bad = names.find((n) => !MODULE_NAME.test(n));
  if (bad !== undefined) return `bad name ${JSON.stringify(bad)}`;
  if (new Set(names).size !== names.length) return 'a name is used twice among its values, ports and attributes';
  for (const [attr, spec] of Object.entries(d.attributes ?? {})) {
    if (typeof spec !== 'object' || spec === null || (typeof spec.default !== 'number' && typeof spec.default !== 'string')) return `attribute ${attr} has no default`;
  }
  if (kind === 'probe' && (d.values ?? []).length === 0) return 'a probe must declare its values';
  return { kind, description: d.description ?? '', attributes: d.attributes ?? {}, values: d.values ?? [], ports: d.ports ?? [] };
}
