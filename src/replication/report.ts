import { describeExpiry } from '../retention/describe.js';
import { planExpiry } from '../retention/plan.js';
import type { Snapshot } from '../zfs/types.js';
import { sourceNowSeconds } from './clock.js';
import { dependentClones } from './clones.js';
import { describePlan } from './describe.js';
import { missingParent } from './execute.js';
import { formatBytes, snapshotList } from './format.js';
import { snapshotsCarrying } from './holds.js';
import { sourceKeepsOnlyBookmark } from './plan.js';
import { plannedSends, runSendFlags } from './sends.js';
import type { PreparedRun, ReplicationContext, ReplicationSettings } from './types.js';

/**
 * The whole dry-run report of one dataset: what would be resumed, sent, created, rolled back, held and
 * released, the estimated size, and what expiry would then destroy and why each survivor survives.
 * `parentsArriving`: replicas a recursive run receives before this one (a missing parent among them is
 * received, not created).
 */
export async function reportDryRun(
  prepared: PreparedRun,
  settings: ReplicationSettings,
  context: ReplicationContext,
  parentsArriving: ReadonlySet<string> = new Set(),
): Promise<void> {
  const { local, remote, print } = context;
  const { plan, pair } = prepared;
  if (pair.local.resumeToken !== undefined) {
    print(`would first resume (or abort) the interrupted receive into ${settings.localDataset}`);
  }
  const missing = plan.kind === 'initial' ? await missingParent(local, settings.localDataset) : undefined;
  const parentMissing = missing !== undefined && parentsArriving.has(missing) ? undefined : missing;
  const now = sourceNowSeconds(context);
  const expiry = planExpiry({
    ...expectedAfter(prepared),
    remote: pair.remote.snapshots,
    nowSeconds: now,
    keepSeconds: settings.keepSeconds,
  });
  for (const line of describePlan(plan, { ...settings, remoteHost: remote.label, parentMissing })) print(line);
  print(await describeReleases(prepared, settings, context));

  const sends = plannedSends(plan, settings.remoteDataset);
  if (sends.length > 0) {
    const flags = runSendFlags(pair, settings, context);
    const estimates = await Promise.all(sends.map((send) => remote.estimateSendBytes([...flags, ...send.arguments])));
    const known = estimates.filter((estimate): estimate is number => estimate !== undefined);
    print(
      known.length === sends.length
        ? `estimated stream size: ${formatBytes(known.reduce((sum, estimate) => sum + estimate, 0))}${flags.length > 0 ? ` (zfs send ${flags.join(' ')})` : ''}`
        : `estimated stream size: unknown (${remote.label} cannot estimate: zfs send -nvP is missing)`,
    );
  }

  if (context.expiryWithheld !== undefined) {
    print(`would expire nothing: ${context.expiryWithheld}`);
    return;
  }
  const clones = expiry.expire.length > 0 ? await dependentClones(local, settings.localDataset) : new Map();
  const lines = describeExpiry(expiry, {
    tag: settings.tag,
    remoteHost: remote.label,
    keep: settings.keepLabel,
    now: new Date(now * 1000),
    clones,
  });
  for (const line of lines) print(line);
}

/** Which snapshots the tag would actually be taken off, on each side, once the new base is held. */
async function describeReleases(
  prepared: PreparedRun,
  settings: ReplicationSettings,
  context: ReplicationContext,
): Promise<string> {
  const { plan, pair } = prepared;
  const keep = plan.kind === 'up-to-date' ? plan.base.remote : plan.target;
  const remoteSide = { zfs: context.remote, dataset: settings.remoteDataset, keep, snapshots: pair.remote.snapshots };
  const localSide = { zfs: context.local, dataset: settings.localDataset, keep, snapshots: pair.local.snapshots };
  const sides = sourceKeepsOnlyBookmark(plan) ? [localSide] : [remoteSide, localSide];
  const parts: string[] = [];
  if (plan.kind === 'initial' && plan.first.guid !== plan.target.guid)
    parts.push(`from @${plan.first.name} on both sides (held while the rest of the initial sync travels)`);
  for (const side of sides) {
    const carrying = await snapshotsCarrying(settings.tag, side);
    if (carrying.length === 0) continue;
    // zfs-fuse counts holds but cannot name them: those are the snapshots that might carry ours.
    const guess = side.zfs.features.holdsCommand ? '' : ' (if held by it: zfs-fuse cannot tell whose holds these are)';
    parts.push(`from ${snapshotList(carrying)} on ${side.zfs.label}${guess}`);
  }
  return parts.length === 0
    ? `would release "${settings.tag}" from no other snapshot`
    : `would release "${settings.tag}" ${parts.join('; ')}`;
}

/** The replica's snapshots and base as they would be after the plan ran. */
export function expectedAfter(prepared: PreparedRun): { local: Snapshot[]; bases: ReadonlySet<string> } {
  const { plan, pair } = prepared;
  const arriving = (snapshots: readonly Snapshot[]) => snapshots.map((snapshot) => ({ ...snapshot, userrefs: 0 }));
  switch (plan.kind) {
    case 'up-to-date':
      return { local: pair.local.snapshots, bases: new Set([plan.base.local.guid]) };
    case 'initial':
      return { local: arriving(plan.incoming), bases: new Set([plan.target.guid]) };
    case 'incremental': {
      const discarded = new Set(plan.discard.map((snapshot) => snapshot.guid));
      const kept = pair.local.snapshots.filter((snapshot) => !discarded.has(snapshot.guid));
      return { local: [...kept, ...arriving(plan.incoming)], bases: new Set([plan.target.guid]) };
    }
  }
}
