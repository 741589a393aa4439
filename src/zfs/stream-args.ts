import type { HostFeatures } from './types.js';

/**
 * Properties every replica gets: readonly (a mounted, writable replica drifts and then refuses the next
 * incremental), no auto-mount at import, and no zfs-auto-snapshot on the backup host (its snapshots would fork
 * the replica's history and stop replication with "diverged").
 */
export function replicaProperties(type: string | undefined): Array<[string, string]> {
  return [
    ['readonly', 'on'],
    ['com.sun:auto-snapshot', 'false'],
    ...(type === 'volume' ? [] : [['canmount', 'noauto'] as [string, string]]),
  ];
}

/**
 * `zfs send` options both ends understand: on OpenZFS, large blocks, embedded data and on-disk compression
 * travel as they are (-L -e -c), and an encrypted source goes raw (-w) unless the backup should hold the
 * plaintext; zfs-fuse (pool v23) knows none of them.
 */
export function sendFlags(source: HostFeatures, sink: HostFeatures, raw: boolean): string[] {
  if (!source.openzfs || !sink.openzfs) return [];
  return raw ? ['-w'] : ['-L', '-e', '-c'];
}

/**
 * `zfs recv` for the replica: never -F; unmounted (-u); verbose, for the byte count; resumable (-s) where
 * the host can resume. A full receive on OpenZFS sets the replica's properties in the same step (-o).
 */
export function receiveArgv(sink: HostFeatures, dataset: string, initialType?: string): string[] {
  const argv = ['zfs', 'recv', '-u', '-v'];
  if (sink.openzfs) argv.push('-s');
  if (sink.openzfs && initialType !== undefined) {
    for (const [property, value] of replicaProperties(initialType)) argv.push('-o', `${property}=${value}`);
  }
  argv.push(dataset);
  return argv;
}
