// Deadlines for the calls waiting in a pool's queue. Every waiting call has
// the same budget, so they expire in arrival order and one timer, armed for
// the oldest, serves them all: a timer and an AbortController per waiting
// call cost more than the rest of its bookkeeping under load.

export class WaitTicket {
  settled = false;

  constructor(readonly deadline: number, private readonly onExpire: (error?: Error) => void, private readonly onSettle: () => void) {}

  /** The call got its turn: true unless it was already answered. */
  claim(): boolean {
    if (this.settled) return false;
    this.settled = true;
    this.onSettle();
    return true;
  }

  expire(error?: Error): void {
    if (this.settled) return;
    this.settled = true;
    this.onSettle();
    this.onExpire(error);
  }
}

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

  /** onExpire runs once the budget is spent, unless claim() came first. */
  add(onExpire: (error?: Error) => void): WaitTicket {
    const ticket = new WaitTicket(performance.now() + this.budgetMs, onExpire, () => this.live--);
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

  private arm(): void {
    while (this.head < this.entries.length && this.entries[this.head]!.settled) this.head++;
    if (this.head === this.entries.length) {
      this.entries = [];
      this.head = 0;
      this.timer = undefined;
      return;
    }
    if (this.head > 1024) {
      this.entries = this.entries.slice(this.head);
      this.head = 0;
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
