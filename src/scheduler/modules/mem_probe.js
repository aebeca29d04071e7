// Built-in probe: the node's memory (bytes). ram_free is what the kernel
// says is available to new programs (MemAvailable), not merely unused.
const fs = require('fs');
const os = require('os');

module.exports = {
  kind: 'probe',
  description: 'memory of the node, in bytes',
  values: ['ram_total', 'ram_free'],
  attributes: {},
  sample() {
    const available = /^MemAvailable:\s+(\d+) kB/m.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
    return { ram_total: os.totalmem(), ram_free: available ? Number(available[1]) * 1024 : os.freemem() };
  },
};
