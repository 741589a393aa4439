import type { ConflictCode } from '../errors/errors.js';
import type { DatasetState, Snapshot } from '../zfs/types.js';

/** The same snapshot on both sides (same guid); names may differ if one side renamed it. */
export interface CommonSnapshot {
  local: Snapshot;
  /** The remote snapshot, or the remote bookmark when the snapshot itself is gone there. */
  remote: Snapshot;
  viaBookmark: boolean;
}

export interface UpToDatePlan {
  kind: 'up-to-date';
  base: CommonSnapshot;
}

export interface IncrementalPlan {
  kind: 'incremental';
  base: CommonSnapshot;
  /** The newest remote snapshot: the new base once received. */
  target: Snapshot;
  /** Every remote snapshot after the base up to the target, oldest first: all arrive in one `-I` stream. */
  incoming: Snapshot[];
  /**
   * Local snapshots after the base that a `--rollback` destroys; empty unless the user asked for it. Those that
   * carry a hold are destroyed only if the hold was ours (see execute.ts).
   */
  discard: Snapshot[];
}

export interface InitialPlan {
  kind: 'initial';
  /** Sent as a full stream: the oldest remote snapshot still inside keep (or the newest, if none is). */
  first: Snapshot;
  target: Snapshot;
  /** `first` and every remote snapshot after it, oldest first. */
  incoming: Snapshot[];
  /** Remote snapshots older than `first`: outside keep, never sent. */
  skipped: Snapshot[];
}

export interface ConflictPlan {
  kind: 'conflict';
  code: ConflictCode;
  /** One line: the dataset, the cause, the way out. */
  message: string;
  /** The newest common snapshot, where there is one: held on both sides until a human resolves the conflict. */
  base?: CommonSnapshot;
}

export type Plan = UpToDatePlan | IncrementalPlan | InitialPlan | ConflictPlan;

export interface PlanInput {
  remote: DatasetState;
  local: DatasetState;
  /** For messages: the remote host's name. */
  remoteHost: string;
  nowSeconds: number;
  keepSeconds: number;
  rollback: boolean;
}

/**
 * Decides what one run does from the two listings alone. Snapshots are matched by guid (never by name: a
 * snapshot made on the replica with a source's name must not pass for it) and ordered by createtxg.
 * Linear in the number of snapshots.
 */
export function planReplication(input: PlanInput): Plan {
  const { remote, local, remoteHost } = input;
  const remoteName = `${remoteHost}:${remote.dataset}`;
  if (!remote.exists) return conflict('EREMOTEMISSING', `remote dataset ${remoteName} does not exist: check -h and -r`);
  const target = remote.snapshots.at(-1);
  if (target === undefined) {
    return conflict(
      'EREMOTEEMPTY',
      `remote dataset ${remoteName} has no snapshots: take one there first (nothing was changed)`,
    );
  }
  if (!local.exists) return planInitial(input, target);
  if (local.snapshots.length === 0) {
    return conflict(
      'ENOTREPLICA',
      `local dataset ${local.dataset} exists but has no snapshots, so it is not a replica of ${remoteName}: pick another -l, or destroy it by hand to start over (nothing was changed)`,
    );
  }

  const base = newestCommon(local.snapshots, remote.snapshots, remote.bookmarks);
  if (base === undefined) {
    return conflict(
      'ENOCOMMON',
      `local dataset ${local.dataset} shares no snapshot (by guid) with ${remoteName}: it is not a replica of it, or every common snapshot was destroyed; refusing a full resend over existing data (to start over, destroy ${local.dataset} by hand, or set it aside: zfs rename it, then zfs inherit -r zfs_replicate:pull on the new name; nothing was changed)`,
    );
  }

  const newerLocal = local.snapshots.filter((snapshot) => snapshot.createtxg > base.local.createtxg);
  if (newerLocal.length > 0 && !input.rollback) {
    // A name the remote also has, on another snapshot (the source was rolled back and snapshotted again),
    // reads as a contradiction unless it is said.
    const remoteNames = new Set(remote.snapshots.map((snapshot) => snapshot.name));
    const namesakes = newerLocal.filter((snapshot) => remoteNames.has(snapshot.name));
    const namesake =
      namesakes.length === 0
        ? ''
        : ` (${describeSnapshots(namesakes)} on the remote ${namesakes.length === 1 ? 'is another snapshot' : 'are other snapshots'} of the same name)`;
    return {
      ...conflict(
        'EDIVERGED',
        `local dataset ${local.dataset} has diverged from ${remoteName}: ${describeSnapshots(newerLocal)} ${newerLocal.length === 1 ? 'is' : 'are'} newer than the common snapshot @${base.local.name} and not on the remote${namesake}, so this is the only copy (was the source rolled back, or restored from an older snapshot?); re-run with --rollback to destroy ${newerLocal.length === 1 ? 'it' : 'them'} and continue, or keep ${newerLocal.length === 1 ? 'it' : 'them'} by setting the replica aside (zfs rename it, then zfs inherit -r zfs_replicate:pull on the new name; the next run starts over with a full send) (nothing was changed)`,
      ),
      base,
    };
  }

  const incoming = remote.snapshots.filter((snapshot) => snapshot.createtxg > base.remote.createtxg);
  // zfs recv refuses a snapshot whose name the replica already gives an older one (renamed there by hand): the
  // job would fail the same way on every run.
  const keptNames = new Set(
    local.snapshots.filter((snapshot) => snapshot.createtxg <= base.local.createtxg).map((snapshot) => snapshot.name),
  );
  const taken = incoming.filter((snapshot) => keptNames.has(snapshot.name));
  if (taken.length > 0) {
    const [first] = taken;
    return {
      ...conflict(
        'ENAMETAKEN',
        `${remoteName} has new ${describeSnapshots(taken)}, but local dataset ${local.dataset} already gives ${taken.length === 1 ? 'that name to an older snapshot' : 'those names to older snapshots'} (renamed by hand?), so zfs recv would refuse ${taken.length === 1 ? 'it' : 'them'} on every run; rename the local ${taken.length === 1 ? 'one' : 'ones'} (e.g. zfs rename ${local.dataset}@${first!.name} ${local.dataset}@${first!.name}-old) and re-run (nothing was changed)`,
      ),
      base,
    };
  }
  // Nothing newer than the base, which the source may keep as a bookmark only (see sourceKeepsOnlyBookmark).
  if (incoming.length === 0) {
    return newerLocal.length > 0
      ? { kind: 'incremental', base, target: base.remote, incoming: [], discard: newerLocal }
      : { kind: 'up-to-date', base };
  }
  return { kind: 'incremental', base, target, incoming, discard: newerLocal };
}

/**
 * The source destroyed the base snapshot (our tag released by hand) and has taken no newer one, but keeps the
 * base as a bookmark: the replica is up to date, and the next snapshot will be sent from the bookmark. Nothing
 * can be held there (a bookmark takes no hold), and the replica's copy is the only one left: falling back to an
 * older common snapshot would call it diverged, and --rollback would destroy it.
 */
export function sourceKeepsOnlyBookmark(plan: UpToDatePlan | IncrementalPlan | InitialPlan): boolean {
  if (plan.kind === 'initial') return false;
  return plan.base.viaBookmark && (plan.kind === 'up-to-date' || plan.incoming.length === 0);
}

function planInitial(input: PlanInput, target: Snapshot): InitialPlan {
  const oldestKept = input.nowSeconds - input.keepSeconds;
  const snapshots = input.remote.snapshots;
  const firstKept = snapshots.findIndex((snapshot) => snapshot.creation >= oldestKept);
  const index = firstKept >= 0 ? firstKept : snapshots.length - 1;
  return {
    kind: 'initial',
    first: snapshots[index]!,
    target,
    incoming: snapshots.slice(index),
    skipped: snapshots.slice(0, index),
  };
}

/** The newest local snapshot (by createtxg) that the remote also has (same guid), if any. */
export function newestCommonSnapshot(local: readonly Snapshot[], remote: readonly Snapshot[]): Snapshot | undefined {
  return newestCommon(local, remote, [])?.local;
}

/** "@a, @b, @c, @d, @e and 3 more": snapshot names for a one-line message. */
export function describeSnapshots(snapshots: readonly Snapshot[]): string {
  const names = snapshots.slice(0, LISTED_NAMES).map((snapshot) => `@${snapshot.name}`);
  const more = snapshots.length - LISTED_NAMES;
  return more > 0 ? `${names.join(', ')} and ${more} more` : names.join(', ');
}

/**
 * The newest local snapshot (by createtxg) whose guid the remote still has as a snapshot or, where the admin
 * destroyed that snapshot, as a bookmark: an incremental from a bookmark beats a full resend.
 */
function newestCommon(
  local: readonly Snapshot[],
  remote: readonly Snapshot[],
  bookmarks: readonly Snapshot[],
): CommonSnapshot | undefined {
  const snapshotByGuid = new Map(remote.map((snapshot) => [snapshot.guid, snapshot]));
  const bookmarkByGuid = new Map(bookmarks.map((bookmark) => [bookmark.guid, bookmark]));
  for (let index = local.length - 1; index >= 0; index--) {
    const guid = local[index]!.guid;
    const twin = snapshotByGuid.get(guid);
    if (twin !== undefined) return { local: local[index]!, remote: twin, viaBookmark: false };
    const bookmark = bookmarkByGuid.get(guid);
    if (bookmark !== undefined) return { local: local[index]!, remote: bookmark, viaBookmark: true };
  }
  return undefined;
}

function conflict(code: ConflictCode, message: string): ConflictPlan {
  return { kind: 'conflict', code, message };
}

const LISTED_NAMES = 5;
