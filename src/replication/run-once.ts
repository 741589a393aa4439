import { ConflictError, FailureError, UsageError, errorMessage } from '../errors/errors.js';
import { expireSnapshots } from '../retention/expire.js';
import { planExpiry } from '../retention/plan.js';
import { tooLongUnder } from '../zfs/names.js';
import type { DatasetState, Snapshot } from '../zfs/types.js';
import {
  CLAIM_PROPERTY,
  claimChange,
  claimOf,
  readSourceClaims,
  refuseHarmfulPair,
  refuseTagHeldByAnother,
} from './claim.js';
import { sourceNowSeconds } from './clock.js';
import { refuseRollbackOverClones } from './clones.js';
import { executePlan, holdOnBothSides } from './execute.js';
import { type CommonSnapshot, type Plan, newestCommonSnapshot, planReplication } from './plan.js';
import { unsetReplicaProperties } from './replica-properties.js';
import { reportDryRun } from './report.js';
import { settleInterruptedReceive } from './resume.js';
import type { ListedPair, PreparedRun, ReplicationContext, ReplicationSettings, RunOutcome } from './types.js';

/** What a recursive run already knows about one of its members. */
export interface MemberHints {
  /** Both sides from the tree listing, when it is still fresh. */
  listed?: ListedPair | undefined;
  /** Dry-run only: replicas the tree receives before this one. */
  parentsArriving?: ReadonlySet<string>;
  /** The claims of this host's replicas (see claim.ts), listed once for the whole tree. */
  claims?: ReadonlyMap<string, string>;
  /** The tree has checked its source's own claim (see refuseHarmfulUpstream) for all its members. */
  upstreamChecked?: boolean;
}

/**
 * One run of one dataset, in the order it happens: settle an interrupted receive, list, plan, then report
 * (dry-run) or execute, then expire. Expiry runs on every run, also when nothing new arrived, and also after
 * a failed transfer whose listings are still valid; never after a conflict or an interruption.
 * Resolves to what the run did (a dry-run: only whether anything would be received).
 */
export async function runOnce(
  settings: ReplicationSettings,
  context: ReplicationContext,
  member: MemberHints = {},
): Promise<RunOutcome> {
  const [listed, claims, sourceClaims] = await Promise.all([
    member.listed ?? listPair(settings, context),
    member.claims ?? context.local.userProperty(CLAIM_PROPERTY),
    member.upstreamChecked
      ? undefined
      : readSourceClaims(context.remote, settings.remoteDataset, 'dataset', context.log),
  ]);
  refuseHarmfulPair(listed, claims, settings.tag, context.remote.label, sourceClaims?.get(settings.remoteDataset));
  const pair = settings.dryRun ? listed : await settleInterruptedReceive(listed, settings, context);
  context.log.debug(`listed ${pair.remote.snapshots.length} remote and ${pair.local.snapshots.length} local snapshots`);
  const plan = planReplication({
    remote: pair.remote,
    local: pair.local,
    remoteHost: context.remote.label,
    nowSeconds: sourceNowSeconds(context),
    keepSeconds: settings.keepSeconds,
    rollback: settings.rollback,
  });
  if (plan.kind === 'conflict') {
    if (plan.base !== undefined && !settings.dryRun) await holdThroughConflict(plan.base, settings, context);
    throw new ConflictError(plan.code, await conflictMessage(plan, pair, settings, context));
  }
  refuseNamesTooLong(plan, settings.localDataset);
  if (plan.kind === 'incremental' && settings.rollback)
    await refuseRollbackOverClones(plan, context.local, settings.localDataset).catch((error: unknown) =>
      holdBaseThroughConflict(error, plan, settings, context),
    );
  const ownClaim = claims.get(settings.localDataset);
  const newClaim =
    pair.remote.guid !== undefined && ownClaim !== claimOf(pair.remote.guid, settings.tag, settings.localDataset);
  if (newClaim && claimChange(ownClaim, pair.remote.guid!, settings.tag, settings.localDataset) !== 'source replaced')
    await refuseTagHeldByAnother(context, pair, settings.tag, settings.dryRun);
  const prepared: PreparedRun = { plan, pair, settled: pair !== listed, newClaim };
  const received = plan.kind !== 'up-to-date' || prepared.settled;
  const unset = await unsetReplicaProperties(pair.local, claims, context);
  const propertyList = unset.map(([property, value]) => `${property}=${value}`).join(', ');
  if (settings.dryRun) {
    if (unset.length > 0) context.print(`would set ${propertyList} on ${settings.localDataset} (not set yet)`);
    await reportDryRun(prepared, settings, context, member.parentsArriving);
    return { received, receivedSnapshots: 0, receivedBytes: 0, expiredSnapshots: 0 };
  }
  if (unset.length > 0) {
    for (const [property, value] of unset) await context.local.setProperty(settings.localDataset, property, value);
    context.log.warn(
      `set ${propertyList} on ${settings.localDataset}: nobody had (an initial sync stopped before it could, or a replica received by hand)`,
    );
  }

  let transferError: unknown;
  let after: { local: DatasetState; bases: ReadonlySet<string> };
  let executed: Awaited<ReturnType<typeof executePlan>> | undefined;
  try {
    executed = await executePlan(prepared, settings, context);
    after = { local: executed.localState, bases: new Set([executed.base.local.guid]) };
    await recordClaim(pair, claims, settings, context);
  } catch (error) {
    if (error instanceof ConflictError) return holdBaseThroughConflict(error, plan, settings, context);
    if (context.cancelSignal.aborted) {
      await holdWhatArrived(prepared, settings, context);
      throw error;
    }
    transferError = error;
    after = { local: pair.local, bases: new Set() };
  }
  let expiredSnapshots = 0;
  try {
    let remoteSnapshots = pair.remote.snapshots;
    if (transferError !== undefined) {
      after = await settleAfterFailure(prepared, settings, context);
      remoteSnapshots = await remoteAfterFailure(settings, context);
    }
    if (context.expiryWithheld !== undefined) after = { ...after, bases: new Set() };
    const expiry = planExpiry({
      local: after.local.snapshots,
      remote: remoteSnapshots,
      bases: after.bases,
      nowSeconds: sourceNowSeconds(context),
      keepSeconds: settings.keepSeconds,
    });
    expiredSnapshots = await expireSnapshots(expiry, {
      remote: context.remote,
      local: context.local,
      remoteDataset: settings.remoteDataset,
      localDataset: settings.localDataset,
      tag: settings.tag,
      log: context.log,
      cancelSignal: context.cancelSignal,
    });
  } catch (expiryError) {
    if (transferError === undefined) throw expiryError;
    context.log.error(errorMessage(expiryError));
  }
  if (transferError !== undefined) throw transferError;
  const newest = after.local.snapshots.at(-1);
  return {
    received,
    receivedSnapshots: plan.kind === 'up-to-date' ? 0 : plan.incoming.length,
    receivedBytes: executed?.receivedBytes ?? 0,
    expiredSnapshots,
    newest: newest && { name: newest.name, creation: newest.creation },
    tagAt: executed?.base.local.name,
  };
}

/**
 * After a failed transfer the replica may hold part of the stream: list it again, move the tag to the newest
 * common snapshot that arrived (the next run starts from it, and the source may now prune the old base), and
 * protect both it and the old base from expiry, in case moving the tag failed half-way.
 */
async function settleAfterFailure(
  prepared: PreparedRun,
  settings: ReplicationSettings,
  context: ReplicationContext,
): Promise<{ local: DatasetState; bases: ReadonlySet<string> }> {
  const { plan, pair } = prepared;
  const local = await context.local.state(settings.localDataset);
  const bases = new Set<string>();
  if (plan.kind !== 'initial') bases.add(plan.base.local.guid);
  const common = newestCommonSnapshot(local.snapshots, pair.remote.snapshots);
  // A base the source keeps only as a bookmark is newer than any snapshot both still have: it keeps the tag.
  const arrived = common !== undefined && (plan.kind === 'initial' || common.createtxg > plan.base.local.createtxg);
  if (arrived && !bases.has(common.guid)) {
    bases.add(common.guid);
    try {
      await holdOnBothSides(common, local, prepared, settings, context);
    } catch (error) {
      context.log.warn(
        `could not move hold "${settings.tag}" to @${common.name} after the failure: ${errorMessage(error)}`,
      );
    }
  }
  return { local, bases };
}

/**
 * A replica whose history `zfs promote` of a clone of it (a restore) took away looks like no replica, or one
 * with no common snapshot: its origin tells where its snapshots went, and the way back.
 */
async function conflictMessage(
  plan: Extract<Plan, { kind: 'conflict' }>,
  pair: ListedPair,
  settings: ReplicationSettings,
  context: ReplicationContext,
): Promise<string> {
  if (plan.code !== 'ENOTREPLICA' && plan.code !== 'ENOCOMMON') return plan.message;
  const origin = await context.local.propertyOf(settings.localDataset, 'origin');
  if (origin === undefined) return plan.message;
  const holder = origin.split('@')[0]!;
  // Only if taking the history back would give a common snapshot: the source may have lost those too.
  const history = await context.local.state(holder);
  const onSource = new Set(pair.remote.snapshots.map((snapshot) => snapshot.guid));
  if (!history.snapshots.some((snapshot) => onSource.has(snapshot.guid))) return plan.message;
  return `local dataset ${settings.localDataset} shares no snapshot with its source any more: zfs promote gave its history to ${holder} (a restore?); zfs promote ${settings.localDataset} takes it back (nothing was changed)`;
}

/**
 * A failed transfer may have been a lost connection: expiry never runs while the remote cannot be reached (what
 * its earlier listing said may be stale), so the remote is listed again, and if it does not answer, nothing is
 * destroyed.
 */
async function remoteAfterFailure(settings: ReplicationSettings, context: ReplicationContext): Promise<Snapshot[]> {
  try {
    return (await context.remote.state(settings.remoteDataset)).snapshots;
  } catch (error) {
    throw new FailureError(
      'EEXPIRY',
      `expiry skipped, nothing destroyed: ${context.remote.label}:${settings.remoteDataset} could not be listed after the failure: ${errorMessage(error)}`,
    );
  }
}

/**
 * A stopped run still holds the newest common snapshot that arrived (a few quick commands, no expiry): after an
 * initial sync's full stream there is no older base held, and the source's pruning could take the only
 * common snapshot before the next run.
 */
async function holdWhatArrived(
  prepared: PreparedRun,
  settings: ReplicationSettings,
  context: ReplicationContext,
): Promise<void> {
  try {
    await settleAfterFailure(prepared, settings, context);
  } catch (error) {
    context.log.warn(`could not hold what arrived before the stop: ${errorMessage(error)}`);
  }
}

/**
 * A conflict waits for a human, maybe for days, while the source goes on pruning: the newest common snapshot
 * must carry our tag on both sides meanwhile (it may not, when the source lost our old base), or the pair
 * would need a full resend. Only holds are added; nothing is released or destroyed.
 */
async function holdThroughConflict(
  base: CommonSnapshot,
  settings: ReplicationSettings,
  context: ReplicationContext,
): Promise<void> {
  // Each side on its own: a hold refused on one side must not leave the other unheld.
  const outcomes = await Promise.allSettled([
    base.viaBookmark ? 'present' : context.remote.hold(settings.tag, settings.remoteDataset, base.remote.name),
    context.local.hold(settings.tag, settings.localDataset, base.local.name),
  ]);
  if (outcomes.some((outcome) => outcome.status === 'fulfilled' && outcome.value === 'added')) {
    context.log.warn(
      `held the newest common snapshot @${base.local.name} with "${settings.tag}" on both sides until the conflict is resolved (the one change a conflict makes: the source's pruning must not take it meanwhile)`,
    );
  }
  for (const outcome of outcomes) {
    if (outcome.status === 'rejected')
      context.log.warn(
        `could not hold the newest common snapshot @${base.local.name}: ${errorMessage(outcome.reason)}`,
      );
  }
}

/**
 * A conflict met after planning (a replica modified since its newest snapshot, a rollback refused) waits for a
 * human as one the planner finds does: with its base held on both sides. On a replica's first run (one received
 * by hand, or the ancestor's) nothing holds it yet, and the source's pruning would force a full resend.
 */
async function holdBaseThroughConflict(
  error: unknown,
  plan: Plan,
  settings: ReplicationSettings,
  context: ReplicationContext,
): Promise<never> {
  if (error instanceof ConflictError && (plan.kind === 'incremental' || plan.kind === 'up-to-date') && !settings.dryRun)
    await holdThroughConflict(plan.base, settings, context);
  throw error;
}

/** Marks the replica as this source's under this tag, where it is not marked yet (once, after its first run). */
async function recordClaim(
  pair: ListedPair,
  claims: ReadonlyMap<string, string>,
  settings: ReplicationSettings,
  context: ReplicationContext,
): Promise<void> {
  if (pair.remote.guid === undefined) return;
  const claim = claimOf(pair.remote.guid, settings.tag, settings.localDataset);
  const previous = claims.get(settings.localDataset);
  if (previous === claim) return;
  await context.local.setProperty(settings.localDataset, CLAIM_PROPERTY, claim);
  const change = claimChange(previous, pair.remote.guid, settings.tag, settings.localDataset);
  if (change === 'source replaced') {
    context.log.warn(
      `${context.remote.label}:${settings.remoteDataset} is another dataset than the one ${settings.localDataset} was replicated from until now (restored from a backup, or moved): it shares the replica's snapshots, so replication goes on from the newest common one`,
    );
  }
  if (change === 'tag changed') {
    context.log.warn(
      `${settings.localDataset} was replicated from ${context.remote.label}:${settings.remoteDataset} with another tag until now: if no job uses that tag any more, its holds stay on both sides for good (and keep that snapshot from the source's pruning): release them on both sides (zfs holds shows them on the common snapshots; zfs-fuse has no zfs holds: zfs list -t snapshot -o name,userrefs)`,
    );
  }
}

/**
 * A source's snapshot whose name, under the replica's, is longer than ZFS allows would fail every run's receive
 * ("invalid name") while a dry run said all was well: refused before anything changes, naming the way out.
 */
function refuseNamesTooLong(plan: Plan, localDataset: string): void {
  if (plan.kind !== 'initial' && plan.kind !== 'incremental') return;
  const [first] = tooLongUnder(
    localDataset,
    plan.incoming.map((snapshot) => snapshot.name),
  );
  if (first === undefined) return;
  throw new UsageError(
    `${localDataset}@${first} would be longer than the 255 bytes ZFS allows a name: give the replica a shorter name (-l), or the source's snapshots shorter names (nothing was changed)`,
  );
}

/** Both sides in one command each, at the same time. */
async function listPair(settings: ReplicationSettings, context: ReplicationContext): Promise<ListedPair> {
  const [remote, local] = await Promise.all([
    context.remote.state(settings.remoteDataset),
    context.local.state(settings.localDataset),
  ]);
  return { remote, local };
}
