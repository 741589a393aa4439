import type { Logger } from '../log/logger.js';
import type { ZfsOperations } from '../zfs/host.js';
import { snapshotName } from '../zfs/names.js';
import type { Snapshot } from '../zfs/types.js';
import { Slots } from './slots.js';

export interface HoldSide {
  zfs: ZfsOperations;
  dataset: string;
  /** This side's copy of the snapshot that must carry the tag from now on. */
  keep: Snapshot;
  /** This side's snapshots as last listed: their userrefs say where else a hold may be. */
  snapshots: readonly Snapshot[];
  /** This run put the tag on `keep` already (the source's snapshot held before its stream): nothing to ask. */
  held?: boolean | undefined;
}

/** One dataset's move of its tag to a new base, on each of its sides. */
export interface HoldMove {
  tag: string;
  sides: readonly HoldSide[];
  /** The base is new this run: a hold added is expected, not a repair worth a warning. */
  expectNew: boolean;
  log: Logger;
}

/** How a run moves its holds: at once (moveHolds), or gathered with other members' moves (HoldBatch). */
export type HoldMover = (move: HoldMove) => Promise<void>;

/**
 * Puts `tag` on the new base on every side first, and only then takes it off every other snapshot, so that at
 * every instant a common snapshot is held on both sides. The sides work at the same time (each has its own zfs,
 * and the remote one a round trip of its own), but no release starts before every hold is in place. Idempotent,
 * so every run also repairs holds that were removed by hand or leaked by a crashed run.
 */
export async function moveHolds(move: HoldMove): Promise<void> {
  const [outcome] = await moveHoldsTogether([move]);
  if (outcome?.status === 'rejected') throw outcome.reason;
}

/**
 * Several datasets' moves (a tree's members) with a few commands per host instead of a few per dataset: one
 * `zfs hold` naming every new base of a host, then one `zfs release` naming every old one. Each move keeps its
 * own guarantee: its releases start only once all of its holds are in place, and a move whose hold failed
 * releases nothing. Where a gathered command fails, its snapshots are tried one by one, so each move gets its
 * own answer, and the others go on.
 */
export async function moveHoldsTogether(moves: readonly HoldMove[]): Promise<PromiseSettledResult<void>[]> {
  // A move fails with its first side's error (the remote's before the local's), as one move alone would.
  const failures = new Map<HoldMove, { side: number; error: unknown }>();
  const fail = ({ move, side }: Entry, error: unknown) => {
    const known = failures.get(move);
    const index = move.sides.indexOf(side);
    if (known === undefined || index < known.side) failures.set(move, { side: index, error });
  };
  const entries = moves.flatMap((move) => move.sides.map((side) => ({ move, side })));

  const toHold = entries.filter(({ side }) => !side.held);
  await onEveryHost(toHold, async (zfs, tag, onHost) => {
    // A snapshot without any hold cannot carry the tag yet, so holding it adds it: those are gathered. One with
    // holds may carry ours already (an up-to-date base): it is asked alone, where "already there" is no error.
    // After a failed gathered hold, the ones it did add answer "present" alone: only a repair's warning is lost.
    const unheld = new Set(onHost.filter(({ side }) => side.keep.userrefs === 0));
    const names = [...unheld].map(({ side }) => snapshotName(side.dataset, side.keep.name));
    const gathered = names.length > 1 && (await succeeds(zfs.holdAll(tag, names)));
    await fewAtOnce(onHost, async (entry) => {
      const { move, side } = entry;
      const where = `${zfs.label}:${side.dataset}@${side.keep.name}`;
      try {
        const result = gathered && unheld.has(entry) ? 'added' : await zfs.hold(tag, side.dataset, side.keep.name);
        if (result === 'added' && !move.expectNew) move.log.warn(repairedHold(tag, where));
        else move.log.debug(`hold "${tag}" on ${where}: ${result}`);
      } catch (error) {
        fail(entry, error);
      }
    });
  });

  const holding = entries.filter(({ move }) => !failures.has(move));
  await onEveryHost(holding, async (zfs, tag, onHost) => {
    // Asked together, then (when that fails: one side's snapshot may be gone) side by side, so that one side's
    // failure is its move's alone.
    const carrying = await snapshotsCarryingTogether(
      tag,
      onHost.map(({ side }) => side),
    ).catch(async () => {
      const each: Snapshot[][] = onHost.map(() => []);
      await fewAtOnce(onHost.entries(), async ([index, entry]) => {
        each[index] = await snapshotsCarrying(tag, entry.side).catch((error: unknown) => {
          fail(entry, error);
          return [];
        });
      });
      return each;
    });
    const releases = onHost.flatMap((entry, index) =>
      failures.has(entry.move) ? [] : carrying[index]!.map((snapshot) => ({ entry, snapshot })),
    );
    const names = releases.map(({ entry, snapshot }) => snapshotName(entry.side.dataset, snapshot.name));
    const gathered = releases.length > 1 && (await succeeds(zfs.releaseAll(tag, names)));
    await fewAtOnce(releases, async ({ entry, snapshot }) => {
      const { move, side } = entry;
      try {
        const result = gathered ? 'released' : await zfs.release(tag, side.dataset, snapshot.name);
        if (result === 'released')
          move.log.info(`released hold "${tag}" on ${zfs.label}:${side.dataset}@${snapshot.name}`);
      } catch (error) {
        fail(entry, error);
      }
    });
  });

  return moves.map((move) => {
    const failure = failures.get(move);
    return failure === undefined
      ? { status: 'fulfilled', value: undefined }
      : { status: 'rejected', reason: failure.error };
  });
}

/** A hold this job expected to find, added again. */
export function repairedHold(tag: string, where: string): string {
  return `repaired: hold "${tag}" was missing on ${where} (released by hand, or a run killed before it could hold it); added it`;
}

/**
 * Snapshots other than `keep` that may carry `tag`. Where the host has `zfs holds`, it says exactly; on zfs-fuse
 * only the hold count is known, so every held snapshot is a candidate (a release of an absent tag is harmless).
 */
export async function snapshotsCarrying(tag: string, side: HoldSide): Promise<Snapshot[]> {
  const [carrying] = await snapshotsCarryingTogether(tag, [side]);
  return carrying ?? [];
}

/** snapshotsCarrying for several sides on one host, with one `zfs holds` for them all. */
async function snapshotsCarryingTogether(tag: string, sides: readonly HoldSide[]): Promise<Snapshot[][]> {
  const candidates = sides.map((side) =>
    side.snapshots.filter((snapshot) => snapshot.guid !== side.keep.guid && snapshot.userrefs > 0),
  );
  const zfs = sides[0]?.zfs;
  const names = sides.flatMap((side, index) =>
    candidates[index]!.map((snapshot) => snapshotName(side.dataset, snapshot.name)),
  );
  if (zfs === undefined || !zfs.features.holdsCommand || names.length === 0) return candidates;
  const tags = await zfs.tagsOn(names);
  return sides.map((side, index) =>
    candidates[index]!.filter((snapshot) => tags.get(snapshotName(side.dataset, snapshot.name))?.includes(tag)),
  );
}

type Entry = { move: HoldMove; side: HoldSide };

/** The entries of each host and tag at the same time, those of one host and tag in one go; waits for all. */
async function onEveryHost(
  entries: readonly Entry[],
  work: (zfs: ZfsOperations, tag: string, onHost: Entry[]) => Promise<void>,
): Promise<void> {
  const groups = new Map<ZfsOperations, Map<string, Entry[]>>();
  for (const entry of entries) {
    const byTag = groups.get(entry.side.zfs) ?? new Map<string, Entry[]>();
    groups.set(entry.side.zfs, byTag);
    const group = byTag.get(entry.move.tag) ?? [];
    byTag.set(entry.move.tag, group);
    group.push(entry);
  }
  await Promise.all([...groups].flatMap(([zfs, byTag]) => [...byTag].map(([tag, onHost]) => work(zfs, tag, onHost))));
}

/**
 * Snapshots asked one by one (an up-to-date tree's bases, or after a gathered command failed) go a few at a time,
 * as a tree's members would: the remote ones share the run's one ssh connection, which serves 10 sessions.
 */
const ASKED_AT_ONCE = 4;

async function fewAtOnce<T>(items: Iterable<T>, work: (item: T) => Promise<void>): Promise<void> {
  const slots = new Slots(ASKED_AT_ONCE);
  await Promise.all(Array.from(items, (item) => slots.run(() => work(item))));
}

/** A gathered command's failure is not reported: its snapshots are then tried one by one, which tells which. */
async function succeeds(command: Promise<void>): Promise<boolean> {
  return command.then(
    () => true,
    () => false,
  );
}
