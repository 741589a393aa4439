import { replicaProperties } from '../zfs/stream-args.js';
import type { DatasetState } from '../zfs/types.js';
import { hasOwnClaim } from './claim.js';
import type { ReplicationContext } from './types.js';

/**
 * The replica's protective properties (see replicaProperties) that nobody has set. On zfs-fuse they follow the
 * full receive as commands of their own, so a run stopped in between leaves them unset for good (a writable
 * replica mounted at boot, then "modified"); so does a replica received by hand before this tool took it over.
 * Asked only until the replica's claim is recorded (its first whole run): one `zfs get` then, none after. A
 * value someone set on the replica itself is left as it is; an inherited one is replaced, as the initial
 * sync would have done (a pool's com.sun:auto-snapshot=true would otherwise fork the replica's history).
 */
export async function unsetReplicaProperties(
  replica: DatasetState,
  claims: ReadonlyMap<string, string>,
  context: Pick<ReplicationContext, 'local'>,
): Promise<Array<[string, string]>> {
  if (!replica.exists || hasOwnClaim(claims, replica.dataset)) return [];
  const wanted = replicaProperties(replica.type);
  const sources = await context.local.propertySources(
    replica.dataset,
    wanted.map(([property]) => property),
  );
  // An inherited value is not the replica's own: a whole initial sync sets all three on the replica itself.
  return wanted.filter(([property]) => !['local', 'received'].includes(sources.get(property) ?? '-'));
}
