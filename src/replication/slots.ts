/** At most `count` tasks at once; the others wait in the order they asked (first come, first served). */
export class Slots {
  private free: number;
  private readonly waiting: (() => void)[] = [];

  /** `onIdle` is told whenever no task holds a slot or waits for one (checked again once pending callbacks ran). */
  constructor(
    private readonly count: number,
    private readonly onIdle?: () => void,
  ) {
    if (!Number.isInteger(count) || count < 1) throw new RangeError(`slots: ${count} is not a positive integer`);
    this.free = count;
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    await this.acquire();
    try {
      return await task();
    } finally {
      this.release();
    }
  }

  /**
   * From inside run(): does `task` without the caller's slot, which others use meanwhile, then waits its turn for
   * a slot again. For waiting on something that only comes once the others are idle (see HoldBatch).
   */
  async aside<T>(task: () => Promise<T>): Promise<T> {
    this.release();
    try {
      return await task();
    } finally {
      await this.acquire();
    }
  }

  private async acquire(): Promise<void> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  private release(): void {
    // The slot passes straight to the next waiter, so no newcomer can overtake it.
    const next = this.waiting.shift();
    if (next !== undefined) {
      next();
      return;
    }
    this.free++;
    // Checked after pending callbacks: a task that ends may let others start (its children) right after.
    if (this.free === this.count && this.onIdle !== undefined) {
      setImmediate(() => {
        if (this.free === this.count) this.onIdle?.();
      });
    }
  }
}
