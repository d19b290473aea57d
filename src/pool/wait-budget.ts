// Deadlines for the calls waiting in a pool's queue. Every waiting call has
// the same budget, so they expire in arrival order and one timer, armed for
// the oldest, serves them all: a timer and an AbortController per waiting
// call cost more than the rest of its bookkeeping under load.
//
// Calls also get their turn in arrival order (p-queue is FIFO), so a settled
// ticket is nearly always the oldest one held: it is let go at once. Held
// until its deadline instead, every ticket of a busy queue (10 s of calls)
// kept its call's request and response alive, and the old-generation GC that
// followed cost the gateway a third of its throughput.

export class WaitTicket {
  settled = false;
  private onExpire?: (error?: Error) => void;

  constructor(readonly deadline: number, onExpire: (error?: Error) => void, private readonly onSettle: () => void) {
    this.onExpire = onExpire;
  }

  /** The call got its turn: true unless it was already answered. */
  claim(): boolean {
    if (this.settled) return false;
    this.settle();
    return true;
  }

  expire(error?: Error): void {
    if (this.settled) return;
    const onExpire = this.onExpire!;
    this.settle();
    onExpire(error);
  }

  private settle(): void {
    this.settled = true;
    // What the callback closes over (the call's request and response) is not ours to keep.
    this.onExpire = undefined;
    this.onSettle();
  }
}

/** A list this long with its front settled is copied down to what is still waiting. */
const COMPACT_AT = 1024;

export class WaitBudget {
  private entries: WaitTicket[] = [];
  private head = 0;
  private timer?: NodeJS.Timeout;
  private live = 0;

  constructor(private readonly budgetMs: number) {}

  /** Calls still waiting: neither served nor answered (an answered one may still sit in p-queue). */
  get waiting(): number {
    return this.live;
  }

  /** Tickets still referenced, settled ones behind a waiting one included (for tests). */
  get held(): number {
    return this.entries.length - this.head;
  }

  /** onExpire runs once the budget is spent, unless claim() came first. */
  add(onExpire: (error?: Error) => void): WaitTicket {
    const ticket = new WaitTicket(performance.now() + this.budgetMs, onExpire, () => this.settled());
    this.live++;
    this.entries.push(ticket);
    if (!this.timer) this.arm();
    return ticket;
  }

  /** Answers every call still waiting (the pool is going away). */
  expireAll(error: () => Error): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const waiting = this.entries.slice(this.head);
    this.entries = [];
    this.head = 0;
    for (const ticket of waiting) if (!ticket.settled) ticket.expire(error());
  }

  private settled(): void {
    this.live--;
    this.dropSettledFront();
    if (this.head === this.entries.length) {
      // Nobody waits: no list, no timer.
      clearTimeout(this.timer);
      this.timer = undefined;
      this.entries = [];
      this.head = 0;
    }
  }

  private dropSettledFront(): void {
    while (this.head < this.entries.length && this.entries[this.head]!.settled) this.head++;
    if (this.head > COMPACT_AT) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
    }
  }

  private arm(): void {
    this.dropSettledFront();
    if (this.head === this.entries.length) {
      this.entries = [];
      this.head = 0;
      this.timer = undefined;
      return;
    }
    const delay = Math.max(0, this.entries[this.head]!.deadline - performance.now());
    this.timer = setTimeout(() => this.expireDue(), delay);
    this.timer.unref();
  }

  private expireDue(): void {
    const now = performance.now();
    while (this.head < this.entries.length && this.entries[this.head]!.deadline <= now) this.entries[this.head++]!.expire();
    this.arm();
  }
}
