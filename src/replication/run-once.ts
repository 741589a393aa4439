import { ConflictError, errorMessage } from '../errors.js';
import { describeExpiry } from '../retention/describe.js';
import { expireSnapshots } from '../retention/expire.js';
import { planExpiry } from '../retention/plan.js';
import type { Snapshot } from '../zfs/types.js';
import type { Plan } from './plan.js';
import { executePlan, prepareReplication, printPlan, type ExecutedRun, type ListedPair, type PreparedRun, type ReplicationContext, type ReplicationSettings } from './replicate.js';

export interface RunSettings extends ReplicationSettings {
  /** How keep reads in messages ("30 days", "36h"). */
  keepLabel: string;
}

/**
 * One run: plan, transfer, then expiry. Expiry runs on every run, also when nothing new arrived, and also
 * after a failed transfer whose listings are still valid; never after a conflict or an interruption.
 * Resolves to whether anything was (or, in a dry-run, would be) received.
 */
export async function runOnce(settings: RunSettings, context: ReplicationContext, listed?: ListedPair): Promise<{ received: boolean }> {
  const prepared = await prepareReplication(settings, context, listed);
  const received = prepared.plan.kind !== 'up-to-date';
  if (settings.dryRun) {
    await printPlan(prepared, settings, context);
    const after = expectedAfter(prepared);
    const expiry = planExpiry({ ...after, remote: prepared.remoteState.snapshots, ...window(settings, context) });
    const lines = describeExpiry(expiry, { tag: settings.tag, remoteHost: context.remote.label, keep: settings.keepLabel, now: context.now() });
    for (const line of lines) context.print(line);
    return { received };
  }

  let executed: ExecutedRun | undefined;
  let transferError: unknown;
  try {
    executed = await executePlan(prepared, settings, context);
  } catch (error) {
    if (error instanceof ConflictError || context.cancelSignal.aborted) throw error;
    transferError = error;
  }
  try {
    // After a failure the replica may hold part of the stream: list it again rather than trust the old listing.
    const local = executed?.localState ?? (await context.local.state(settings.localDataset));
    const plan = planExpiry({
      local: local.snapshots,
      remote: prepared.remoteState.snapshots,
      baseGuid: executed?.base.local.guid ?? currentBaseGuid(prepared.plan),
      ...window(settings, context),
    });
    await expireSnapshots(plan, {
      remote: context.remote,
      local: context.local,
      remoteDataset: settings.remoteDataset,
      localDataset: settings.localDataset,
      tag: settings.tag,
      log: context.log,
    });
  } catch (expiryError) {
    if (transferError === undefined) throw expiryError;
    context.log.error(errorMessage(expiryError));
  }
  if (transferError !== undefined) throw transferError;
  return { received };
}

function window(settings: RunSettings, context: ReplicationContext) {
  return { nowSeconds: Math.floor(context.now().getTime() / 1000), keepSeconds: settings.keepSeconds };
}

function currentBaseGuid(plan: Exclude<Plan, { kind: 'conflict' }>): string | undefined {
  return plan.kind === 'initial' ? undefined : plan.base.local.guid;
}

/** The replica's snapshots and base as they would be after the plan ran (for the dry-run's expiry report). */
function expectedAfter(prepared: PreparedRun): { local: Snapshot[]; baseGuid: string | undefined } {
  const { plan, localState } = prepared;
  const arriving = (snapshots: readonly Snapshot[]) => snapshots.map((snapshot) => ({ ...snapshot, userrefs: 0 }));
  switch (plan.kind) {
    case 'up-to-date':
      return { local: localState.snapshots, baseGuid: plan.base.local.guid };
    case 'initial':
      return { local: arriving(plan.incoming), baseGuid: plan.target.guid };
    case 'incremental': {
      const discarded = new Set(plan.discard.map((snapshot) => snapshot.guid));
      const kept = localState.snapshots.filter((snapshot) => !discarded.has(snapshot.guid));
      return { local: [...kept, ...arriving(plan.incoming)], baseGuid: plan.target.guid };
    }
  }
}
