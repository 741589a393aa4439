import { type HoldMove, moveHoldsTogether } from './holds.js';

/**
 * Gathers the hold moves of a tree's members, then moves them all with a few commands per host
 * (moveHoldsTogether): one `zfs hold` and one `zfs release` per host instead of four commands per member, most
 * of them round trips to the source. Each member's promise settles with its own outcome. Meanwhile a member's
 * old base still carries the tag on both sides, but its new base carries none, so the source's pruning could
 * take it: no move waits longer than `windowMs` (a long transfer of another member must not stretch that).
 */
export class HoldBatch {
  private queued: { move: HoldMove; settle: (outcome: PromiseSettledResult<void>) => void }[] = [];
  private deadline: NodeJS.Timeout | undefined;

  constructor(private readonly windowMs: number) {}

  move(move: HoldMove): Promise<void> {
    if (this.queued.length === 0) this.deadline = setTimeout(() => void this.flush(), this.windowMs);
    return new Promise((resolve, reject) =>
      this.queued.push({
        move,
        settle: (outcome) => (outcome.status === 'fulfilled' ? resolve() : reject(outcome.reason)),
      }),
    );
  }

  async flush(): Promise<void> {
    clearTimeout(this.deadline);
    const taken = this.queued.splice(0);
    if (taken.length === 0) return;
    const outcomes = await moveHoldsTogether(taken.map(({ move }) => move)).catch(
      (error: unknown): PromiseSettledResult<void>[] => taken.map(() => ({ status: 'rejected', reason: error })),
    );
    taken.forEach(({ settle }, index) => settle(outcomes[index]!));
  }
}
