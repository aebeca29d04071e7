// The benchmark's results: one table on stdout, JSON and an SVG chart on disk.

export interface Figure {
  median: number | null;
  runs: number[];
  error?: string;
}

export interface Row {
  workload: string;
  unit: string;
  figures: Record<string, Figure>;
  /** Of the medians: kdfs (node 1's mount) / local and / glusterfs, and kdfs2 (node 2's
   *  mount) / kdfs (node 1's) and / glusterfs. */
  ratios: {
    local: number | null; glusterfs: number | null; node2ToNode1: number | null; node2ToGlusterfs: number | null; replicas2To1?: number | null; protectedToUnprotected?: number | null;
    /** Node 2's mount with the metadata in etcd, / node 2's with level, and / glusterfs. */
    etcdToLevel?: number | null; etcdToGlusterfs?: number | null;
  };
}

export interface Results {
  date: string;
  machine: { cpus: number; memoryGiB: number; kernel: string };
  runs: number;
  quick: boolean;
  systems: Record<string, string>;
  fuseCeiling: { write: number; read: number } | string;
  rows: Row[];
  memory: { writtenMiB: number; peakRssMiB: number } | string;
  checkpoint: CheckpointResults | string;
}

/** The checkpoint workload (bench/checkpoint.ts): aggregate MiB/s of each target. */
export interface CheckpointResults {
  writers: number;
  stateMiB: number;
  labels: Record<string, string>;
  figures: Record<string, Figure>;
  ratios: { localFirst1ToLocal: number | null; localFirst2ToLocal: number | null; roundRobin2ToLocal: number | null; localFirst1ToGlusterfs: number | null };
}

/** kdfs is the cluster through node 1's mount (the root node, serving the metadata in its
 *  own process), kdfs2 the same cluster through node 2's (metadata over the network);
 *  both with two copies of each object (the default), and kdfs1r through node 1's
 *  mount in a directory of files with one copy. */
export const SYSTEMS = ['local', 'kdfs', 'kdfs2', 'kdfs1r', 'kdfsprot', 'kdfsopen', 'kdfsetcd2', 'glusterfs'] as const;

export const LABELS: Record<string, string> = {
  local: 'local', kdfs: 'kdfs node 1', kdfs2: 'kdfs node 2', kdfs1r: 'kdfs 1 copy', kdfsprot: 'kdfs protected', kdfsopen: 'kdfs unprotected',
  kdfsetcd2: 'kdfs etcd node 2', glusterfs: 'glusterfs',
};

export function median(values: number[]): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

const format = (value: number | null) => (value === null ? '-' : value >= 100 ? value.toFixed(0) : value.toFixed(1));
const ratio = (value: number | null) => (value === null ? '-' : `${value.toFixed(2)}x`);

export function table(results: Results): string {
  const header = ['workload', 'unit', ...SYSTEMS.map((s) => LABELS[s]), 'node 1/local', 'node 1/glusterfs', 'node 2/node 1', 'node 2/glusterfs', '2 copies/1', 'protected/unprotected', 'etcd/level (node 2)', 'etcd node 2/glusterfs'];
  const rows = results.rows.map((row) => [
    row.workload, row.unit, ...SYSTEMS.map((s) => format(row.figures[s]?.median ?? null)),
    ratio(row.ratios.local), ratio(row.ratios.glusterfs), ratio(row.ratios.node2ToNode1), ratio(row.ratios.node2ToGlusterfs), ratio(row.ratios.replicas2To1 ?? null), ratio(row.ratios.protectedToUnprotected ?? null),
    ratio(row.ratios.etcdToLevel ?? null), ratio(row.ratios.etcdToGlusterfs ?? null),
  ]);
  const widths = header.map((_, c) => Math.max(header[c].length, ...rows.map((r) => r[c].length)));
  const line = (cells: string[]) => cells.map((cell, c) => (c < 1 ? cell.padEnd(widths[c]) : cell.padStart(widths[c]))).join('  ');
  const out = [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)];
  const ceiling = typeof results.fuseCeiling === 'string' ? results.fuseCeiling : `write ${results.fuseCeiling.write} MiB/s, read ${results.fuseCeiling.read} MiB/s`;
  out.push('', `FUSE ceiling (../shared/tools/fuse-ceiling.sh): ${ceiling}`);
  const memory = typeof results.memory === 'string' ? `not measured: ${results.memory}` : `peak ${results.memory.peakRssMiB.toFixed(0)} MiB while writing ${results.memory.writtenMiB} MiB`;
  out.push(`kdfs node 1 mount process resident memory: ${memory}`);
  if (typeof results.checkpoint === 'string') {
    out.push(`checkpoint: not measured: ${results.checkpoint}`);
  } else {
    const c = results.checkpoint;
    out.push('', `checkpoint: ${c.writers} writers (one per kDFS node), ${c.stateMiB} MiB each, then commit; aggregate MiB/s`);
    for (const [name, figure] of Object.entries(c.figures)) out.push(`  ${c.labels[name].padEnd(28)} ${format(figure.median).padStart(8)}${figure.error ? `  (${figure.error})` : ''}`);
    out.push(`  local-first 1 copy/local ${ratio(c.ratios.localFirst1ToLocal)}, local-first 2 copies/local ${ratio(c.ratios.localFirst2ToLocal)}, round-robin 2 copies/local ${ratio(c.ratios.roundRobin2ToLocal)}, local-first 1 copy/glusterfs ${ratio(c.ratios.localFirst1ToGlusterfs)}`);
  }
  for (const [system, state] of Object.entries(results.systems)) if (state !== 'ok') out.push(`${system}: ${state}`);
  out.push(`medians of ${results.runs} run${results.runs > 1 ? 's' : ''}${results.quick ? ' (quick: small sizes, not comparable)' : ''}`);
  return out.join('\n');
}

const COLOURS: Record<string, string> = { local: '#8c8c8c', kdfs: '#1f77b4', kdfs2: '#9ecae1', kdfs1r: '#2ca02c', kdfsprot: '#17becf', kdfsopen: '#9467bd', kdfsetcd2: '#ff7f0e', glusterfs: '#d62728' };

const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;');

/** One group of bars per workload, each group scaled to its largest figure. */
export function chart(results: Results): string {
  const rowHeight = 16;
  const groupGap = 14;
  const labelWidth = 430;
  const barWidth = 360;
  const groups = results.rows.length;
  const height = 60 + groups * (SYSTEMS.length * rowHeight + groupGap);
  const parts = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${labelWidth + barWidth + 120}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">kDFS benchmark, ${escape(results.date)}: medians of ${results.runs} runs (higher is better)</text>`,
  ];
  SYSTEMS.forEach((system, i) => {
    parts.push(`<rect x="${10 + i * 110}" y="32" width="12" height="12" fill="${COLOURS[system]}"/><text x="${26 + i * 110}" y="43">${LABELS[system]}</text>`);
  });
  let y = 60;
  for (const row of results.rows) {
    const values = SYSTEMS.map((s) => row.figures[s]?.median ?? null);
    const max = Math.max(1e-9, ...values.map((v) => v ?? 0));
    parts.push(`<text x="10" y="${y + rowHeight * 1.6}">${escape(row.workload)}</text>`);
    parts.push(`<text x="10" y="${y + rowHeight * 2.6}" fill="#555">${escape(row.unit)}; node 1/local ${ratio(row.ratios.local)}, node 1/glusterfs ${ratio(row.ratios.glusterfs)}</text>`);
    parts.push(`<text x="10" y="${y + rowHeight * (SYSTEMS.length - 0.4)}" fill="#555">node 2/node 1 ${ratio(row.ratios.node2ToNode1)}, node 2/glusterfs ${ratio(row.ratios.node2ToGlusterfs)}, 2 copies/1 ${ratio(row.ratios.replicas2To1 ?? null)}</text>`);
    SYSTEMS.forEach((system, i) => {
      const value = values[i];
      const width = value === null ? 0 : (value / max) * barWidth;
      const top = y + i * rowHeight;
      parts.push(`<rect x="${labelWidth}" y="${top + 2}" width="${width.toFixed(1)}" height="${rowHeight - 4}" fill="${COLOURS[system]}"/>`);
      parts.push(`<text x="${labelWidth + width + 4}" y="${top + rowHeight - 4}">${value === null ? 'n/a' : format(value)}</text>`);
    });
    y += SYSTEMS.length * rowHeight + groupGap;
  }
  parts.push('</svg>');
  return parts.join('\n');
}
