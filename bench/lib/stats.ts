// Percentiles and the result schema of DESIGN.md §4.

export interface ResultRow {
  bench: string;
  system: string;
  metric: string;
  unit: string;
  n: number;
  p50: number;
  p90: number;
  p99: number;
  mean: number;
  /** Conditions that make the number comparable (concurrency, limits, notes). */
  conditions?: string;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index]!;
}

export function summarize(bench: string, system: string, metric: string, unit: string, samples: number[], conditions?: string): ResultRow {
  const sorted = [...samples].sort((a, b) => a - b);
  const mean = sorted.reduce((sum, value) => sum + value, 0) / Math.max(1, sorted.length);
  const round = (value: number): number => Math.round(value * 1000) / 1000;
  return {
    bench, system, metric, unit, n: sorted.length,
    p50: round(percentile(sorted, 50)), p90: round(percentile(sorted, 90)), p99: round(percentile(sorted, 99)), mean: round(mean),
    ...(conditions ? { conditions } : {}),
  };
}

/** A throughput row: `count` events in `seconds`, in the same schema (every percentile is the rate). */
export function rateRow(bench: string, system: string, metric: string, unit: string, count: number, seconds: number, conditions?: string): ResultRow {
  const rate = Math.round(count / seconds);
  return { bench, system, metric, unit, n: count, p50: rate, p90: rate, p99: rate, mean: rate, ...(conditions ? { conditions } : {}) };
}
