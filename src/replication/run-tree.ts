import { ConflictError, FailureError, ReplicateError, errorMessage } from '../errors/errors.js';
import type { HeldLock } from '../lock/lock.js';
import { isUnder } from '../zfs/names.js';
import { runOnce } from './run-once.js';
import { type TreeMember, planTree } from './tree.js';
import type { ReplicationContext, ReplicationSettings } from './types.js';

export interface TreeSettings extends ReplicationSettings {
  exclude: readonly string[];
}

export interface TreeContext extends ReplicationContext {
  /** Locks one member's replica for its turn; undefined (already reported) when another run holds it. */
  lockMember: (localDataset: string) => HeldLock | undefined;
}

type Outcome = { member: TreeMember; problem: 'conflict' | 'failed'; detail: string };

/**
 * `--recursive`: lists both trees once, then replicates every member on its own (its own base, holds,
 * bookmark and expiry), parents first. One member's failure does not stop the others; the run ends with
 * one summary error naming every member that was not replicated.
 */
export async function runTree(settings: TreeSettings, context: TreeContext): Promise<void> {
  const { remote, local, log } = context;
  const [remoteTree, localTree] = await Promise.all([
    remote.tree(settings.remoteDataset),
    local.tree(settings.localDataset),
  ]);
  const tree = planTree({
    remoteRoot: settings.remoteDataset,
    localRoot: settings.localDataset,
    remote: remoteTree,
    local: localTree,
    exclude: settings.exclude,
  });
  log.debug(`recursive: ${tree.members.length} datasets under ${remote.label}:${settings.remoteDataset}`);
  for (const localOnly of tree.localOnly) {
    const line = `${localOnly} has no counterpart under ${remote.label}:${settings.remoteDataset} (destroyed or renamed there?): left as it is`;
    if (settings.dryRun) context.print(line);
    else log.info(line);
  }

  const parentsArriving = new Set(
    tree.members.filter((member) => !member.local.exists).map((member) => member.localDataset),
  );
  const problems: Outcome[] = [];
  // Members are planned from the tree listing until one receives (or fails): a transfer can take hours, in
  // which the source's own pruning may destroy snapshots the listing still names. Later members list again.
  let listingFresh = true;
  const notReplicated = new Set<string>();
  for (const member of tree.members) {
    if (context.cancelSignal.aborted) break;
    const blockedBy = [...notReplicated].find((ancestor) => isUnder(member.localDataset, ancestor));
    if (blockedBy !== undefined) {
      // Receiving it would first create its parent with `zfs create`, which would then never become a replica.
      notReplicated.add(member.localDataset);
      problems.push({ member, problem: 'failed', detail: `skipped: its parent ${blockedBy} was not replicated` });
      continue;
    }
    const isRoot = member.localDataset === settings.localDataset;
    const memberLock = isRoot ? undefined : context.lockMember(member.localDataset);
    if (!isRoot && memberLock === undefined) {
      if (!member.local.exists) notReplicated.add(member.localDataset);
      continue;
    }
    if (settings.dryRun) context.print(`${remote.label}:${member.remoteDataset} -> ${member.localDataset}:`);
    try {
      const { received } = await runOnce(
        { ...settings, remoteDataset: member.remoteDataset, localDataset: member.localDataset },
        { ...context, lockFd: memberLock?.fd ?? context.lockFd },
        { listed: listingFresh ? { remote: member.remote, local: member.local } : undefined, parentsArriving },
      );
      if (!settings.dryRun && received) listingFresh = false;
    } catch (error) {
      if (context.cancelSignal.aborted) throw error;
      if (error instanceof ConflictError && error.code === 'EREMOTEEMPTY') {
        // A root that is only a container (sanoid's process_children_only) is normal, quietly; a child created
        // since the last recursive snapshot is worth a line until its first snapshot.
        const containerRoot = isRoot && member.local.snapshots.length === 0;
        const line = `${member.localDataset}: not replicated: ${remote.label}:${member.remoteDataset} has no snapshots${containerRoot ? ' (only its children are)' : ''}`;
        if (containerRoot) log.info(line);
        else log.warn(line);
        continue;
      }
      // A conflict is found before anything runs; any other failure may come after a long transfer.
      if (!(error instanceof ConflictError)) listingFresh = false;
      log.error(`${member.localDataset}: ${errorMessage(error)}`);
      if (!member.local.exists) notReplicated.add(member.localDataset);
      problems.push({
        member,
        problem: error instanceof ConflictError ? 'conflict' : 'failed',
        detail: error instanceof ReplicateError ? error.code : 'error',
      });
    } finally {
      memberLock?.release();
    }
  }
  if (problems.length > 0) throw treeError(problems, tree.members.length);
}

/** One line naming every member that was not replicated; exit 4 when any of them needs a human. */
function treeError(problems: readonly Outcome[], total: number): ConflictError | FailureError {
  const listed = problems.map(
    ({ member, problem, detail }) =>
      `${member.localDataset} (${problem === 'conflict' ? `conflict ${detail}` : detail})`,
  );
  const message = `${problems.length} of ${total} datasets not replicated: ${listed.join(', ')}`;
  return problems.some((outcome) => outcome.problem === 'conflict')
    ? new ConflictError('ETREE', message)
    : new FailureError('ETREE', message);
}
