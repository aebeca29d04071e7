// Built-in probe: the node's CPU load (load average over 1 minute, per CPU and in all).
const os = require('os');

module.exports = {
  kind: 'probe',
  description: 'CPU load of the node: 1-minute load average, CPUs, and load per CPU',
  values: ['load_1m', 'cpus', 'load_per_cpu'],
  attributes: {},
  sample() {
    const load = os.loadavg()[0];
    const cpus = os.availableParallelism ? os.availableParallelism() : os.cpus().length;
    return { load_1m: load, cpus, load_per_cpu: load / cpus };
  },
};
