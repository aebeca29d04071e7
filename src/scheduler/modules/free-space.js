// Built-in placement policy: nodes are drawn in proportion to their free
// space, so that fuller nodes take fewer new objects. port_disk_free may be
// linked to a probe's value (disk_probe/disk_free); unlinked, the free space
// the metadata service measures is used.
module.exports = {
  kind: 'policy',
  description: 'places new objects on nodes in proportion to their free space',
  ports: ['port_disk_free'],
  attributes: {},
  weights(nodes) {
    const weights = {};
    for (const node of nodes) {
      const free = node.ports.port_disk_free ?? node.freeBytes;
      weights[node.id] = Math.max(0, Number(free) || 0);
    }
    return weights;
  },
};
