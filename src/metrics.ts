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
  readonly sandboxes = new Gauge({ name: 'fnbox_sandboxes', help: 'Live sandboxes by function and state (idle, busy, booting)', labelNames: ['function', 'state'], registers: [this.registry] });
  readonly boots = new Counter({ name: 'fnbox_sandbox_boots_total', help: 'Sandboxes booted, by function and result', labelNames: ['function', 'result'], registers: [this.registry] });
  readonly evictions = new Counter({ name: 'fnbox_evictions_total', help: 'Idle sandboxes destroyed to make room for another function', labelNames: ['function'], registers: [this.registry] });
  readonly oomKills = new Counter({ name: 'fnbox_oom_kills_total', help: 'Calls ended by the OOM killer', labelNames: ['function'], registers: [this.registry] });
  readonly timeouts = new Counter({ name: 'fnbox_timeouts_total', help: 'Calls that ran past their deadline', labelNames: ['function'], registers: [this.registry] });
  readonly throttled = new Counter({ name: 'fnbox_throttled_total', help: 'Calls refused with 429', labelNames: ['function', 'reason'], registers: [this.registry] });
  readonly capacityBytes = new Gauge({ name: 'fnbox_capacity_bytes', help: 'Memory reserved by sandboxes, and the limit', labelNames: ['kind'], registers: [this.registry] });

  constructor() {
    collectDefaultMetrics({ register: this.registry, prefix: 'fnbox_gateway_' });
  }
}
