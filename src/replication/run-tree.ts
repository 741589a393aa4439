import {
  ConflictError,
  FailureError,
  LockedError,
  ReplicateError,
  UsageError,
  errorMessage,
} from '../errors/errors.js';
import type { HeldLock } from '../lock/lock.js';
import type { Listing } from '../zfs/listing.js';
import { isUnder, parentOf } from '../zfs/names.js';
import { CLAIM_PROPERTY, readSourceClaims, refuseSharedUpstreamTag, refuseSourceCopiedFromReplica } from './claim.js';
import { HoldBatch } from './hold-batch.js';
import type { HoldMove } from './holds.js';
import { runOnce } from './run-once.js';
import { Slots } from './slots.js';
import { type TreeMember, counterpart, isExcluded, planTree } from './tree.js';
import type { ReplicationContext, ReplicationSettings, RunOutcome } from './types.js';

export interface TreeSettings extends ReplicationSettings {
  exclude: readonly string[];
  /** How many members replicate at once (all over the run's one ssh connection). */
  jobs: number;
}

export interface TreeContext extends ReplicationContext {
  /**
   * Locks replicas, all in one go: each one's lock, or why not: another run holds it (LockedError), or it
   * could not be locked at all (that member's failure only). Nothing is reported here: a replica may turn out
   * not to be a member.
   */
  lockMembers: (localDatasets: readonly string[]) => Map<string, HeldLock | Error>;
  /** Told each member that another run holds: it is skipped (a tree member's own job is under way). */
  memberLocked?: (member: MemberName, error: LockedError) => void;
  /**
   * Told the replicas under the root that are not members: those whose source is gone (the top of each such
   * subtree), and those --exclude leaves out. Both are left alone.
   */
  treeShape?: (shape: { gone: readonly string[]; excluded: readonly string[] }) => void;
  /**
   * Told each member's end: what its run did (`container`: a root with no snapshots of its own, replicated
   * through its children), or why it did not run to its end; `startedAt` in Unix seconds.
   */
  memberDone?: (member: MemberName, result: MemberResult, startedAt: number) => void;
}

export type MemberResult = { outcome: RunOutcome; container?: true } | { error: unknown };

export interface MemberName {
  localDataset: string;
  remoteDataset: string;
}

/** What a whole tree run did: the members' sums, and every member this run found in the tree. */
export interface TreeOutcome {
  members: MemberName[];
  receivedSnapshots: number;
  receivedBytes: number;
  expiredSnapshots: number;
}

/**
 * How long members are planned from the tree listing as it was listed. Every member is locked, so only the source
 * can change meanwhile: its own pruning may destroy snapshots the listing names, which would fail that member's send
 * or its check of what arrived. A member planned later lists both sides again; a tree of small changes (the usual
 * cron run) is done long before, and saves two listings per member.
 */
export const TREE_LISTING_REUSE_MS = 30_000;

/**
 * The longest a member's new base waits for its holds while other members transfer: short next to any pruning
 * schedule, long enough to gather the moves of the members that finish meanwhile.
 */
export const HOLD_GATHERING_MS = 1000;

const NOTHING_DONE: RunOutcome = { received: false, receivedSnapshots: 0, receivedBytes: 0, expiredSnapshots: 0 };

type Outcome = { member: TreeMember; problem: 'conflict' | 'failed'; detail: string };

/**
 * `--recursive`: replicates every member of the tree on its own (its own base, holds, bookmark and expiry),
 * up to `jobs` at once, each only after its parent. Every replica is locked before it is listed, so no member
 * is planned from a listing that another job (a single-dataset cron line on one member) could have made stale:
 * that job's run either finished before our listing or waits for our lock. The replicas that exist are
 * locked first, while the source's tree is being listed; a member whose replica appears only in the listing is
 * locked after it, and lists itself again. A member that has received waits for its new base's holds out of its
 * slot, and the members' holds are moved together whenever no member is busy, within a second (HoldBatch). One member's failure
 * does not stop the others; the run ends with one summary error naming every member that was not replicated.
 */
export async function runTree(settings: TreeSettings, context: TreeContext): Promise<TreeOutcome> {
  const { remote, local } = context;
  const root = settings.localDataset;
  const listedAt = context.now().getTime();
  // The two long listings run at once: the source's tree, and this host's once its replicas are locked.
  const remoteListing = remote.tree(settings.remoteDataset);
  remoteListing.catch(() => undefined); // awaited below; it must not count as unhandled meanwhile
  const locks = new Map<string, HeldLock>();
  const refusals = new Map<string, Error>();
  // Every name ends in `locks` or in `refusals`: a member in neither would run unlocked.
  const lock = (names: readonly string[]) => {
    const attempts = context.lockMembers(names);
    for (const name of names) {
      const attempt = attempts.get(name) ?? new FailureError('ELOCK', `${name} was not locked`);
      if (attempt instanceof Error) refusals.set(name, attempt);
      else locks.set(name, attempt);
    }
  };
  try {
    const leftOut = (name: string) => isExcluded(counterpart(name, root, settings.remoteDataset), settings.exclude);
    lock((await local.datasetNames(root)).filter((name) => name !== root && !leftOut(name)));
    const [remoteTree, localTree, claims, sourceClaims] = await Promise.all([
      remoteListing,
      local.tree(root),
      local.userProperty(CLAIM_PROPERTY),
      readSourceClaims(remote, settings.remoteDataset, 'tree', context.log),
    ]);
    await refuseOverlap(remoteTree, localTree, settings, context);
    const tree = planTree({
      remoteRoot: settings.remoteDataset,
      localRoot: root,
      remote: remoteTree,
      local: localTree,
      exclude: settings.exclude,
    });
    for (const member of tree.members) {
      const sourceClaim = sourceClaims.get(member.remoteDataset);
      refuseSharedUpstreamTag(sourceClaim, member.remoteDataset, settings.tag, remote.label);
      try {
        refuseSourceCopiedFromReplica({
          sourceClaim,
          sourceDataset: member.remoteDataset,
          tag: settings.tag,
          remoteHost: remote.label,
          local: { dataset: member.localDataset, guid: localTree.get(member.localDataset)?.guid },
        });
      } catch (refusal) {
        refusals.set(member.localDataset, refusal as Error);
      }
    }
    // A member without a replica a moment ago is locked only now, after the listing: it is listed again.
    const lockedLate = tree.members
      .map((member) => member.localDataset)
      .filter((name) => name !== root && !locks.has(name) && !refusals.has(name));
    lock(lockedLate);
    // Replicas that are not members (their source is gone, see reportTreeShape) were locked for nothing.
    const memberNames = new Set(tree.members.map((member) => member.localDataset));
    for (const [name, held] of locks) {
      if (memberNames.has(name)) continue;
      held.release();
      locks.delete(name);
    }
    context.treeShape?.({ gone: tree.localOnly, excluded: [...localTree.keys()].filter((name) => leftOut(name)) });
    reportTreeShape(tree.localOnly, settings, context);
    warnUnmatchedExcludes(settings, context, [...remoteTree.keys()]);
    return await replicateMembers(tree.members, settings, context, {
      locks,
      refusals,
      claims,
      listedAt,
      lockedLate: new Set(lockedLate),
    });
  } finally {
    for (const held of locks.values()) held.release();
  }
}

interface MemberAccess {
  locks: ReadonlyMap<string, HeldLock>;
  /** Members whose replica could not be locked: another run holds it (LockedError), or the lock failed. */
  refusals: ReadonlyMap<string, Error>;
  claims: ReadonlyMap<string, string>;
  /** When the source's tree was listed (context.now(), in ms): the local one, listed later, is locked. */
  listedAt: number;
  /** Members locked after the local listing (they had no replica yet): never planned from it. */
  lockedLate: ReadonlySet<string>;
}

async function replicateMembers(
  members: readonly TreeMember[],
  settings: TreeSettings,
  context: TreeContext,
  { locks, refusals, claims, listedAt, lockedLate }: MemberAccess,
): Promise<TreeOutcome> {
  const { remote, log } = context;
  log.debug(`recursive: ${members.length} datasets under ${remote.label}:${settings.remoteDataset}`);
  const parentsArriving = new Set(
    members.filter((member) => !member.local.exists && member.remote.snapshots.length > 0).map((m) => m.localDataset),
  );
  const problems: Outcome[] = [];
  const total: TreeOutcome = {
    members: members.map(({ localDataset, remoteDataset }) => ({ localDataset, remoteDataset })),
    receivedSnapshots: 0,
    receivedBytes: 0,
    expiredSnapshots: 0,
  };
  // New replicas that were not made this run: receiving a child first would create them with `zfs create`,
  // a plain dataset that could never become a replica. `failed` ones make their children failures too;
  // `waiting` ones (no snapshot yet at the source) only hold their children back, with one warning.
  const failed = new Set<string>();
  const waiting = new Map<string, string[]>();
  // Members run in parallel (a dry run's printed plans one after another), each only after its parent has
  // ended: every check of `failed` and `waiting` below then sees all of the member's ancestors decided.
  // Members wait for their new bases' holds out of their slots; once no member is busy, or a move has waited
  // HOLD_GATHERING_MS, all waiting moves are done together.
  const holds = new HoldBatch(HOLD_GATHERING_MS);
  const slots = new Slots(settings.dryRun ? 1 : settings.jobs, () => void holds.flush());
  const holdMover = (move: HoldMove) => slots.aside(() => holds.move(move));
  let interrupted: { error: unknown } | undefined;
  const replicateMember = async (member: TreeMember): Promise<void> => {
    if (context.cancelSignal.aborted) return;
    const isRoot = member.localDataset === settings.localDataset;
    const failedParent = [...failed].find((ancestor) => isUnder(member.localDataset, ancestor));
    if (failedParent !== undefined) {
      failed.add(member.localDataset);
      problems.push({ member, problem: 'failed', detail: `skipped: its parent ${failedParent} was not replicated` });
      return;
    }
    // Not a failure of this run (a dataset created since the last recursive snapshot), but not a backup either:
    // its record says so, so that check and the metrics do not take it for a replica that never ran.
    const notYet = (why: string) =>
      context.memberDone?.(
        member,
        { error: new ConflictError('EREMOTEEMPTY', `not replicated yet: ${why}`) },
        context.now().getTime() / 1000,
      );
    const waitingParent = [...waiting.keys()].find((ancestor) => isUnder(member.localDataset, ancestor));
    if (waitingParent !== undefined) {
      if (!member.local.exists) {
        waiting.get(waitingParent)?.push(member.localDataset);
        notYet(`it waits for ${waitingParent}, whose source has no snapshot`);
      }
      return;
    }
    // It and the members under it wait for a snapshot: a child's `zfs create -p` would make it a plain dataset.
    const waitForSnapshot = () => {
      waiting.set(member.localDataset, []);
      notYet(`${remote.label}:${member.remoteDataset} has no snapshot`);
    };
    if (!isRoot && !member.local.exists && member.remote.snapshots.length === 0) {
      waitForSnapshot();
      return;
    }
    const refusal = refusals.get(member.localDataset);
    if (refusal instanceof LockedError) {
      context.memberLocked?.(member, refusal);
      if (!member.local.exists) failed.add(member.localDataset);
      return;
    }
    if (refusal !== undefined) {
      log.error(memberErrorLine(member, refusal));
      context.memberDone?.(member, { error: refusal }, context.now().getTime() / 1000);
      if (!member.local.exists) failed.add(member.localDataset);
      problems.push({ member, problem: 'failed', detail: codeOf(refusal) });
      return;
    }
    const memberLock = locks.get(member.localDataset);
    await slots.run(async () => {
      if (context.cancelSignal.aborted) return;
      if (settings.dryRun) context.print(`${remote.label}:${member.remoteDataset} -> ${member.localDataset}:`);
      const now = context.now().getTime();
      const startedAt = now / 1000;
      // A clock stepped back makes the age negative: that listing is not trusted either.
      const listingFresh = now >= listedAt && now - listedAt < TREE_LISTING_REUSE_MS;
      try {
        const outcome = await runOnce(
          { ...settings, remoteDataset: member.remoteDataset, localDataset: member.localDataset },
          { ...context, lockFd: memberLock?.fd ?? context.lockFd, holdMover },
          {
            listed:
              listingFresh && !lockedLate.has(member.localDataset)
                ? { remote: member.remote, local: member.local }
                : undefined,
            parentsArriving,
            claims,
            upstreamChecked: true,
          },
        );
        total.receivedSnapshots += outcome.receivedSnapshots;
        total.receivedBytes += outcome.receivedBytes;
        total.expiredSnapshots += outcome.expiredSnapshots;
        context.memberDone?.(member, { outcome }, startedAt);
      } catch (thrown) {
        const error = isRoot ? asParentOfReplicas(thrown, member, members, context) : thrown;
        // Its source lost its snapshots since the tree listing: it waits as a member listed without any does.
        if (!context.cancelSignal.aborted && lostItsSnapshots(error, member, isRoot)) {
          waitForSnapshot();
          return;
        }
        const quiet =
          !context.cancelSignal.aborted &&
          (error instanceof ConflictError
            ? quietConflict(error, member, isRoot, startedAt, context)
            : !isRoot && (await goneDuringTransfer(member, context)));
        if (!quiet) context.memberDone?.(member, { error }, startedAt);
        if (context.cancelSignal.aborted) {
          interrupted ??= { error };
          return;
        }
        if (quiet) return;
        log.error(memberErrorLine(member, error));
        if (!member.local.exists) failed.add(member.localDataset);
        problems.push({
          member,
          problem: error instanceof ConflictError ? 'conflict' : 'failed',
          detail: codeOf(error),
        });
      }
    });
  };
  // The members come parents first: each one's nearest ancestor among them is already scheduled.
  const ends = new Map<string, Promise<void>>();
  for (const member of members) {
    const parent = nearestAncestor(member.localDataset, [...ends.keys()]);
    const parentEnd = (parent === undefined ? undefined : ends.get(parent)) ?? Promise.resolve();
    ends.set(
      member.localDataset,
      parentEnd.then(() => replicateMember(member)),
    );
  }
  const ended = await Promise.allSettled(ends.values());
  if (interrupted !== undefined) throw interrupted.error;
  const unexpected = ended.find((end): end is PromiseRejectedResult => end.status === 'rejected');
  if (unexpected !== undefined) throw unexpected.reason;
  for (const [member, children] of waiting) {
    const held =
      children.length > 0 ? `; ${children.length} dataset(s) under it wait for it: ${children.join(', ')}` : '';
    log.warn(`${member}: not replicated yet: its source has no snapshot (take one, e.g. zfs snapshot -r)${held}`);
  }
  if (problems.length > 0) throw treeError(problems, members.length);
  return total;
}

/**
 * Member situations that are normal in a living tree: a root that is only a container (sanoid's
 * process_children_only), a child created since the last recursive snapshot whose replica exists, a member
 * destroyed or renamed at the source while earlier members were transferring. Returns whether it was one.
 */
function quietConflict(
  error: ConflictError,
  member: TreeMember,
  isRoot: boolean,
  startedAt: number,
  context: TreeContext,
): boolean {
  const source = `${context.remote.label}:${member.remoteDataset}`;
  if (error.code === 'EREMOTEEMPTY') {
    // A replica with snapshots whose source now has none (destroyed, or moved away by zfs promote) is stalled:
    // a conflict for a human, as for a single dataset. Only a member not replicated yet is normal.
    if (member.local.snapshots.length > 0) return false;
    const containerRoot = isRoot;
    const line = `${member.localDataset}: not replicated: ${source} has no snapshots${containerRoot ? ' (only its children are)' : ''}`;
    if (containerRoot) context.log.info(line);
    else context.log.warn(line);
    context.memberDone?.(member, containerRoot ? { outcome: NOTHING_DONE, container: true } : { error }, startedAt);
    return true;
  }
  if (error.code === 'EREMOTEMISSING' && !isRoot) {
    logGone(member, context);
    return true;
  }
  return false;
}

/**
 * A tree's root replica without snapshots of its own, with members' replicas under it, is their plain parent
 * (made when the source's root had no snapshot, or by hand). Once the source's root has snapshots, they cannot
 * be received into it without destroying the replicas below; the planner's way out ("destroy it by hand")
 * would take them along.
 */
function asParentOfReplicas(
  error: unknown,
  root: TreeMember,
  members: readonly TreeMember[],
  context: TreeContext,
): unknown {
  if (!(error instanceof ConflictError) || error.code !== 'ENOTREPLICA') return error;
  if (!members.some((member) => member !== root && member.local.exists)) return error;
  const source = `${context.remote.label}:${root.remoteDataset}`;
  return new ConflictError(
    'ENOTREPLICA',
    `${root.localDataset} is the plain parent of this tree's replicas (no snapshot of its own: made while ${source} had none, or by hand), so ${source}'s own snapshots cannot be received into it without destroying the replicas below; the members go on. Do not destroy it. If ${source}'s own data needs no backup, destroy its snapshots there and snapshot only its children; to back it up too, pull the tree into a new -l (a full resend) and then retire this one (nothing was changed)`,
  );
}

function lostItsSnapshots(error: unknown, member: TreeMember, isRoot: boolean): boolean {
  return error instanceof ConflictError && error.code === 'EREMOTEEMPTY' && !isRoot && !member.local.exists;
}

/**
 * With members in parallel, a member destroyed or renamed at the source may already be transferring: its send
 * fails instead of its listing. When its source is gone, that is the same normal event as above.
 */
async function goneDuringTransfer(member: TreeMember, context: TreeContext): Promise<boolean> {
  const gone = await context.remote.exists(member.remoteDataset).then(
    (exists) => !exists,
    () => false,
  );
  if (gone) logGone(member, context);
  return gone;
}

function logGone(member: TreeMember, context: TreeContext): void {
  const source = `${context.remote.label}:${member.remoteDataset}`;
  context.log.info(`${member.localDataset}: ${source} is gone (destroyed or renamed during this run): left as it is`);
}

/**
 * A tree that contains its own replica (`-h` naming this host, `-l` under `-r`) would replicate the replica
 * into itself, one level deeper every run: refused before anything changes, by dataset guid. Before the first
 * run the replica does not exist yet: its nearest existing ancestor tells.
 */
async function refuseOverlap(
  remoteTree: Listing,
  localTree: Listing,
  settings: TreeSettings,
  context: TreeContext,
): Promise<void> {
  const remoteGuids = new Map([...remoteTree.values()].map((state) => [state.guid, state.dataset]));
  const refuse = (dataset: string, twin: string) => {
    throw new UsageError(
      `${context.remote.label}:${settings.remoteDataset} contains ${dataset} itself (as ${twin}): a tree cannot be replicated into itself (nothing was changed)`,
    );
  };
  for (const state of localTree.values()) {
    const twin = state.guid === undefined ? undefined : remoteGuids.get(state.guid);
    if (twin !== undefined) refuse(state.dataset, twin);
  }
  if (localTree.has(settings.localDataset)) return;
  for (let ancestor = parentOf(settings.localDataset); ancestor !== undefined; ancestor = parentOf(ancestor)) {
    const guid = await context.local.propertyOf(ancestor, 'guid');
    if (guid === undefined) continue;
    const twin = remoteGuids.get(guid);
    if (twin !== undefined) refuse(ancestor, twin);
    return;
  }
}

function reportTreeShape(localOnly: readonly string[], settings: TreeSettings, context: TreeContext): void {
  for (const dataset of localOnly) {
    const line = `${dataset} has no counterpart under ${context.remote.label}:${settings.remoteDataset} (destroyed or renamed there?): left as it is`;
    if (settings.dryRun) context.print(line);
    else context.log.info(line);
  }
}

/** A typo in --exclude must not pass in silence: it would replicate what the operator meant to leave out. */
function warnUnmatchedExcludes(settings: TreeSettings, context: TreeContext, remoteNames: readonly string[]): void {
  for (const exclusion of new Set(settings.exclude)) {
    if (!remoteNames.some((name) => name === exclusion || isUnder(name, exclusion))) {
      context.log.warn(
        `--exclude ${exclusion} matches no dataset under ${context.remote.label}:${settings.remoteDataset}`,
      );
    }
  }
}

function nearestAncestor(dataset: string, candidates: readonly string[]): string | undefined {
  return candidates
    .filter((candidate) => isUnder(dataset, candidate))
    .reduce<string | undefined>(
      (nearest, candidate) => (nearest && nearest.length > candidate.length ? nearest : candidate),
      undefined,
    );
}

/** A member's error line, with its code as a single run's line has it, and the member for JSON lines. */
/**
 * The fields go in the one object winston is given: a message with a `%s` in it (a tag, the probe's `date +%s`)
 * would otherwise be read as a format string, and its separate fields dropped.
 */
function memberErrorLine(member: TreeMember, error: unknown): { message: string; member: string; code?: string } {
  const line = { message: `${member.localDataset}: ${errorMessage(error)}`, member: member.localDataset };
  return error instanceof ReplicateError ? { ...line, code: error.code } : line;
}

function codeOf(error: unknown): string {
  return error instanceof ReplicateError ? error.code : 'error';
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
