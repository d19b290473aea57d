// latest.svg: one bar per system per comparison, p50 on a log scale, the
// p99 as a thin whisker. Plain SVG, readable at a glance, no dependencies.
import type { Machine } from './machine.js';
import type { ResultRow } from './stats.js';

const COLORS: Record<string, string> = {
  fnbox: '#1f77b4', unshare: '#8c8c8c', bwrap: '#2ca02c', runc: '#ff7f0e', docker: '#d62728',
  'docker-run': '#d62728', 'docker-exec': '#e377c2', 'docker-http': '#9467bd',
};

function escape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

export function renderChart(machine: Machine, rows: ResultRow[]): string {
  // Comparisons in milliseconds that more than one system took part in, plus fnbox-only latencies.
  const groups = new Map<string, ResultRow[]>();
  for (const row of rows) {
    if (row.unit !== 'ms' || !(row.p50 > 0)) continue;
    const key = `${row.bench} · ${row.metric}`;
    groups.set(key, [...(groups.get(key) ?? []), row]);
  }
  const chosen = [...groups.entries()].filter(([, members]) => members.length > 1 || /^(reset|ready-node|boot-with-200-alive)$/.test(members[0]!.metric));
  const barHeight = 16;
  const left = 250;
  const width = 900;
  const plotWidth = width - left - 120;
  const min = 0.1;
  const max = 10_000;
  const x = (ms: number): number => left + (Math.log10(Math.max(min, Math.min(max, ms)) / min) / Math.log10(max / min)) * plotWidth;
  let y = 70;
  const parts: string[] = [];
  for (const [label, members] of chosen) {
    parts.push(`<text x="10" y="${y + 12}" font-weight="bold">${escape(label)}</text>`);
    y += 18;
    for (const row of members) {
      const color = COLORS[row.system] ?? '#555';
      parts.push(`<text x="24" y="${y + 12}">${escape(row.system)}</text>`);
      parts.push(`<rect x="${left}" y="${y}" width="${Math.max(1, x(row.p50) - left).toFixed(1)}" height="${barHeight - 3}" fill="${color}"/>`);
      parts.push(`<line x1="${x(row.p50).toFixed(1)}" x2="${x(row.p99).toFixed(1)}" y1="${y + 6}" y2="${y + 6}" stroke="#333" stroke-width="1"/>`);
      parts.push(`<text x="${(x(Math.max(row.p50, row.p99)) + 6).toFixed(1)}" y="${y + 11}">${row.p50} ms</text>`);
      y += barHeight;
    }
    y += 8;
  }
  const ticks = [0.1, 1, 10, 100, 1000, 10000].map((ms) =>
    `<line x1="${x(ms)}" x2="${x(ms)}" y1="60" y2="${y}" stroke="#ddd"/><text x="${x(ms)}" y="55" text-anchor="middle">${ms >= 1000 ? `${ms / 1000} s` : `${ms} ms`}</text>`);
  const title = `fnbox vs peers — p50 (bar) and p99 (whisker), log scale`;
  const subtitle = `${machine.date.slice(0, 10)} · kernel ${machine.kernel} · cgroup ${machine.cgroupMode} · ${machine.cores} cores · node ${machine.node}${machine.docker ? ` · docker ${machine.docker}` : ''}`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${y + 20}" font-family="sans-serif" font-size="12">
<rect width="100%" height="100%" fill="white"/>
<text x="10" y="20" font-size="15" font-weight="bold">${escape(title)}</text>
<text x="10" y="38" fill="#555">${escape(subtitle)}</text>
${ticks.join('\n')}
${parts.join('\n')}
</svg>
`;
}
