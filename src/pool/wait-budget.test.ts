import { describe, expect, it } from 'vitest';
import { WaitBudget } from './wait-budget.js';

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('WaitBudget', () => {
  it('expires waiting calls in arrival order once their budget is spent', async () => {
    const budget = new WaitBudget(30);
    const expired: number[] = [];
    budget.add(() => expired.push(1));
    await sleep(10);
    budget.add(() => expired.push(2));
    await sleep(25);
    expect(expired).toEqual([1]);
    await sleep(25);
    expect(expired).toEqual([1, 2]);
  });

  it('a claimed call never expires, and a claim after expiry is refused', async () => {
    const budget = new WaitBudget(20);
    const expired: string[] = [];
    const served = budget.add(() => expired.push('served'));
    const late = budget.add(() => expired.push('late'));
    expect(served.claim()).toBe(true);
    await sleep(50);
    expect(expired).toEqual(['late']);
    expect(late.claim()).toBe(false);
    expect(served.claim()).toBe(false);
  });

  it('counts the calls still waiting: a claim or an expiry ends the wait', async () => {
    const budget = new WaitBudget(20);
    const first = budget.add(() => {});
    budget.add(() => {});
    budget.add(() => {});
    expect(budget.waiting).toBe(3);
    first.claim();
    expect(budget.waiting).toBe(2);
    await sleep(50);
    expect(budget.waiting).toBe(0);
  });

  it('expireAll answers every waiting call with its own error', () => {
    const budget = new WaitBudget(60_000);
    const errors: Array<Error | undefined> = [];
    budget.add((error) => errors.push(error)).claim();
    budget.add((error) => errors.push(error));
    budget.add((error) => errors.push(error));
    let made = 0;
    budget.expireAll(() => new Error(`gone ${++made}`));
    expect(errors.map((e) => e?.message)).toEqual(['gone 1', 'gone 2']);
  });

  it('keeps working across many waiting calls (the list is compacted)', async () => {
    const budget = new WaitBudget(5);
    let expired = 0;
    for (let i = 0; i < 3000; i++) {
      const ticket = budget.add(() => expired++);
      if (i % 3 !== 0) ticket.claim();
    }
    await sleep(40);
    expect(expired).toBe(1000);
  });

  it('lets a served call go at once: a busy queue holds only what still waits', () => {
    const budget = new WaitBudget(60_000);
    // Sustained load: each call gets its turn while newer ones arrive.
    let oldest = budget.add(() => {});
    for (let i = 0; i < 10_000; i++) {
      const next = budget.add(() => {});
      oldest.claim();
      oldest = next;
    }
    expect(budget.held).toBe(1);
    // Out of order: a settled ticket behind a waiting one stays until the front moves.
    const a = budget.add(() => {});
    const b = budget.add(() => {});
    b.claim();
    expect(budget.held).toBe(3);
    oldest.claim();
    expect(budget.held).toBe(2);
    a.claim();
    expect(budget.held).toBe(0);
    expect(budget.waiting).toBe(0);
  });

  it('expiry still works after the list emptied and filled again', async () => {
    const budget = new WaitBudget(10);
    budget.add(() => {}).claim();
    const expired: string[] = [];
    budget.add(() => expired.push('late'));
    await sleep(40);
    expect(expired).toEqual(['late']);
    expect(budget.held).toBe(0);
  });
});
