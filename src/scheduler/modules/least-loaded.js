// Built-in placement policy: the less loaded a node's CPUs, the more new
// objects it takes (weight 1 / (0.05 + load per CPU)^2: an idle node takes
// most, a loaded one still some). port_load may be linked to a probe's value
// (load_probe/load_per_cpu); unlinked, the load every node reports is used.
module.exports = {
  kind: 'policy',
  description: 'places new objects on the nodes whose CPUs are least loaded',
  ports: ['port_load'],
  attributes: { sharpness: { default: 2, min: 1, max: 8, description: 'how strongly load counts: the power of 1 / load' } },
  weights(nodes, context) {
    const power = Number(context.attributes.sharpness);
    const weights = {};
    for (const node of nodes) {
      const load = node.ports.port_load ?? node.loadPerCpu;
      weights[node.id] = load === null || load === undefined ? 0 : 1 / Math.pow(0.05 + Math.max(0, Number(load)), power);
    }
    return weights;
  },
};
