// The scheduler on every node: follows the configuration the metadata service
// keeps, runs the loaded probes (each in its own worker, every probe_period),
// and sends their values, with the node's base load, to the service. The
// control tree (tree.ts) reads and changes the configuration through here.
import os from 'node:os';
import { readFileSync } from 'node:fs';
import { E, FsError } from '../common/errno.js';
import { log } from '../common/log.js';
import type { MetaClient } from '../meta/client.js';
import { SCHEDULER_CHANGE, SCHEDULER_GET, SCHEDULER_PUT_VALUES } from '../rpc/messages.js';
import { PROBE_PERIOD_ATTR, attributeValues, emptyConfig, type ConfigOp, type LoadedModule, type ModuleInfo, type SchedulerConfig } from './config.js';
import { ModuleWorker, MODULE_CALL_TIMEOUT_MS } from './host.js';
import { builtinModuleSource } from './modules.js';
import type { NodeValues } from './service.js';

/** How often the node checks the configuration without being asked. */
const SYNC_INTERVAL_MS = 1000;
/** How often the base values (load, memory) are sent when no probe sends them. */
const BASE_INTERVAL_MS = 2000;
/** A read of a value waits this long at most for a probe's first sample. */
const FIRST_SAMPLE_WAIT_MS = MODULE_CALL_TIMEOUT_MS + 1000;

interface RunningProbe {
  loaded: LoadedModule;
  worker: ModuleWorker | null;
  timer: NodeJS.Timeout | null;
  values: Record<string, number> | null;
  samples: number;
  error: string | null;
  periodMs: number;
  /** Resolves at the first sample (or failure). */
  firstSample: Promise<void>;
  sampled: () => void;
}

export interface Reply { config: SchedulerConfig; values: Record<string, NodeValues>; weights: Record<string, Record<string, number>> }

export class NodeScheduler {
  private config: SchedulerConfig = emptyConfig();
  private readonly probes = new Map<string, RunningProbe>();
  private syncTimer: NodeJS.Timeout | null = null;
  private baseTimer: NodeJS.Timeout | null = null;
  private publishing = false;
  private publishAgain = false;
  private stopped = false;

  constructor(
    private readonly meta: MetaClient,
    readonly nodeId: number,
    private readonly nodeDir: string,
    /** A module's source from the modules directory in kDFS (null: none there). */
    readonly readModule: (name: string) => Promise<string | null>,
  ) {}

  start(): void {
    this.syncTimer = setInterval(() => void this.fetch().catch((err: Error) => log.debug(`scheduler sync: ${err.message}`)), SYNC_INTERVAL_MS);
    this.syncTimer.unref();
    this.baseTimer = setInterval(() => void this.publish(), BASE_INTERVAL_MS);
    this.baseTimer.unref();
  }

  /** The service's current state; the probes running here follow it. */
  async fetch(): Promise<Reply> {
    return this.follow(await this.meta.scheduler(SCHEDULER_GET));
  }

  /** Applies a change at the service (FsError with its errno if refused). */
  async change(op: ConfigOp): Promise<Reply> {
    return this.follow(await this.meta.scheduler(SCHEDULER_CHANGE, JSON.stringify(op)));
  }

  /** What module `name` declares; ENOENT if there is no such module, EINVAL if it is not a valid `kind`. */
  async describe(name: string, kind: ModuleInfo['kind']): Promise<ModuleInfo> {
    const worker = await this.startModule(name, kind);
    await worker.stop();
    return worker.info;
  }

  /** This node's latest value of a probe's value, waiting for a probe just loaded to sample. */
  async localValue(probe: string, value: string): Promise<number> {
    const running = this.probes.get(probe);
    if (!running) throw new FsError(E.ENOENT);
    await Promise.race([running.firstSample, new Promise((resolve) => setTimeout(resolve, FIRST_SAMPLE_WAIT_MS).unref())]);
    if (running.error) throw new FsError(E.EIO, `probe ${probe}: ${running.error}`);
    const found = running.values?.[value];
    if (found === undefined) throw new FsError(E.EAGAIN, `probe ${probe} has no sample yet`);
    return found;
  }

  sampleCount(probe: string): number {
    return this.probes.get(probe)?.samples ?? 0;
  }

  private follow(reply: { config: string; values: string; weights: string }): Reply {
    const parsed: Reply = {
      config: JSON.parse(reply.config || '{}') as SchedulerConfig,
      values: JSON.parse(reply.values || '{}') as Record<string, NodeValues>,
      weights: JSON.parse(reply.weights || '{}') as Record<string, Record<string, number>>,
    };
    if (!parsed.config.probes) parsed.config = emptyConfig();
    if (parsed.config.version !== this.config.version) {
      this.config = parsed.config;
      this.reconcile();
    }
    return parsed;
  }

  /** Starts the probes loaded and not running here, stops the unloaded ones, and re-times changed periods. */
  private reconcile(): void {
    if (this.stopped) return;
    for (const [name, running] of this.probes) {
      if (!this.config.probes[name]) {
        this.stopProbe(running);
        this.probes.delete(name);
      }
    }
    for (const [name, loaded] of Object.entries(this.config.probes)) {
      const running = this.probes.get(name);
      const periodMs = Number(attributeValues(loaded)[PROBE_PERIOD_ATTR]);
      if (running) {
        running.loaded = loaded;
        if (running.periodMs !== periodMs) {
          running.periodMs = periodMs;
          if (running.timer) clearTimeout(running.timer);
          if (running.worker) this.schedule(name, running, periodMs);
        }
        continue;
      }
      let sampled!: () => void;
      const firstSample = new Promise<void>((resolve) => (sampled = resolve));
      const probe: RunningProbe = { loaded, worker: null, timer: null, values: null, samples: 0, error: null, periodMs, firstSample, sampled };
      this.probes.set(name, probe);
      void this.startModule(name, 'probe').then((worker) => {
        if (this.probes.get(name) !== probe) return void worker.stop();
        probe.worker = worker;
        void this.sample(name, probe);
      }, (err: Error) => {
        probe.error = err.message;
        probe.sampled();
        log.warn(`scheduler: probe ${name} cannot start here: ${err.message}`);
      });
    }
  }

  private schedule(name: string, probe: RunningProbe, delayMs: number): void {
    probe.timer = setTimeout(() => void this.sample(name, probe), delayMs);
    probe.timer.unref();
  }

  private async sample(name: string, probe: RunningProbe): Promise<void> {
    if (this.probes.get(name) !== probe || !probe.worker) return;
    try {
      const context = { nodeId: this.nodeId, nodeDir: this.nodeDir, attributes: attributeValues(probe.loaded) };
      const result = await probe.worker.call('sample', [context]) as Record<string, unknown> | null;
      const values: Record<string, number> = {};
      for (const value of probe.loaded.info.values) {
        const n = Number(result?.[value]);
        if (Number.isFinite(n)) values[value] = n;
      }
      probe.values = values;
      probe.error = null;
      probe.samples++;
    } catch (err) {
      probe.error = (err as Error).message;
      if (probe.worker.failed) {
        // a module that overran its limits is started again at the next period
        const restarted = await this.startModule(name, 'probe').catch(() => null);
        if (this.probes.get(name) === probe && restarted) probe.worker = restarted;
        else void restarted?.stop();
      }
    }
    probe.sampled();
    void this.publish();
    if (this.probes.get(name) === probe) this.schedule(name, probe, probe.periodMs);
  }

  private async startModule(name: string, kind: ModuleInfo['kind']): Promise<ModuleWorker> {
    const source = (await this.readModule(name)) ?? builtinModuleSource(name);
    if (source === null) throw new FsError(E.ENOENT, `no ${kind} module ${name}`);
    return ModuleWorker.start(name, source, kind);
  }

  /** Sends this node's values to the service (one send at a time; a change meanwhile sends again). */
  private async publish(): Promise<void> {
    if (this.publishing) {
      this.publishAgain = true;
      return;
    }
    this.publishing = true;
    try {
      do {
        this.publishAgain = false;
        await this.meta.scheduler(SCHEDULER_PUT_VALUES, JSON.stringify(this.values()), this.nodeId);
      } while (this.publishAgain && !this.stopped);
    } catch (err) {
      log.debug(`scheduler: sending values: ${(err as Error).message}`);
    } finally {
      this.publishing = false;
    }
  }

  private values(): NodeValues {
    const load1m = os.loadavg()[0];
    const cpus = os.availableParallelism();
    const probes: NodeValues['probes'] = {};
    const errors: NodeValues['errors'] = {};
    for (const [name, probe] of this.probes) {
      if (probe.values) probes[name] = probe.values;
      if (probe.error) errors[name] = probe.error;
    }
    return { atMs: Date.now(), base: { load1m, cpus, loadPerCpu: load1m / cpus, ramFreeBytes: memAvailableBytes() }, probes, errors };
  }

  private stopProbe(probe: RunningProbe): void {
    if (probe.timer) clearTimeout(probe.timer);
    void probe.worker?.stop();
    probe.sampled();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.syncTimer) clearInterval(this.syncTimer);
    if (this.baseTimer) clearInterval(this.baseTimer);
    for (const probe of this.probes.values()) this.stopProbe(probe);
    this.probes.clear();
  }
}

function memAvailableBytes(): number {
  try {
    const match = /^MemAvailable:\s+(\d+) kB/m.exec(readFileSync('/proc/meminfo', 'utf8'));
    return match ? Number(match[1]) * 1024 : os.freemem();
  } catch {
    return os.freemem();
  }
}
