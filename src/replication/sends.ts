import { snapshotName } from '../zfs/names.js';
import { sendFlags } from '../zfs/stream-args.js';
import type { HostFeatures } from '../zfs/types.js';
import type { Plan } from './plan.js';
import type { ListedPair, ReplicationSettings } from './types.js';

export interface PlannedSend {
  /** `zfs send` arguments after the feature flags: the snapshot(s) to send. */
  arguments: string[];
  /** For messages: "full @a", "@a..@d", "#bookmark..@e". */
  what: string;
  /** A full stream, which creates the replica. */
  full: boolean;
  /** How many snapshots the stream carries, for the progress line. */
  snapshots: number;
}

/**
 * The `zfs send` invocations a plan needs, in order. `-I` carries every intermediate snapshot in one stream;
 * from a bookmark only `-i` exists, so that hop goes to the first newer snapshot and `-I` does the rest.
 */
export function plannedSends(plan: Plan, remoteDataset: string): PlannedSend[] {
  const at = (name: string) => snapshotName(remoteDataset, name);
  const range = (from: string, to: string, snapshots: number): PlannedSend[] =>
    from === to ? [] : [{ arguments: ['-I', at(from), at(to)], what: `@${from}..@${to}`, full: false, snapshots }];
  switch (plan.kind) {
    case 'conflict':
    case 'up-to-date':
      return [];
    case 'initial':
      return [
        { arguments: [at(plan.first.name)], what: `full @${plan.first.name}`, full: true, snapshots: 1 },
        ...range(plan.first.name, plan.target.name, plan.incoming.length - 1),
      ];
    case 'incremental': {
      const first = plan.incoming[0];
      if (first === undefined) return [];
      if (!plan.base.viaBookmark) return range(plan.base.remote.name, plan.target.name, plan.incoming.length);
      const bookmark = `${remoteDataset}#${plan.base.remote.name}`;
      return [
        {
          arguments: ['-i', bookmark, at(first.name)],
          what: `#${plan.base.remote.name}..@${first.name}`,
          full: false,
          snapshots: 1,
        },
        ...range(first.name, plan.target.name, plan.incoming.length - 1),
      ];
    }
  }
}

/** This run's `zfs send` options: what both hosts support, raw where the source is encrypted. */
export function runSendFlags(
  pair: ListedPair,
  settings: Pick<ReplicationSettings, 'raw'>,
  hosts: { remote: { features: HostFeatures }; local: { features: HostFeatures } },
): string[] {
  return sendFlags(hosts.remote.features, hosts.local.features, settings.raw && pair.remote.encrypted === true);
}
