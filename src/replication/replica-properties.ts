import { replicaProperties } from '../zfs/stream-args.js';
import type { DatasetState } from '../zfs/types.js';
import { hasOwnClaim } from './claim.js';
import type { ReplicationContext } from './types.js';

/**
 * The replica's protective properties (see replicaProperties) that nobody has set. On zfs-fuse they follow the
 * full receive as commands of their own, so a run stopped in between leaves them unset for good (a writable
 * replica mounted at boot, then "modified"); so does a replica received by hand before this tool took it over.
 * Asked only until the replica's claim is recorded (its first whole run): one `zfs get` then, none after. A
 * value someone set, or one inherited from a parent, is left as it is.
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
  return wanted.filter(([property]) => ['default', '-', undefined].includes(sources.get(property)));
}
