import type { CommandOutcome, Testbed } from '../testbed/testbed.js';
import { type Pair, type SnapshotInfo, datasetGuid, heldBy, listSnapshots, lockTaken } from './harness.js';

/** A pair as it was before a fault: what the invariants compare the end state with. */
export interface PairState {
  source: SnapshotInfo[];
  /** undefined: no replica yet (the next run is the initial one). */
  replica: SnapshotInfo[] | undefined;
  replicaGuid: string | undefined;
  /** The newest common snapshot by guid (the source's copy), if any. */
  base: SnapshotInfo | undefined;
  /** guids of replica snapshots that another tag than the pair's holds: nothing may destroy them. */
  heldByOthers: Set<string>;
}

/** One run whose exit code is judged: the faulted run(s) list the codes their row allows. */
export interface JudgedRun {
  label: string;
  outcome: CommandOutcome;
  acceptable: readonly number[];
}

export interface InvariantOptions {
  /** The faulted run(s) and the fault-free run after them, each with the exit codes that tell the truth. */
  runs: readonly JudgedRun[];
  /** guids the fault itself destroyed on the source (so their absence is not the tool's doing). */
  sourceRemoved?: ReadonlySet<string>;
  /** The fault removed the source dataset: only the local side can be checked. */
  sourceGone?: boolean;
  /** Seconds since the epoch, for snapshot ages (default: now). */
  nowSeconds?: number;
}

/** Kinds that the soak counts on their own; every violation starts with its kind and a colon. */
export const LEAKED_HOLD = 'leaked hold';
export const FULL_RESEND = 'full resend';

function newestCommon(source: readonly SnapshotInfo[], replica: readonly SnapshotInfo[]): SnapshotInfo | undefined {
  const local = new Set(replica.map((snapshot) => snapshot.guid));
  return source.filter((snapshot) => local.has(snapshot.guid)).at(-1);
}

export async function capturePair(tb: Testbed, pair: Pair): Promise<PairState> {
  const [source, replica, replicaGuid] = await Promise.all([
    listSnapshots(tb, pair.remoteHost, pair.remoteDataset),
    listSnapshots(tb, pair.localHost, pair.localDataset),
    datasetGuid(tb, pair.localHost, pair.localDataset),
  ]);
  const heldByOthers = new Set<string>();
  if (replica !== undefined) {
    const withHolds = replica.filter((snapshot) => snapshot.userrefs > 0);
    const ours = await heldBy(
      tb,
      pair.localHost,
      pair.localDataset,
      withHolds.map((snapshot) => snapshot.name),
      pair.tag,
    );
    for (const snapshot of withHolds) {
      if (snapshot.userrefs - (ours.has(snapshot.name) ? 1 : 0) > 0) heldByOthers.add(snapshot.guid);
    }
  }
  return {
    source: source ?? [],
    replica,
    replicaGuid,
    base: replica === undefined ? undefined : newestCommon(source ?? [], replica),
    heldByOthers,
  };
}

/**
 * Every invariant of issue 9 for one pair after a fault and the fault-free run that followed it; returns the
 * violations, one line each, "<kind>: <detail>":
 * - the exit codes told the truth (each run's code is one its row allows; the fault-free run's is 0);
 * - no full resend into an existing replica (a "receiving full" line, or a replica with a new dataset guid);
 * - every source snapshot newer than the old base is on the replica with the same guid (unless it is older
 *   than keep and so may have been expired already);
 * - the newest common snapshot carries the tag on both sides, and no other snapshot does;
 * - no lock left;
 * - no replica snapshot younger than keep, or held by another tag, destroyed;
 * - no source snapshot destroyed, ever.
 */
export async function checkInvariants(
  tb: Testbed,
  pair: Pair,
  before: PairState,
  options: InvariantOptions,
): Promise<string[]> {
  const violations: string[] = [];
  const now = options.nowSeconds ?? Math.floor(Date.now() / 1000);
  const where = (host: string, dataset: string, name: string) => `${host}:${dataset}@${name}`;

  for (const run of options.runs) {
    if (!run.acceptable.includes(run.outcome.exitCode))
      violations.push(
        `exit code: ${run.label} exited ${run.outcome.exitCode}, acceptable: ${run.acceptable.join(' or ')} (stderr: ${lastLines(run.outcome.stderr)})`,
      );
    if (before.replica !== undefined && /receiving full/.test(run.outcome.stderr))
      violations.push(`${FULL_RESEND}: ${run.label} received a full stream into the existing ${pair.localDataset}`);
  }

  const [source, replica, replicaGuid] = await Promise.all([
    options.sourceGone ? Promise.resolve(undefined) : listSnapshots(tb, pair.remoteHost, pair.remoteDataset),
    listSnapshots(tb, pair.localHost, pair.localDataset),
    datasetGuid(tb, pair.localHost, pair.localDataset),
  ]);
  if (before.replicaGuid !== undefined && replicaGuid !== before.replicaGuid)
    violations.push(
      `${FULL_RESEND}: the replica ${pair.localHost}:${pair.localDataset} was ${replicaGuid === undefined ? 'destroyed' : 'recreated (new dataset guid)'}`,
    );
  if (replica === undefined) {
    violations.push(`replica: ${pair.localHost}:${pair.localDataset} does not exist`);
    return violations;
  }
  const replicaGuids = new Map(replica.map((snapshot) => [snapshot.guid, snapshot]));

  // No source snapshot destroyed, ever (except what the fault destroyed itself).
  if (!options.sourceGone) {
    const sourceGuids = new Set((source ?? []).map((snapshot) => snapshot.guid));
    for (const snapshot of before.source) {
      if (!sourceGuids.has(snapshot.guid) && !options.sourceRemoved?.has(snapshot.guid))
        violations.push(
          `source destroyed: ${where(pair.remoteHost, pair.remoteDataset, snapshot.name)} (guid ${snapshot.guid}) is gone`,
        );
    }
  }

  // No replica snapshot younger than keep, or held by another tag, destroyed.
  for (const snapshot of before.replica ?? []) {
    if (replicaGuids.has(snapshot.guid)) continue;
    const age = now - snapshot.creation;
    if (age < pair.keepSeconds)
      violations.push(
        `destroyed young: ${where(pair.localHost, pair.localDataset, snapshot.name)} was ${age} s old, keep is ${pair.keepSeconds} s`,
      );
    if (before.heldByOthers.has(snapshot.guid))
      violations.push(
        `destroyed held: ${where(pair.localHost, pair.localDataset, snapshot.name)} was held by another tag`,
      );
  }

  // Holds: the base carries the tag on both sides, nothing else does.
  const base = options.sourceGone ? before.base : newestCommon(source ?? [], replica);
  if (base === undefined) {
    violations.push('base: the source and the replica share no snapshot');
  } else if (!options.sourceGone) {
    // Every source snapshot newer than the old base arrived, with its guid.
    for (const snapshot of source ?? []) {
      if (before.base !== undefined && snapshot.createtxg <= before.base.createtxg) continue;
      if (replicaGuids.has(snapshot.guid)) continue;
      if (snapshot.guid !== base.guid && now - snapshot.creation >= pair.keepSeconds) continue; // may have expired
      violations.push(
        `missing: ${where(pair.remoteHost, pair.remoteDataset, snapshot.name)} (guid ${snapshot.guid}), newer than the old base${before.base ? ` @${before.base.name}` : ''}, is not on the replica`,
      );
    }
  }
  const sides: [string, string, SnapshotInfo[]][] = [[pair.localHost, pair.localDataset, replica]];
  if (!options.sourceGone && source !== undefined) sides.unshift([pair.remoteHost, pair.remoteDataset, source]);
  for (const [host, dataset, snapshots] of sides) {
    const baseHere = base === undefined ? undefined : snapshots.find((snapshot) => snapshot.guid === base.guid);
    const candidates = snapshots.filter((snapshot) => snapshot.userrefs > 0);
    const held = await heldBy(
      tb,
      host,
      dataset,
      candidates.map((snapshot) => snapshot.name),
      pair.tag,
    );
    if (baseHere !== undefined && !held.has(baseHere.name))
      violations.push(`base not held: ${where(host, dataset, baseHere.name)} does not carry "${pair.tag}"`);
    for (const name of held) {
      if (name !== baseHere?.name)
        violations.push(`${LEAKED_HOLD}: ${where(host, dataset, name)} carries "${pair.tag}" but is not the base`);
    }
  }

  if (await lockTaken(tb, pair.localHost, pair.localDataset))
    violations.push(`lock left: ${pair.localHost}:${pair.localDataset} is still locked after the runs ended`);
  return violations;
}

function lastLines(text: string, count = 4): string {
  const lines = text.trim().split('\n');
  return lines.slice(-count).join(' | ') || '(empty)';
}
