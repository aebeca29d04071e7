// The scheduler on the root node: keeps the configuration and every node's
// latest probe values in the metadata store (so they live in kDFS and survive
// restarts), applies changes from any node's control tree, and runs the
// placement policies (built-in and loaded ones, each in its own worker) that
// weigh the nodes for placement (src/layout/placement.ts).
import { E, FsError } from '../common/errno.js';
import { log } from '../common/log.js';
import { BUILTIN_PLACEMENTS, FREE_SPACE, LEAST_LOADED } from '../layout/placement.js';
import type { MetaStore } from '../meta/store.js';
import { SCHEDULER_CHANGE, SCHEDULER_GET, SCHEDULER_PUT_VALUES, type NodeInfo, type SchedulerReply, type SchedulerRequest } from '../rpc/messages.js';
import { applyOp, attributeValues, emptyConfig, type ConfigOp, type PolicyConfig, type SchedulerConfig } from './config.js';
import { ModuleWorker } from './host.js';
import { builtinModuleSource } from './modules.js';

/** A node's latest sample: its base values (always measured) and its probes'. */
export interface NodeValues {
  atMs: number;
  base: { load1m: number; cpus: number; loadPerCpu: number; ramFreeBytes: number };
  probes: Record<string, Record<string, number>>;
  /** Probes that failed on the node, and why. */
  errors: Record<string, string>;
}

/** What a policy is given for each node that may take new data. */
export interface PolicyNode {
  id: number; freeBytes: number; capacityBytes: number; load1m: number | null; loadPerCpu: number | null;
  /** Each port's linked value on this node (null: unlinked, or no value yet). */
  ports: Record<string, number | null>;
}

const CONFIG_RECORD = 'config';
const VALUES_RECORD = 'values';
/** How often placement weights are recomputed. */
const WEIGHING_INTERVAL_MS = 1000;
/** A built-in weighing policy no file was placed by for this long stops running. */
const BUILTIN_IDLE_MS = 10 * 60_000;
/** Values are written to the store at most this often (they are refreshed every probe period). */
const VALUES_PERSIST_MS = 5000;
/** A node's values older than this are not used for placement. */
const VALUES_STALE_MS = 30_000;
const JSON_REQUEST_MAX_BYTES = 256 * 1024;

export class SchedulerService {
  config: SchedulerConfig = emptyConfig();
  private readonly values = new Map<number, NodeValues>();
  private readonly weights = new Map<string, Map<number, number>>();
  /** Policy workers on this node: the built-in weighing ones, and loaded ones by SCHEDULER/POLICY. */
  private readonly workers = new Map<string, ModuleWorker>();
  private starting = new Map<string, Promise<void>>();
  private timer: NodeJS.Timeout | null = null;
  private weighing = false;
  private valuesPersistedMs = 0;
  /** When each built-in weighing policy was last asked for its weights. */
  private readonly asked = new Map<string, number>();
  /** Reads a module's source from the modules directory in kDFS (set by the root's node). */
  readModule: (name: string) => Promise<string | null> = async () => null;

  constructor(private readonly store: MetaStore, private readonly placeable: () => Promise<NodeInfo[]>) {}

  load(): void {
    const config = this.store.schedulerRecords.get(CONFIG_RECORD);
    if (config) this.config = JSON.parse(config.toString('utf8')) as SchedulerConfig;
    const values = this.store.schedulerRecords.get(VALUES_RECORD);
    if (values) for (const [id, v] of Object.entries(JSON.parse(values.toString('utf8')) as Record<string, NodeValues>)) this.values.set(Number(id), v);
    this.timer = setInterval(() => void this.weigh(), WEIGHING_INTERVAL_MS);
    this.timer.unref();
  }

  async handle(request: SchedulerRequest): Promise<SchedulerReply> {
    if (Buffer.byteLength(request.json ?? '') > JSON_REQUEST_MAX_BYTES) throw new FsError(E.EINVAL, 'scheduler request too large');
    if (request.op === SCHEDULER_CHANGE) await this.change(JSON.parse(request.json) as ConfigOp);
    else if (request.op === SCHEDULER_PUT_VALUES) await this.putValues(request.nodeId, JSON.parse(request.json) as NodeValues);
    else if (request.op !== SCHEDULER_GET) throw new FsError(E.EINVAL, `unknown scheduler op ${request.op}`);
    return {
      errno: 0, config: JSON.stringify(this.config), values: JSON.stringify(Object.fromEntries(this.values)),
      weights: JSON.stringify(Object.fromEntries([...this.weights].map(([name, w]) => [name, Object.fromEntries(w)]))),
    };
  }

  /** The weights of a placement policy (a built-in one, or a scheduler with a policy loaded); null when it has none. */
  weightsOf(placement: string): Map<number, number> | null {
    if (placement === FREE_SPACE || placement === LEAST_LOADED) {
      // built-in weighing policies run only while files are placed by them
      if (!this.asked.has(placement)) setImmediate(() => void this.weigh());
      this.asked.set(placement, Date.now());
    }
    return this.weights.get(placement) ?? null;
  }

  placementKnown(placement: string): boolean {
    return BUILTIN_PLACEMENTS.includes(placement) || Object.keys(this.config.schedulers[placement]?.policies ?? {}).length > 0;
  }

  private async change(op: ConfigOp): Promise<void> {
    let next: SchedulerConfig;
    try {
      next = applyOp(this.config, op, Math.floor(Date.now() / 1000));
    } catch (err) {
      log.info(`scheduler: ${op.op} refused: ${(err as Error).message}`);
      throw err;
    }
    await this.store.run((tx) => tx.putSchedulerRecord(CONFIG_RECORD, Buffer.from(JSON.stringify(next))), true);
    this.config = next;
    log.info(`scheduler: ${JSON.stringify({ ...op, info: undefined })}`);
    void this.weigh();
  }

  private async putValues(nodeId: number, values: NodeValues): Promise<void> {
    if (!Number.isInteger(nodeId) || nodeId <= 0) throw new FsError(E.EINVAL, 'values without a node');
    this.values.set(nodeId, { ...values, atMs: Date.now() });
    if (Date.now() - this.valuesPersistedMs < VALUES_PERSIST_MS) return;
    this.valuesPersistedMs = Date.now();
    await this.store.run((tx) => tx.putSchedulerRecord(VALUES_RECORD, Buffer.from(JSON.stringify(Object.fromEntries(this.values)))), false);
  }

  /** Recomputes every weighing policy's weights; a policy that fails has none (placement falls back to round-robin). */
  private async weigh(): Promise<void> {
    if (this.weighing) return;
    this.weighing = true;
    try {
      const policies: [string, PolicyConfig | null, string][] = [];
      for (const [name, atMs] of this.asked) {
        if (Date.now() - atMs < BUILTIN_IDLE_MS) policies.push([name, null, name]);
        else this.asked.delete(name);
      }
      for (const [name, { policies: loaded }] of Object.entries(this.config.schedulers)) {
        const first = Object.entries(loaded).sort(([a], [b]) => a.localeCompare(b))[0];
        if (first && !BUILTIN_PLACEMENTS.includes(name)) policies.push([name, first[1], `${name}/${first[0]}`]);
      }
      const wanted = new Set(policies.map(([, , key]) => key));
      for (const [key, worker] of this.workers) {
        if (!wanted.has(key)) {
          this.workers.delete(key);
          void worker.stop();
        }
      }
      for (const name of [...this.weights.keys()]) if (!policies.some(([n]) => n === name)) this.weights.delete(name);
      if (policies.length === 0) return;
      const nodes = await this.placeable();
      for (const [name, policy, key] of policies) {
        const weights = await this.weighOne(key, policy, nodes).catch((err: Error) => {
          log.warn(`scheduler: policy ${key} failed, placing by round-robin: ${err.message}`);
          return null;
        });
        if (weights) this.weights.set(name, weights);
        else this.weights.delete(name);
      }
    } finally {
      this.weighing = false;
    }
  }

  private async weighOne(key: string, policy: PolicyConfig | null, nodes: NodeInfo[]): Promise<Map<number, number> | null> {
    const worker = await this.worker(key, policy?.module ?? key);
    if (!worker) return null;
    const now = Date.now();
    const input: PolicyNode[] = nodes.map((node) => {
      const values = this.values.get(node.id);
      const fresh = values && now - values.atMs < VALUES_STALE_MS ? values : null;
      const ports: Record<string, number | null> = {};
      for (const port of worker.info.ports) {
        const link = policy?.links[port];
        const [probe, value] = link ? link.split('/') : ['', ''];
        ports[port] = link && fresh ? fresh.probes[probe]?.[value] ?? null : null;
      }
      return { id: node.id, freeBytes: node.freeBytes, capacityBytes: node.capacityBytes, load1m: fresh?.base.load1m ?? null, loadPerCpu: fresh?.base.loadPerCpu ?? null, ports };
    });
    const attributes = policy ? attributeValues(policy) : attributeValues({ module: key, info: worker.info, attrs: {}, loadedSec: 0 });
    const result = await worker.call('weights', [input, { attributes }]) as Record<string, number> | null;
    if (!result || typeof result !== 'object') throw new Error('weights() returned no object');
    return new Map(nodes.map((node) => [node.id, Number(result[node.id]) || 0]));
  }

  /** The worker of a policy, started (from the modules directory, else the built-ins) if it is not running. */
  private async worker(key: string, module: string): Promise<ModuleWorker | null> {
    const running = this.workers.get(key);
    if (running && !running.failed) return running;
    if (running) this.workers.delete(key);
    const source = (await this.readModule(module).catch(() => null)) ?? builtinModuleSource(module);
    if (source === null) throw new Error(`no module ${module}`);
    const worker = await ModuleWorker.start(module, source, 'policy');
    this.workers.set(key, worker);
    return worker;
  }

  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await Promise.all([...this.workers.values()].map((w) => w.stop()));
    this.workers.clear();
  }
}
