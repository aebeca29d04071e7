// Built-in probe: disk activity of the node, from /proc/diskstats, summed over
// whole disks (not partitions): bytes read and written per second, and the
// share of time a disk was busy (0-1, the busiest disk).
const fs = require('fs');

let last = null;

function totals() {
  const disks = fs.readdirSync('/sys/block').filter((name) => !name.startsWith('loop') && !name.startsWith('ram'));
  const t = { read: 0, written: 0, busyMs: 0, atMs: Date.now() };
  for (const line of fs.readFileSync('/proc/diskstats', 'utf8').split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 14 || !disks.includes(f[2])) continue;
    t.read += Number(f[5]) * 512;
    t.written += Number(f[9]) * 512;
    t.busyMs = Math.max(t.busyMs, Number(f[12]));
  }
  return t;
}

module.exports = {
  kind: 'probe',
  description: 'disk activity of the node: bytes read and written per second, busy share of the busiest disk',
  values: ['read_bytes_per_s', 'write_bytes_per_s', 'busy'],
  attributes: {},
  sample() {
    const now = totals();
    const before = last ?? now;
    last = now;
    const seconds = Math.max(0.001, (now.atMs - before.atMs) / 1000);
    return {
      read_bytes_per_s: (now.read - before.read) / seconds,
      write_bytes_per_s: (now.written - before.written) / seconds,
      busy: Math.min(1, (now.busyMs - before.busyMs) / 1000 / seconds),
    };
  },
};
