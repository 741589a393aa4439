import type { Snapshot } from '../zfs/types.js';

export interface ExpiryInput {
  /** The replica's snapshots, oldest first. */
  local: readonly Snapshot[];
  /** The remote's snapshots: where a twin (same guid) exists, our hold on it must go first. */
  remote: readonly Snapshot[];
  /**
   * guids of the common snapshots that are or may be held on both sides (normally one: the base): never
   * expired, whatever their age. Empty: expire nothing.
   */
  bases: ReadonlySet<string>;
  nowSeconds: number;
  keepSeconds: number;
}

export interface ExpiryCandidate {
  snapshot: Snapshot;
  /** The remote twin, when it may carry a hold (userrefs > 0): released before the local destroy. */
  remoteTwin: Snapshot | undefined;
}

export type SurvivalReason = 'base' | 'within-keep';

export interface ExpiryPlan {
  expire: ExpiryCandidate[];
  survivors: { snapshot: Snapshot; reason: SurvivalReason }[];
}

/**
 * Which local snapshots a run expires: those created before now - keep, except the newest common snapshot
 * (the ancestor destroyed it after a long outage, forcing a full resend: received snapshots keep the sender's
 * creation time, so the base can be "old" the moment it arrives). Snapshots that exist only locally are
 * candidates too. Holds of other tags are found at destroy time ("busy"), where the platform tells.
 */
export function planExpiry(input: ExpiryInput): ExpiryPlan {
  const plan: ExpiryPlan = { expire: [], survivors: [] };
  if (input.bases.size === 0) {
    for (const snapshot of input.local) plan.survivors.push({ snapshot, reason: 'base' });
    return plan;
  }
  const oldestKept = input.nowSeconds - input.keepSeconds;
  const remoteByGuid = new Map(input.remote.map((snapshot) => [snapshot.guid, snapshot]));
  for (const snapshot of input.local) {
    if (input.bases.has(snapshot.guid)) plan.survivors.push({ snapshot, reason: 'base' });
    else if (snapshot.creation >= oldestKept) plan.survivors.push({ snapshot, reason: 'within-keep' });
    else {
      const twin = remoteByGuid.get(snapshot.guid);
      plan.expire.push({ snapshot, remoteTwin: twin !== undefined && twin.userrefs > 0 ? twin : undefined });
    }
  }
  return plan;
}
