import { FailureError, errorMessage, stopIfInterrupted } from '../errors/errors.js';
import type { Logger } from '../log/logger.js';
import type { DestroyResult, ZfsOperations } from '../zfs/host.js';
import type { ExpiryCandidate, ExpiryPlan } from './plan.js';

export interface ExpiryContext {
  remote: ZfsOperations;
  local: ZfsOperations;
  remoteDataset: string;
  localDataset: string;
  tag: string;
  log: Logger;
  /** A stop (SIGTERM, SIGINT) ends expiry between two snapshots: an operator stopping a wrong --keep. */
  cancelSignal?: AbortSignal;
}

/**
 * Releases our hold on each candidate's remote twin and confirms it is gone, then destroys the local snapshots
 * (one held or cloned snapshot never stops the others), and resolves to how many were destroyed. If the remote cannot be reached, nothing is destroyed:
 * unreachable is never read as "absent".
 */
export async function expireSnapshots(plan: ExpiryPlan, context: ExpiryContext): Promise<number> {
  if (plan.expire.length === 0) return 0;
  stopIfInterrupted(context.cancelSignal, 'before expiry (nothing expired)');
  const twins = plan.expire.filter(
    (candidate): candidate is ExpiryCandidate & { remoteTwin: NonNullable<ExpiryCandidate['remoteTwin']> } =>
      candidate.remoteTwin !== undefined,
  );
  try {
    for (const { remoteTwin } of twins)
      await context.remote.release(context.tag, context.remoteDataset, remoteTwin.name);
    await confirmReleased(
      context,
      twins.map((candidate) => candidate.remoteTwin.name),
    );
  } catch (error) {
    const why = errorMessage(error);
    throw new FailureError(
      'EEXPIRY',
      `expiry skipped, nothing destroyed: could not release hold "${context.tag}" on ${context.remote.label}:${context.remoteDataset}: ${why}`,
      { cause: error },
    );
  }

  for (const { snapshot } of plan.expire) {
    if (snapshot.userrefs > 0) await context.local.release(context.tag, context.localDataset, snapshot.name);
  }
  let results: Map<string, DestroyResult>;
  try {
    results = await context.local.destroySnapshots(
      context.localDataset,
      plan.expire.map(({ snapshot }) => snapshot.name),
      context.cancelSignal,
    );
  } catch (error) {
    throw new FailureError('EEXPIRY', `expiry stopped: ${errorMessage(error)}`, { cause: error });
  }
  let destroyed = 0;
  for (const [name, result] of results) {
    const snapshot = `${context.localDataset}@${name}`;
    if (result.outcome === 'destroyed') {
      destroyed++;
      context.log.info(`expired ${snapshot}`);
    }
    // Held by another tag (e.g. a downstream host in a chain) or cloned (a restore in progress): kept, not an error.
    else if (result.outcome === 'held')
      context.log.info(`kept ${snapshot} past keep: another hold protects it (a downstream host?)`);
    else
      context.log.info(
        `kept ${snapshot} past keep: ${result.clones.length > 0 ? result.clones.join(', ') : 'a clone'} depends on it (destroy the clone, or zfs promote it, to let it expire)`,
      );
  }
  const left = plan.expire.length - results.size;
  stopIfInterrupted(context.cancelSignal, `during expiry (${destroyed} expired, ${left} left for the next run)`);
  return destroyed;
}

/**
 * Asks the remote again: with `zfs holds` where it exists; on zfs-fuse a second release must answer "no such
 * tag" (a hold count alone cannot tell whose hold remains).
 */
async function confirmReleased(context: ExpiryContext, snapshots: readonly string[]): Promise<void> {
  if (snapshots.length === 0) return;
  const { remote, remoteDataset, tag } = context;
  if (remote.features.holdsCommand) {
    const holds = await remote.holds(remoteDataset, snapshots);
    const still = snapshots.filter((snapshot) => holds.get(snapshot)?.includes(tag));
    if (still.length > 0)
      throw new FailureError('EEXPIRY', `hold still present on ${still.map((name) => `@${name}`).join(', ')}`);
    return;
  }
  for (const snapshot of snapshots) {
    if ((await remote.release(tag, remoteDataset, snapshot)) !== 'absent') {
      throw new FailureError('EEXPIRY', `hold "${tag}" reappeared on @${snapshot}`);
    }
  }
}
