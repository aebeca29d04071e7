// A scheduler module, run in a worker thread of its own (see host.ts): a
// module that loops or grows cannot stall the node's FUSE loop, and is
// stopped by terminating its worker (Node cannot unload a module otherwise).
import { parentPort, workerData } from 'node:worker_threads';
import { createRequire, isBuiltin } from 'node:module';
import vm from 'node:vm';

interface Call { id: number; fn: string; args: unknown[] }
const { source, filename } = workerData as { source: string; filename: string };
const port = parentPort!;

// modules may use Node's built-in modules (os, fs, ...), nothing from kDFS
const requireBuiltin = createRequire(filename);
const safeRequire = (name: string): unknown => {
  if (!isBuiltin(name)) throw new Error(`a scheduler module may only require Node's built-in modules, not ${name}`);
  return requireBuiltin(name);
};
const loaded = { exports: {} as Record<string, unknown> };
try {
  vm.compileFunction(source, ['module', 'exports', 'require'], { filename })(loaded, loaded.exports, safeRequire);
  port.postMessage({ id: 0, result: describe(loaded.exports) });
} catch (err) {
  port.postMessage({ id: 0, error: (err as Error).message ?? String(err) });
}

/** What the module declares, as plain data (it crosses to the main thread). */
function describe(exports: Record<string, unknown>): unknown {
  const list = (value: unknown) => (Array.isArray(value) ? value.map(String) : []);
  return {
    kind: exports.kind, description: String(exports.description ?? ''),
    attributes: JSON.parse(JSON.stringify(exports.attributes ?? {})) as unknown,
    values: list(exports.values), ports: list(exports.ports),
  };
}

port.on('message', (call: Call) => {
  void (async () => {
    try {
      const fn = loaded.exports[call.fn];
      if (typeof fn !== 'function') throw new Error(`the module has no function ${call.fn}`);
      const result = await (fn as (...args: unknown[]) => unknown).apply(loaded.exports, call.args);
      port.postMessage({ id: call.id, result: JSON.parse(JSON.stringify(result ?? null)) as unknown });
    } catch (err) {
      port.postMessage({ id: call.id, error: (err as Error)?.message ?? String(err) });
    }
  })();
});
