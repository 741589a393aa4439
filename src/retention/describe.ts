import { formatDistanceStrict } from 'date-fns/formatDistanceStrict';
import type { ExpiryPlan } from './plan.js';

/** Dry-run lines: what would be expired, and why each survivor survives. */
export function describeExpiry(
  plan: ExpiryPlan,
  context: {
    tag: string;
    remoteHost: string;
    keep: string;
    now: Date;
    /** The clones that depend on the replica's snapshots, by snapshot name: zfs refuses to destroy those. */
    clones: ReadonlyMap<string, readonly string[]>;
  },
): string[] {
  const age = (creation: number) => formatDistanceStrict(new Date(creation * 1000), context.now);
  const lines = plan.expire.map(({ snapshot, remoteTwin }) => {
    const clones = context.clones.get(snapshot.name);
    if (clones !== undefined)
      return `would keep @${snapshot.name} past keep (${age(snapshot.creation)} old): ${clones.join(', ')} ${clones.length === 1 ? 'depends' : 'depend'} on it (destroy the clone, or zfs promote it, to let it expire)`;
    const release = remoteTwin ? `, after releasing "${context.tag}" on its twin on ${context.remoteHost}` : '';
    const held =
      snapshot.userrefs > 0 ? ` (holds: ${snapshot.userrefs}; kept if a hold other than "${context.tag}" remains)` : '';
    return `would expire @${snapshot.name}: ${age(snapshot.creation)} old, older than ${context.keep}${release}${held}`;
  });
  for (const { snapshot, reason } of plan.survivors) {
    lines.push(
      reason === 'base'
        ? `keeps @${snapshot.name}: the newest common snapshot (never expired, whatever its age)`
        : `keeps @${snapshot.name}: ${age(snapshot.creation)} old, within ${context.keep}`,
    );
  }
  return lines;
}
