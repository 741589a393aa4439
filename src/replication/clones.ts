import { ConflictError } from '../errors/errors.js';
import type { ZfsOperations } from '../zfs/host.js';
import { snapshotName } from '../zfs/names.js';
import { type IncrementalPlan, describeSnapshots } from './plan.js';

/**
 * The clones that depend on each snapshot of `dataset` (a restore in progress, anywhere in its pool), by
 * snapshot name. zfs says so only when a destroy or a rollback fails: a dry run asks first to tell what
 * expiry would keep, and a rollback asks first to refuse before it has changed anything. One listing of the
 * pool's filesystems and volumes (no snapshots), so it stays cheap however many snapshots there are.
 */
export async function dependentClones(local: ZfsOperations, dataset: string): Promise<Map<string, string[]>> {
  const pool = dataset.split('/')[0] ?? dataset;
  const origins = await local.userProperty('origin', pool);
  const prefix = snapshotName(dataset, '');
  const clones = new Map<string, string[]>();
  for (const [clone, origin] of origins) {
    if (!origin.startsWith(prefix)) continue;
    const snapshot = origin.slice(prefix.length);
    clones.set(snapshot, [...(clones.get(snapshot) ?? []), clone]);
  }
  return clones;
}

/**
 * `zfs rollback -r` refuses when a clone depends on a snapshot it would destroy: a conflict for a human, found
 * before anything changes (our holds on those snapshots included), and told alike by a dry run.
 */
export async function refuseRollbackOverClones(
  plan: IncrementalPlan,
  local: ZfsOperations,
  localDataset: string,
): Promise<void> {
  if (plan.discard.length === 0) return;
  const clones = await dependentClones(local, localDataset);
  const cloned = plan.discard.filter((snapshot) => clones.has(snapshot.name));
  if (cloned.length === 0) return;
  const dependents = cloned.flatMap((snapshot) => clones.get(snapshot.name) ?? []);
  throw new ConflictError(
    'ECLONED',
    `cannot roll back ${localDataset} to @${plan.base.local.name}: ${dependents.join(', ')} ${dependents.length === 1 ? 'depends' : 'depend'} on ${describeSnapshots(cloned)}, which the rollback would destroy; copy what you need out of the clone and destroy it first (not zfs promote: that would move the replica's history into the clone) (nothing was changed)`,
  );
}
