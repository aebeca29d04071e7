// Built-in probe: space on the disk of the node's kDFS directory (bytes).
const fs = require('fs');

module.exports = {
  kind: 'probe',
  description: 'space on the disk holding the node\'s kDFS directory, in bytes',
  values: ['disk_total', 'disk_free'],
  attributes: {},
  sample(context) {
    const s = fs.statfsSync(context.nodeDir);
    return { disk_total: s.blocks * s.bsize, disk_free: s.bavail * s.bsize };
  },
};
