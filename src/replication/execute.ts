import { ConflictError, FailureError, errorMessage, stopIfInterrupted } from '../errors/errors.js';
import type { ZfsOperations } from '../zfs/host.js';
import { parentOf } from '../zfs/names.js';
import { receiveArgv, replicaProperties } from '../zfs/stream-args.js';
import type { DatasetState, Snapshot } from '../zfs/types.js';
import { keepBookmark } from './bookmarks.js';
import { snapshotList } from './format.js';
import { moveHolds, repairedHold } from './holds.js';
import { type IncrementalPlan, type InitialPlan, describeSnapshots, sourceKeepsOnlyBookmark } from './plan.js';
import { plannedSends, runSendFlags } from './sends.js';
import { transfer } from './transfer.js';
import type { PreparedRun, ReplicationContext, ReplicationSettings } from './types.js';

export interface ExecutedRun {
  /** The local dataset as listed after the receive. */
  localState: DatasetState;
  /** The snapshot both sides hold from now on. */
  base: { local: Snapshot; remote: Snapshot };
  /** Stream bytes `zfs recv` reported for this run's sends. */
  receivedBytes: number;
}

/** Transfers what the plan says, verifies it by guid, and moves the holds. */
export async function executePlan(
  prepared: PreparedRun,
  settings: ReplicationSettings,
  context: ReplicationContext,
): Promise<ExecutedRun> {
  const { remote, local, log } = context;
  const { plan, pair } = prepared;
  const { state: received, bytes } =
    plan.kind === 'up-to-date' ? { state: pair.local, bytes: 0 } : await pull(plan, prepared, settings, context);

  const target = plan.kind === 'up-to-date' ? plan.base.remote : plan.target;
  const localBase = received.snapshots.find((snapshot) => snapshot.guid === target.guid);
  if (localBase === undefined) throw verifyError(settings, remote.label, [target]);
  const onlyBookmark = sourceKeepsOnlyBookmark(plan);
  if (onlyBookmark) {
    log.info(
      `${remote.label}:${settings.remoteDataset} keeps the common snapshot @${localBase.name} only as the bookmark #${target.name} (the snapshot was destroyed there) and has nothing newer: up to date; the next snapshot will be sent from the bookmark`,
    );
  }
  const remoteSide = {
    zfs: remote,
    dataset: settings.remoteDataset,
    keep: target,
    snapshots: remoteAsHeld(prepared),
    held: plan.kind !== 'up-to-date' && travelling(plan)?.guid === target.guid,
  };
  const localSide = { zfs: local, dataset: settings.localDataset, keep: localBase, snapshots: received.snapshots };
  await (context.holdMover ?? moveHolds)({
    tag: settings.tag,
    // A bookmark takes no hold: the source's side waits for the next snapshot sent from it.
    sides: onlyBookmark ? [localSide] : [remoteSide, localSide],
    // After a resumed receive, or under a new tag, the hold is new, not one that someone removed.
    expectNew: plan.kind !== 'up-to-date' || prepared.settled || prepared.newClaim,
    log,
  });
  // A tree's member may have waited for its holds past an interruption: no bookmark, no expiry after one.
  stopIfInterrupted(context.cancelSignal, 'after moving the holds (no bookmark, no expiry)');
  if (!onlyBookmark)
    await keepBookmark(remote, settings.remoteDataset, settings.tag, target, pair.remote.bookmarks, log);
  return { localState: received, base: { local: localBase, remote: target }, receivedBytes: bytes };
}

/**
 * The nearest missing ancestor of `dataset` that an initial receive would have to create, if any. A missing
 * pool cannot be created that way: it is not imported (a backup disk not attached), and the run stops.
 */
export async function missingParent(local: ZfsOperations, dataset: string): Promise<string | undefined> {
  const parent = parentOf(dataset);
  if (parent === undefined || (await local.exists(parent))) return undefined;
  const pool = dataset.split('/')[0]!;
  if (pool === parent || !(await local.exists(pool))) {
    throw new FailureError(
      'ECOMMAND',
      `the local pool ${pool} does not exist (not imported? zpool import ${pool}) (nothing was changed)`,
    );
  }
  return parent;
}

/**
 * `--rollback` left in a crontab line must not warn on every run: OpenZFS tells what was written since the
 * base (`written`), and with nothing there nor any snapshot to discard there is nothing to roll back. zfs-fuse
 * cannot tell: it rolls back every time, and says so only when snapshots go.
 */
async function rollBack(
  plan: IncrementalPlan,
  settings: ReplicationSettings,
  context: ReplicationContext,
): Promise<void> {
  const { local, log } = context;
  const discarding = plan.discard.length > 0;
  const writtenText = local.features.openzfs ? await local.propertyOf(settings.localDataset, 'written') : undefined;
  const written = writtenText === undefined ? undefined : Number(writtenText);
  if (!discarding && written === 0) return;
  await releaseOwnHoldsOrRefuse(plan, settings, context);
  await local.rollback(settings.localDataset, plan.base.local.name, discarding);
  // Whoever wrote to the replica had made it writable; the drift must not recur.
  await local.setProperty(settings.localDataset, 'readonly', 'on');
  const what = discarding
    ? `, destroying ${snapshotList(plan.discard)}`
    : written
      ? `, discarding ${written} bytes written since`
      : '';
  const line = `rolled ${settings.localDataset} back to @${plan.base.local.name}${what} (--rollback)`;
  if (what === '') log.info(line);
  else log.warn(line);
}

/** Runs the plan's sends, creating the parents first and rolling back first where the plan says so. */
async function pull(
  plan: InitialPlan | IncrementalPlan,
  prepared: PreparedRun,
  settings: ReplicationSettings,
  context: ReplicationContext,
): Promise<{ state: DatasetState; bytes: number }> {
  const { local, log } = context;
  const parent = plan.kind === 'initial' ? await missingParent(local, settings.localDataset) : undefined;
  await holdUnheldBase(plan, prepared, settings, context);
  // Held before it travels, first of all changes (a key refused this tag, zfs_replicate-serve --tag, changes
  // nothing). The source's pruning (or, in a chain, the upstream hop's expiry) must not destroy the snapshot a
  // stream is on its way to: it would arrive with no twin left, and the replica would seem to have diverged.
  // And a run killed (SIGKILL, a reboot) after the stream landed leaves it to the next run to hold the
  // replica's side: meanwhile the source must keep what is then the newest common snapshot.
  const firstShared = travelling(plan);
  if (firstShared !== undefined) await context.remote.hold(settings.tag, settings.remoteDataset, firstShared.name);
  if (plan.kind === 'initial') {
    if (parent !== undefined) {
      // Only the parents: the replica itself must come from the full stream, never from `zfs create`.
      await local.createParents(parent).catch(async (error: unknown) => {
        await releaseIfNothingArrived(plan, settings, context);
        throw error;
      });
      log.info(`created parent dataset ${parent}`);
    }
  } else if (settings.rollback) {
    // A rollback refused (another tag's hold, a clone) or failed leaves a conflict for a human: the source's
    // snapshot held for the stream must not stay pinned meanwhile.
    await rollBack(plan, settings, context).catch(async (error: unknown) => {
      await releaseIfNothingArrived(plan, settings, context);
      throw error;
    });
  }
  const flags = runSendFlags(prepared.pair, settings, context);
  const remoteType = prepared.pair.remote.type;
  let bytes = 0;
  for (const send of plannedSends(plan, settings.remoteDataset)) {
    const request = {
      sendArguments: [...flags, ...send.arguments],
      recvArgv: receiveArgv(local.features, settings.localDataset, send.full ? remoteType : undefined),
      what: send.what,
      snapshots: send.snapshots,
      remoteDataset: settings.remoteDataset,
      localDataset: settings.localDataset,
    };
    try {
      stopIfInterrupted(context.cancelSignal, `before sending ${send.what}`);
      bytes += await transfer(request, context);
    } catch (error) {
      await releaseIfNothingArrived(plan, settings, context);
      throw error;
    }
    if (send.full && !local.features.openzfs) {
      for (const [property, value] of replicaProperties(remoteType)) {
        await local.setProperty(settings.localDataset, property, value);
      }
    }
    if (send.full && plan.kind === 'initial' && plan.target.guid !== plan.first.guid) {
      // The first common snapshot exists from here on: hold it on both sides before the rest travels, so
      // that a failed incremental leaves a held common snapshot, which the source's pruning cannot destroy.
      const landed = await verify([plan.first], settings, context);
      await holdOnBothSides(plan.first, landed, prepared, settings, context);
    }
  }
  // The newest one only: it ends the stream, so its arrival shows the receive completed. One before it may
  // have been destroyed at the source while the stream flowed (its pruning): then it was never sent.
  return { state: await verify([plan.target], settings, context), bytes };
}

/**
 * The base at the source normally carries our tag since the run that sent it. Where it may not (no hold on it
 * at all, or a replica not yet claimed under this source and tag: a source restored from its backup, or moved),
 * it is held before the stream too: a transfer that fails or is stopped leaves it the only common snapshot, and
 * the source's pruning must not take it before the next run.
 */
async function holdUnheldBase(
  plan: InitialPlan | IncrementalPlan,
  prepared: PreparedRun,
  settings: ReplicationSettings,
  context: ReplicationContext,
): Promise<void> {
  if (!baseHeldBeforeStream(plan, prepared)) return;
  const result = await context.remote.hold(settings.tag, settings.remoteDataset, plan.base.remote.name);
  if (result === 'added' && !prepared.newClaim)
    context.log.warn(
      repairedHold(settings.tag, `${context.remote.label}:${settings.remoteDataset}@${plan.base.remote.name}`),
    );
}

function baseHeldBeforeStream(plan: InitialPlan | IncrementalPlan, prepared: PreparedRun): plan is IncrementalPlan {
  return (
    plan.kind === 'incremental' && !plan.base.viaBookmark && (plan.base.remote.userrefs === 0 || prepared.newClaim)
  );
}

/**
 * The snapshot pull() holds at the source before its stream starts: the first one an initial sync will share,
 * the newest one of an incremental. A rollback with nothing incoming sends nothing.
 */
function travelling(plan: InitialPlan | IncrementalPlan): Snapshot | undefined {
  if (plan.kind === 'initial') return plan.first;
  return plan.incoming.length > 0 ? plan.target : undefined;
}

/**
 * A transfer that failed with nothing of it kept (no snapshot received, and no resumable partial receive, for
 * which the hold stays) leaves nothing behind: not even the hold it put on the source's snapshot. Where some of
 * it arrived, the tag moves to that instead (settleAfterFailure), and from the travelling snapshot with it.
 */
async function releaseIfNothingArrived(
  plan: InitialPlan | IncrementalPlan,
  settings: ReplicationSettings,
  context: ReplicationContext,
): Promise<void> {
  const snapshot = travelling(plan);
  if (snapshot === undefined) return;
  try {
    // zfs-fuse may show the killed receive's new dataset for a moment: with no snapshot nor resume token it
    // holds nothing of the stream.
    const replica = await context.local.state(settings.localDataset);
    const incoming = new Set(plan.incoming.map((candidate) => candidate.guid));
    if (replica.snapshots.some((candidate) => incoming.has(candidate.guid)) || replica.resumeToken !== undefined)
      return;
    await context.remote.release(settings.tag, settings.remoteDataset, snapshot.name);
  } catch (error) {
    context.log.warn(
      `could not confirm the release of hold "${settings.tag}" on ${context.remote.label}:${settings.remoteDataset}@${snapshot.name}, which nothing needs after the failed transfer (the next run releases it if it is still there): ${errorMessage(error)}`,
    );
  }
}

/**
 * The remote was listed before pull() held the travelling snapshot: that hold is counted in, or the tag moved
 * on from it (a cut rest, the full run) would stay behind on the source.
 */
function remoteAsHeld(prepared: PreparedRun): Snapshot[] {
  const { plan, pair } = prepared;
  const heldMeanwhile = new Set<string>();
  if (plan.kind === 'initial' || plan.kind === 'incremental') {
    const first = travelling(plan);
    if (first !== undefined) heldMeanwhile.add(first.guid);
    if (baseHeldBeforeStream(plan, prepared)) heldMeanwhile.add(plan.base.remote.guid);
  }
  return pair.remote.snapshots.map((snapshot) =>
    heldMeanwhile.has(snapshot.guid) ? { ...snapshot, userrefs: snapshot.userrefs + 1 } : snapshot,
  );
}

/** Moves the tag to `snapshot` on both sides (hold first, then release elsewhere). */
export async function holdOnBothSides(
  snapshot: Snapshot,
  localState: DatasetState,
  prepared: PreparedRun,
  settings: ReplicationSettings,
  context: ReplicationContext,
): Promise<void> {
  const localTwin = localState.snapshots.find((candidate) => candidate.guid === snapshot.guid);
  const remoteSnapshots = remoteAsHeld(prepared);
  const remoteTwin = remoteSnapshots.find((candidate) => candidate.guid === snapshot.guid);
  if (localTwin === undefined || remoteTwin === undefined) return;
  await moveHolds({
    tag: settings.tag,
    sides: [
      { zfs: context.remote, dataset: settings.remoteDataset, keep: remoteTwin, snapshots: remoteSnapshots },
      { zfs: context.local, dataset: settings.localDataset, keep: localTwin, snapshots: localState.snapshots },
    ],
    expectNew: true,
    log: context.log,
  });
}

/**
 * A snapshot that `--rollback` would destroy may carry our own tag (it was our base until the source lost
 * it): that hold protects nothing any more, so it is released. Any other hold (a downstream host's) refuses
 * the rollback before anything is destroyed. zfs-fuse cannot list tags, so the count after our release tells.
 */
async function releaseOwnHoldsOrRefuse(
  plan: IncrementalPlan,
  settings: ReplicationSettings,
  context: ReplicationContext,
): Promise<void> {
  const held = plan.discard.filter((snapshot) => snapshot.userrefs > 0);
  if (held.length === 0) return;
  for (const snapshot of held) await context.local.release(settings.tag, settings.localDataset, snapshot.name);
  const after = await context.local.state(settings.localDataset);
  const stillHeld = held.filter((snapshot) =>
    after.snapshots.some((candidate) => candidate.guid === snapshot.guid && candidate.userrefs > 0),
  );
  if (stillHeld.length > 0) {
    const one = stillHeld.length === 1;
    throw new ConflictError(
      'EHELD',
      `cannot roll back ${settings.localDataset} to @${plan.base.local.name}: ${describeSnapshots(stillHeld)} ${one ? 'carries a hold' : 'carry holds'} of another tag (a downstream host may depend on ${one ? 'it' : 'them'}); release the holds by hand first (nothing was destroyed)`,
    );
  }
}

/**
 * rc 0 can lie on zfs-fuse (an incremental into a missing target lands elsewhere; a duplicate receive
 * "succeeds" with 0 bytes): the replica must now hold every expected snapshot with the remote's guid.
 */
async function verify(
  expected: readonly Snapshot[],
  settings: ReplicationSettings,
  context: ReplicationContext,
): Promise<DatasetState> {
  const state = await context.local.state(settings.localDataset);
  const present = new Set(state.snapshots.map((snapshot) => snapshot.guid));
  const missing = expected.filter((snapshot) => !present.has(snapshot.guid));
  if (missing.length > 0) throw verifyError(settings, context.remote.label, missing);
  return state;
}

function verifyError(settings: ReplicationSettings, remoteHost: string, missing: readonly Snapshot[]): FailureError {
  return new FailureError(
    'EVERIFY',
    `after receiving, ${settings.localDataset} lacks ${snapshotList(missing)} of ${remoteHost}:${settings.remoteDataset} (matched by guid): the receive did not land where expected`,
  );
}
