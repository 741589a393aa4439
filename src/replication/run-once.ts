import { ConflictError, errorMessage } from '../errors/errors.js';
import { expireSnapshots } from '../retention/expire.js';
import { planExpiry } from '../retention/plan.js';
import type { DatasetState } from '../zfs/types.js';
import { executePlan } from './execute.js';
import { planReplication } from './plan.js';
import { reportDryRun } from './report.js';
import { settleInterruptedReceive } from './resume.js';
import type { ListedPair, PreparedRun, ReplicationContext, ReplicationSettings } from './types.js';

/** What a recursive run already knows about one of its members. */
export interface MemberHints {
  /** Both sides from the tree listing, when it is still fresh. */
  listed?: ListedPair | undefined;
  /** Dry-run only: replicas the tree receives before this one. */
  parentsArriving?: ReadonlySet<string>;
}

/**
 * One run of one dataset, in the order it happens: settle an interrupted receive, list, plan, then report
 * (dry-run) or execute, then expire. Expiry runs on every run, also when nothing new arrived, and also after
 * a failed transfer whose listings are still valid; never after a conflict or an interruption.
 * Resolves to whether anything was (or, in a dry-run, would be) received.
 */
export async function runOnce(
  settings: ReplicationSettings,
  context: ReplicationContext,
  member: MemberHints = {},
): Promise<{ received: boolean }> {
  const listed = member.listed ?? (await listPair(settings, context));
  const pair = settings.dryRun ? listed : await settleInterruptedReceive(listed, settings, context);
  context.log.debug(`listed ${pair.remote.snapshots.length} remote and ${pair.local.snapshots.length} local snapshots`);
  const plan = planReplication({
    remote: pair.remote,
    local: pair.local,
    remoteHost: context.remote.label,
    nowSeconds: nowSeconds(context),
    keepSeconds: settings.keepSeconds,
    rollback: settings.rollback,
  });
  if (plan.kind === 'conflict') throw new ConflictError(plan.code, plan.message);
  const prepared: PreparedRun = { plan, pair };
  const received = plan.kind !== 'up-to-date' || pair !== listed;
  if (settings.dryRun) {
    await reportDryRun(prepared, settings, context, member.parentsArriving);
    return { received };
  }

  let transferError: unknown;
  let after: { local: DatasetState; baseGuid: string | undefined };
  try {
    const executed = await executePlan(prepared, settings, context);
    after = { local: executed.localState, baseGuid: executed.base.local.guid };
  } catch (error) {
    if (error instanceof ConflictError || context.cancelSignal.aborted) throw error;
    transferError = error;
    after = { local: pair.local, baseGuid: plan.kind === 'initial' ? undefined : plan.base.local.guid };
  }
  try {
    // After a failure the replica may hold part of the stream: list it again rather than trust the old listing.
    const local = transferError === undefined ? after.local : await context.local.state(settings.localDataset);
    const expiry = planExpiry({
      local: local.snapshots,
      remote: pair.remote.snapshots,
      baseGuid: after.baseGuid,
      nowSeconds: nowSeconds(context),
      keepSeconds: settings.keepSeconds,
    });
    await expireSnapshots(expiry, {
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

/** Both sides in one command each, at the same time. */
async function listPair(settings: ReplicationSettings, context: ReplicationContext): Promise<ListedPair> {
  const [remote, local] = await Promise.all([
    context.remote.state(settings.remoteDataset),
    context.local.state(settings.localDataset),
  ]);
  return { remote, local };
}

function nowSeconds(context: ReplicationContext): number {
  return Math.floor(context.now().getTime() / 1000);
}
