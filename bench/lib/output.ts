// Writes bench/results/<name>.json (DESIGN.md §4 schema) and a Markdown table beside it.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Machine } from './machine.js';
import type { ResultRow } from './stats.js';

export function writeResults(dir: string, name: string, machine: Machine, results: ResultRow[], notes: string[] = []): { json: string; markdown: string } {
  mkdirSync(dir, { recursive: true });
  const json = join(dir, `${name}.json`);
  const markdown = join(dir, `${name}.md`);
  writeFileSync(json, `${JSON.stringify({ machine, results, notes }, null, 2)}\n`);
  writeFileSync(markdown, renderMarkdown(name, machine, results, notes));
  return { json, markdown };
}

export function renderMarkdown(name: string, machine: Machine, results: ResultRow[], notes: string[]): string {
  const lines = [
    `# fnbox bench: ${name}`,
    '',
    `${machine.date} · kernel ${machine.kernel} · cgroup ${machine.cgroupMode} · ${machine.cores} cores (${machine.cpuModel}) · ${machine.memoryGiB} GiB · node ${machine.node}` +
      (machine.docker ? ` · docker ${machine.docker}` : '') + (machine.runc ? ` · ${machine.runc}` : ''),
    '',
  ];
  const byBench = new Map<string, ResultRow[]>();
  for (const row of results) byBench.set(row.bench, [...(byBench.get(row.bench) ?? []), row]);
  for (const [bench, rows] of byBench) {
    lines.push(`## ${bench}`, '', '| system | metric | n | p50 | p90 | p99 | mean | unit | vs fnbox (p50) | conditions |', '|---|---|---:|---:|---:|---:|---:|---|---:|---|');
    for (const row of rows) {
      const fnbox = rows.find((other) => other.system === 'fnbox' && other.metric === row.metric);
      const ratio = fnbox && row.system !== 'fnbox' && fnbox.p50 > 0 ? `${(row.p50 / fnbox.p50).toFixed(1)}×` : '';
      lines.push(`| ${row.system} | ${row.metric} | ${row.n} | ${row.p50} | ${row.p90} | ${row.p99} | ${row.mean} | ${row.unit} | ${ratio} | ${row.conditions ?? ''} |`);
    }
    lines.push('');
  }
  if (notes.length) lines.push('## Notes', '', ...notes.map((note) => `- ${note}`), '');
  return `${lines.join('\n')}\n`;
}
