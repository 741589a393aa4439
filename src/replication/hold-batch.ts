import { type HoldMove, moveHoldsTogether } from './holds.js';

/**
 * Gathers the hold moves of a tree's members until `flush`, then moves them all with a few commands per host
 * (moveHoldsTogether): one `zfs hold` and one `zfs release` per host instead of four commands per member, most
 * of them round trips to the source. Each member's promise settles with its own outcome. Until then, a member's
 * old base still carries the tag on both sides, so waiting is safe: only the new base is not held yet.
 */
export class HoldBatch {
  private queued: { move: HoldMove; settle: (outcome: PromiseSettledResult<void>) => void }[] = [];

  move(move: HoldMove): Promise<void> {
    return new Promise((resolve, reject) =>
      this.queued.push({
        move,
        settle: (outcome) => (outcome.status === 'fulfilled' ? resolve() : reject(outcome.reason)),
      }),
    );
  }

  async flush(): Promise<void> {
    const taken = this.queued.splice(0);
    if (taken.length === 0) return;
    const outcomes = await moveHoldsTogether(taken.map(({ move }) => move)).catch(
      (error: unknown): PromiseSettledResult<void>[] => taken.map(() => ({ status: 'rejected', reason: error })),
    );
    taken.forEach(({ settle }, index) => settle(outcomes[index]!));
  }
}
