import type { Logger } from '../log/logger.js';
import type { ZfsOperations } from '../zfs/host.js';
import type { Snapshot } from '../zfs/types.js';

export interface HoldSide {
  zfs: ZfsOperations;
  dataset: string;
  /** This side's copy of the snapshot that must carry the tag from now on. */
  keep: Snapshot;
  /** This side's snapshots as last listed: their userrefs say where else a hold may be. */
  snapshots: readonly Snapshot[];
}

/**
 * Puts `tag` on the new base on every side first, and only then takes it off every other snapshot, so that at
 * every instant a common snapshot is held on both sides. The sides work at the same time (each has its own zfs,
 * and the remote one a round trip of its own), but no release starts before every hold is in place. Idempotent,
 * so every run also repairs holds that were removed by hand or leaked by a crashed run.
 */
export async function moveHolds(
  tag: string,
  sides: readonly HoldSide[],
  expectNew: boolean,
  log: Logger,
): Promise<void> {
  await onEverySide(sides, async (side) => {
    const result = await side.zfs.hold(tag, side.dataset, side.keep.name);
    const where = `${side.zfs.label}:${side.dataset}@${side.keep.name}`;
    if (result === 'added' && !expectNew) log.warn(`repaired: hold "${tag}" was missing on ${where}; added it`);
    else log.debug(`hold "${tag}" on ${where}: ${result}`);
  });
  await onEverySide(sides, async (side) => {
    for (const snapshot of await snapshotsCarrying(tag, side)) {
      const result = await side.zfs.release(tag, side.dataset, snapshot.name);
      if (result === 'released')
        log.info(`released hold "${tag}" on ${side.zfs.label}:${side.dataset}@${snapshot.name}`);
    }
  });
}

/** Fails with the first side's error, but only once every side has ended: nothing runs on behind the failure. */
async function onEverySide(sides: readonly HoldSide[], work: (side: HoldSide) => Promise<void>): Promise<void> {
  const ended = await Promise.allSettled(sides.map(work));
  const failure = ended.find((end): end is PromiseRejectedResult => end.status === 'rejected');
  if (failure !== undefined) throw failure.reason;
}

/**
 * Snapshots other than `keep` that may carry `tag`. Where the host has `zfs holds`, it says exactly; on zfs-fuse
 * only the hold count is known, so every held snapshot is a candidate (a release of an absent tag is harmless).
 */
export async function snapshotsCarrying(tag: string, side: HoldSide): Promise<Snapshot[]> {
  const held = side.snapshots.filter((snapshot) => snapshot.guid !== side.keep.guid && snapshot.userrefs > 0);
  if (!side.zfs.features.holdsCommand || held.length === 0) return held;
  const tags = await side.zfs.holds(
    side.dataset,
    held.map((snapshot) => snapshot.name),
  );
  return held.filter((snapshot) => tags.get(snapshot.name)?.includes(tag));
}
