/** At most `count` tasks at once; the others wait in the order they asked (first come, first served). */
export class Slots {
  private free: number;
  private readonly waiting: (() => void)[] = [];

  constructor(count: number) {
    if (!Number.isInteger(count) || count < 1) throw new RangeError(`slots: ${count} is not a positive integer`);
    this.free = count;
  }

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    try {
      return await task();
    } finally {
      // The slot passes straight to the next waiter, so no newcomer can overtake it.
      const next = this.waiting.shift();
      if (next === undefined) this.free++;
      else next();
    }
  }
}
