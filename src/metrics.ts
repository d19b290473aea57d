// Prometheus metrics (prom-client), one registry per gateway. Lower layers
// get this object injected; nothing here knows about HTTP.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

export class Metrics {
  readonly registry = new Registry();
  readonly invocations = new Counter({ name: 'fnbox_invocations_total', help: 'Invocations by function and outcome', labelNames: ['function', 'outcome'], registers: [this.registry] });
  readonly duration = new Histogram({
    name: 'fnbox_invocation_duration_seconds', help: 'Invocation wall time, queue wait excluded', labelNames: ['function'], registers: [this.registry],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
  });
  readonly queueWait = new Histogram({
    name: 'fnbox_queue_wait_seconds', help: 'Time a call waited for a sandbox', labelNames: ['function'], registers: [this.registry],
    buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
  });
  readonly coldStarts = new Counter({ name: 'fnbox_cold_starts_total', help: 'Calls that waited for a sandbox to boot', labelNames: ['function'], registers: [this.registry] });
  // Counted when scraped, not set on every call: the hot path stays free of it.
  readonly sandboxes: Gauge = new Gauge({ name: 'fnbox_sandboxes', help: 'Live sandboxes by function and state (idle, busy, booting)', labelNames: ['function', 'state'], registers: [this.registry], collect: () => this.countSandboxes() });
  private sandboxSource?: () => Iterable<SandboxCount>;
  private spareSource?: () => Iterable<{ shape: string; ready: number; booting: number }>;
  readonly spares: Gauge = new Gauge({ name: 'fnbox_spare_sandboxes', help: 'Spare runtimes (started, no function yet) by shape and state (ready, booting)', labelNames: ['shape', 'state'], registers: [this.registry], collect: () => this.countSpares() });
  readonly spareAdoptions = new Counter({ name: 'fnbox_spare_adoptions_total', help: 'Cold starts served by adopting a spare runtime instead of booting', labelNames: ['function'], registers: [this.registry] });
  readonly boots = new Counter({ name: 'fnbox_sandbox_boots_total', help: 'Sandboxes booted, by function and result', labelNames: ['function', 'result'], registers: [this.registry] });
  readonly evictions = new Counter({ name: 'fnbox_evictions_total', help: 'Idle sandboxes destroyed to make room for another function', labelNames: ['function'], registers: [this.registry] });
  readonly oomKills = new Counter({ name: 'fnbox_oom_kills_total', help: 'Calls ended by the OOM killer', labelNames: ['function'], registers: [this.registry] });
  readonly timeouts = new Counter({ name: 'fnbox_timeouts_total', help: 'Calls that ran past their deadline', labelNames: ['function'], registers: [this.registry] });
  readonly throttled = new Counter({ name: 'fnbox_throttled_total', help: 'Calls refused with 429', labelNames: ['function', 'reason'], registers: [this.registry] });
  readonly capacityBytes = new Gauge({ name: 'fnbox_capacity_bytes', help: 'Memory reserved by sandboxes, and the limit', labelNames: ['kind'], registers: [this.registry] });
  private bufferedSource?: () => { usedBytes: number; limitBytes: number };
  readonly bufferedBytes: Gauge = new Gauge({
    name: 'fnbox_buffered_bytes', help: 'Invocation payloads and unsent responses held in the gateway, and the limit (--max-buffered-mb)', labelNames: ['kind'], registers: [this.registry],
    collect: () => {
      const budget = this.bufferedSource?.();
      if (!budget) return;
      this.bufferedBytes.set({ kind: 'used' }, budget.usedBytes);
      this.bufferedBytes.set({ kind: 'limit' }, budget.limitBytes);
    },
  });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'fnbox_gateway_' });
  }

  /**
   * Drops a deleted function's series: a gateway that sees many functions
   * come and go must not keep every one it ever served.
   */
  async forget(functionName: string): Promise<void> {
    const perFunction = [this.invocations, this.duration, this.queueWait, this.coldStarts, this.spareAdoptions, this.boots, this.evictions, this.oomKills, this.timeouts, this.throttled];
    for (const metric of perFunction) {
      const { values } = await metric.get();
      const labelSets = new Map<string, Record<string, string | number>>();
      for (const { labels } of values as Array<{ labels: Record<string, string | number> }>) {
        if (labels.function !== functionName) continue;
        // A histogram lists each bucket (`le`) of one series.
        const series = Object.fromEntries(Object.entries(labels).filter(([key]) => key !== 'le'));
        labelSets.set(JSON.stringify(series), series);
      }
      for (const series of labelSets.values()) (metric as Counter<string>).remove(series);
    }
  }

  /** Where fnbox_buffered_bytes comes from (the gateway's body budget), read at scrape time. */
  countBufferedWith(source: () => { usedBytes: number; limitBytes: number }): void {
    this.bufferedSource = source;
  }

  /** Where fnbox_sandboxes comes from (the dispatcher's pools), read at scrape time. */
  countSandboxesWith(source: () => Iterable<SandboxCount>): void {
    this.sandboxSource = source;
  }

  countSparesWith(source: () => Iterable<{ shape: string; ready: number; booting: number }>): void {
    this.spareSource = source;
  }

  private countSpares(): void {
    this.spares.reset();
    for (const { shape, ready, booting } of this.spareSource?.() ?? []) {
      this.spares.set({ shape, state: 'ready' }, ready);
      this.spares.set({ shape, state: 'booting' }, booting);
    }
  }

  private countSandboxes(): void {
    this.sandboxes.reset();
    const totals = new Map<string, Record<SandboxState, number>>();
    for (const { functionName, idle, busy, booting } of this.sandboxSource?.() ?? []) {
      const sum = totals.get(functionName) ?? { idle: 0, busy: 0, booting: 0 };
      sum.idle += idle;
      sum.busy += busy;
      sum.booting += booting;
      totals.set(functionName, sum);
    }
    for (const [fn, counts] of totals) {
      for (const state of SANDBOX_STATES) this.sandboxes.set({ function: fn, state }, counts[state]);
    }
  }
}

const SANDBOX_STATES = ['idle', 'busy', 'booting'] as const;
type SandboxState = (typeof SANDBOX_STATES)[number];

/** One pool's sandboxes (several pools of one function while a revision drains). */
export interface SandboxCount {
  functionName: string;
  idle: number;
  busy: number;
  booting: number;
}
