import { createHash } from 'node:crypto';
import { CommandError, UsageError } from '../errors/errors.js';
import type { Logger } from '../log/logger.js';
import type { ZfsHost, ZfsOperations } from '../zfs/host.js';
import { parentOf, snapshotName } from '../zfs/names.js';
import type { Snapshot } from '../zfs/types.js';
import type { ListedPair } from './types.js';

/**
 * The user property by which a replica records which source (by the source dataset's guid, whatever host
 * name reached it) and which tag it replicates with. Two replicas of one source under one tag on one host
 * would strip each other's hold at the source on every run; the claim lets the second be refused.
 */
export const CLAIM_PROPERTY = 'zfs_replicate:pull';

/**
 * The claim's value names its own dataset, so a value a child merely inherits (user properties are inherited)
 * is told from one set on the child itself.
 */
export function claimOf(remoteGuid: string, tag: string, localDataset: string): string {
  return `${remoteGuid}:${tagHash(tag)}:${localDataset}`;
}

function tagHash(tag: string): string {
  return createHash('sha256').update(tag).digest('hex').slice(0, 16);
}

/** Whether `dataset` carries a claim of its own (see claimOf): it has had a whole run under this name. */
export function hasOwnClaim(claims: ReadonlyMap<string, string>, dataset: string): boolean {
  return parseClaim(claims.get(dataset))?.dataset === dataset;
}

/**
 * Whether `sourceClaim` (the source dataset's own claim: it is itself a replica, one hop of a chain) was made
 * with `tag`. Both hops would then hold and release one tag on the middle host's snapshots: our release of an
 * old base would strip that host's own hold, and its expiry would then destroy our base.
 */
export function sharesUpstreamTag(sourceClaim: string | undefined, sourceDataset: string, tag: string): boolean {
  const claim = parseClaim(sourceClaim);
  return claim?.dataset === sourceDataset && claim.tagHash === tagHash(tag);
}

/** Starts readSourceClaims' command early (see read-ahead.ts). */
export function startReadingSourceClaims(remote: ZfsHost, dataset: string, scope: 'dataset' | 'tree'): void {
  if (scope === 'tree') remote.startUserPropertyRead(CLAIM_PROPERTY, dataset);
  else remote.startPropertyRead(dataset, CLAIM_PROPERTY);
}

/**
 * The claims on the source: the one of `dataset`, or with `tree` of every filesystem and volume under it.
 * A source's zfs_replicate-serve from before this check refuses the question: the run then goes on without
 * it, saying so once (the wrapper's upgrade brings the check back).
 */
export async function readSourceClaims(
  remote: ZfsOperations,
  dataset: string,
  scope: 'dataset' | 'tree',
  log: Logger,
): Promise<ReadonlyMap<string, string>> {
  try {
    if (scope === 'tree') return await remote.userProperty(CLAIM_PROPERTY, dataset);
    const claim = await remote.propertyOf(dataset, CLAIM_PROPERTY);
    return new Map(claim === undefined ? [] : [[dataset, claim]]);
  } catch (error) {
    // Only the question itself refused means an older wrapper; a dataset outside its prefixes is the run's error.
    if (!(error instanceof CommandError && /zfs_replicate-serve: refused: not a command/.test(error.stderr)))
      throw error;
    log.info(
      `${remote.label}'s zfs_replicate-serve predates the question for ${CLAIM_PROPERTY}: whether a chain's hops share a tag goes unchecked (upgrade it)`,
    );
    return new Map();
  }
}

/** A claim's parts (see claimOf); undefined for a value that is not one (unset, or set by hand). */
function parseClaim(value: string | undefined): { remoteGuid: string; tagHash: string; dataset: string } | undefined {
  const match = value?.match(/^(\d+):([0-9a-f]{16}):(.*)$/s);
  return match ? { remoteGuid: match[1]!, tagHash: match[2]!, dataset: match[3]! } : undefined;
}

/** Another local dataset that claims the same source and tag, if any, and the name it was claimed under. */
export interface Rival {
  dataset: string;
  /** The name in its claim, where that is not its own: the replica was renamed since its last run. */
  renamedFrom?: string;
}

/**
 * Another local dataset that claims the same source and tag, if any. A claim naming another dataset is either
 * inherited (its parent shows the same value), a copy of the replica named in it (which still carries it), or
 * the replica itself, renamed: only the last is a rival.
 */
export function rivalReplica(
  claims: ReadonlyMap<string, string>,
  remoteGuid: string,
  tag: string,
  localDataset: string,
): Rival | undefined {
  const hash = tagHash(tag);
  for (const [name, value] of claims) {
    const claim = parseClaim(value);
    if (name === localDataset || claim?.remoteGuid !== remoteGuid || claim.tagHash !== hash) continue;
    if (claim.dataset === name) return { dataset: name };
    const inherited = claims.get(parentOf(name) ?? '') === value;
    if (!inherited && claims.get(claim.dataset) !== value) return { dataset: name, renamedFrom: claim.dataset };
  }
  return undefined;
}

/**
 * Refuses, before anything changes, a run that would harm its own source or another replica: the remote and
 * the local dataset are one dataset (`-h` naming this host by any alias: names cannot tell, guids can),
 * another replica here already pulls the same source with the same tag, or the source is itself a replica
 * pulled with our tag (`sourceClaim`, when it was read).
 */
export function refuseHarmfulPair(
  pair: ListedPair,
  claims: ReadonlyMap<string, string>,
  tag: string,
  remoteHost: string,
  sourceClaim?: string,
): void {
  const { remote, local } = pair;
  // First: a replica named as its own source carries its own claim, which would read as a replica upstream.
  if (remote.guid !== undefined && remote.guid === local.guid) {
    throw new UsageError(
      `${remoteHost}:${remote.dataset} and ${local.dataset} are the same dataset (guid ${remote.guid}): a dataset cannot be its own replica (nothing was changed)`,
    );
  }
  refuseHarmfulUpstream({ sourceClaim, sourceDataset: remote.dataset, tag, remoteHost, local });
  if (remote.guid === undefined) return;
  const rival = rivalReplica(claims, remote.guid, tag, local.dataset);
  if (rival === undefined) return;
  const { dataset, renamedFrom } = rival;
  const shared = `${dataset}${renamedFrom === undefined ? '' : ` (renamed from ${renamedFrom})`} already replicates ${remoteHost}:${remote.dataset} with tag "${tag}" on this host: two replicas sharing a tag would release each other's hold at the source`;
  const free = `zfs inherit -r ${CLAIM_PROPERTY} ${dataset}`;
  const wayOut =
    renamedFrom === local.dataset
      ? `if you renamed it, point this job at it (-l ${dataset}); if you set it aside on purpose, free it (${free}), and this replica starts with a full send`
      : local.exists
        ? `use one tag per replica; if ${dataset} is abandoned, run ${free}`
        : `if this job's replica was moved to ${dataset} (zfs rename), this is an old line of it: change its -l or remove it; if the source was renamed, rename the replica to match (zfs rename ${dataset} ${local.dataset}); if ${dataset} is abandoned, run ${free}, and this replica starts with a full send`;
  throw new UsageError(`${shared}; ${wayOut} (nothing was changed)`);
}

/**
 * Refuses a source whose own claim (it is itself a replica) makes the pair harmful: see refuseSharedUpstreamTag
 * and refuseSourceCopiedFromReplica.
 */
export function refuseHarmfulUpstream(pair: UpstreamPair): void {
  refuseSourceCopiedFromReplica(pair);
  refuseSharedUpstreamTag(pair.sourceClaim, pair.sourceDataset, pair.tag, pair.remoteHost);
}

/** A source and its replica, with the source's own claim (read on the source: it may be a replica itself). */
export interface UpstreamPair {
  sourceClaim: string | undefined;
  sourceDataset: string;
  tag: string;
  remoteHost: string;
  local: { dataset: string; guid?: string | undefined };
}

/**
 * See sharesUpstreamTag: a chain whose hops share a tag loses the downstream replica's base. A fault of the
 * whole line (its -t), so a tree refuses it whole.
 */
export function refuseSharedUpstreamTag(
  sourceClaim: string | undefined,
  sourceDataset: string,
  tag: string,
  remoteHost: string,
): void {
  if (!sharesUpstreamTag(sourceClaim, sourceDataset, tag)) return;
  throw new UsageError(
    `${remoteHost}:${sourceDataset} is itself a replica, pulled on ${remoteHost} with the same tag "${tag}": two hops of a chain sharing a tag release each other's holds, and ${remoteHost}'s expiry would then destroy this replica's base; give each hop its own tag. If it was restored from a replica (zfs send -R carries the replica's properties), it is none: ${unclaimAdvice(sourceDataset, remoteHost)} (nothing was changed)`,
  );
}

/**
 * Refuses a source that is a copy of this replica (a fault of one member of a tree, not of the others):
 * - pulled from this very dataset (the claim's source guid is ours): a loop. Either this is the old line of a
 *   direction reversed (it would make the new primary a copy of its own copy, and --rollback would destroy
 *   what was written there since), or the first run of the new line, whose source still carries its claim
 *   from before: only the operator knows which is the primary now, so both are refused, naming both ways out.
 * - carrying this replica's claim: restored from it (`zfs send -R` copies the replica's properties), and its
 *   `canmount=noauto` and `com.sun:auto-snapshot=false` would stop its snapshots, and the backups with them,
 *   in silence.
 */
export function refuseSourceCopiedFromReplica({
  sourceClaim,
  sourceDataset,
  tag,
  remoteHost,
  local,
}: UpstreamPair): void {
  const upstream = parseClaim(sourceClaim);
  if (upstream?.dataset === sourceDataset && local.guid !== undefined && upstream.remoteGuid === local.guid) {
    throw new UsageError(
      `${remoteHost}:${sourceDataset} was replicated from ${local.dataset} (its ${CLAIM_PROPERTY} names this dataset's guid): pulling it back would make ${local.dataset} a copy of its own copy. If the direction was reversed and ${remoteHost}:${sourceDataset} is the primary now, remove the old line that pulls into ${sourceDataset} (it would roll the new primary back), and ${unclaimAdvice(sourceDataset, remoteHost)}; if ${local.dataset} is still the primary, remove this line instead (see README, Reversing the direction; nothing was changed)`,
    );
  }
  if (sourceDataset !== local.dataset && sharesUpstreamTag(sourceClaim, local.dataset, tag)) {
    throw new UsageError(
      `${remoteHost}:${sourceDataset} carries the claim of this replica, ${local.dataset}, with tag "${tag}": it was restored from it (zfs send -R), which also set canmount=noauto and com.sun:auto-snapshot=false there, so its snapshots may have stopped; ${unclaimAdvice(sourceDataset, remoteHost)} (nothing was changed)`,
    );
  }
}

function unclaimAdvice(sourceDataset: string, remoteHost: string): string {
  return `run zfs inherit -r ${CLAIM_PROPERTY} ${sourceDataset} on ${remoteHost}, and set its readonly, canmount and com.sun:auto-snapshot back as the source needs them`;
}

/**
 * What the replica's own claim says of this job, where it is not this job's exactly:
 * - `tag changed`: it names this source with another tag: the crontab line's tag was changed (or a second job
 *   pulls into this replica under its own tag). The old tag's holds stay on both sides until someone releases
 *   them: the run says so.
 * - `source replaced`: it names this tag and this replica but another source dataset: the source was replaced
 *   by a copy that still shares the replica's snapshots by guid (restored from this backup, or moved to another
 *   pool or host). A receive brings no holds, so the copy's snapshots carry none of ours, while the replica's
 *   still do: those are this job's own, from before.
 */
export function claimChange(
  ownClaim: string | undefined,
  remoteGuid: string,
  tag: string,
  localDataset: string,
): 'tag changed' | 'source replaced' | undefined {
  const claim = parseClaim(ownClaim);
  if (claim?.dataset !== localDataset) return undefined;
  const sameTag = claim.tagHash === tagHash(tag);
  if (claim.remoteGuid === remoteGuid) return sameTag ? undefined : 'tag changed';
  return sameTag ? 'source replaced' : undefined;
}

/**
 * A replica this job has not claimed under its tag yet (its first run, a changed -t, a claim freed with zfs
 * inherit, a replica received by hand or by the ancestor) may carry the tag on snapshots already. Where the
 * source's twin carries it too, the pair of holds is this job's own (an earlier run, the ancestor, a tag
 * changed back). Where it does not, the hold is another job's, most likely a downstream host's pulling from
 * this replica with that tag (a chain): taking it over would release that host's holds here, and expiry would
 * then destroy its base. Where `zfs holds` exists it tells; on zfs-fuse holding the tag answers "already
 * there" (a hold it adds is taken off again), which a dry run, changing nothing, does not ask.
 */
export async function refuseTagHeldByAnother(
  sides: { local: ZfsOperations; remote: ZfsOperations },
  pair: ListedPair,
  tag: string,
  dryRun: boolean,
): Promise<void> {
  const held = pair.local.snapshots.filter((snapshot) => snapshot.userrefs > 0);
  if (held.length === 0) return;
  const carriers = await carryingTag(sides.local, pair.local.dataset, held, tag, dryRun);
  const twins = new Map(pair.remote.snapshots.map((snapshot) => [snapshot.guid, snapshot]));
  const twinsHeld = carriers.flatMap((snapshot) => {
    const twin = twins.get(snapshot.guid);
    return twin !== undefined && twin.userrefs > 0 ? [twin] : [];
  });
  const ownOnSource = new Set(
    (await carryingTag(sides.remote, pair.remote.dataset, twinsHeld, tag, dryRun)).map((twin) => twin.guid),
  );
  const foreign = carriers.filter((snapshot) => !ownOnSource.has(snapshot.guid));
  if (foreign.length === 0) return;
  const where = foreign.map((snapshot) => `@${snapshot.name}`).join(', ');
  throw new UsageError(
    `tag "${tag}" already holds ${pair.local.dataset}${where}, and not its twin on the source: another job's hold, most likely a downstream host pulling from this replica with that tag, whose holds this job would release (and whose base expiry would destroy); give this job a tag of its own, or, if those holds are this job's own leftovers, release them (zfs release ${tag} ${pair.local.dataset}${where}) (nothing was changed)`,
  );
}

/** Those of `snapshots` (all with holds) that carry `tag`; none on zfs-fuse in a dry run, which cannot ask. */
async function carryingTag(
  zfs: ZfsOperations,
  dataset: string,
  snapshots: readonly Snapshot[],
  tag: string,
  dryRun: boolean,
): Promise<Snapshot[]> {
  if (snapshots.length === 0) return [];
  if (zfs.features.holdsCommand) {
    const tags = await zfs.tagsOn(snapshots.map((snapshot) => snapshotName(dataset, snapshot.name)));
    return snapshots.filter((snapshot) => tags.get(snapshotName(dataset, snapshot.name))?.includes(tag));
  }
  if (dryRun) return [];
  const carrying: Snapshot[] = [];
  for (const snapshot of snapshots) {
    if ((await zfs.hold(tag, dataset, snapshot.name)) === 'present') carrying.push(snapshot);
    else await zfs.release(tag, dataset, snapshot.name);
  }
  return carrying;
}
