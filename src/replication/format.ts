import type { Snapshot } from '../zfs/types.js';

// One byte format for logs, reports and the progress line (which lives in the transport).
export { formatBytes } from '../transport/progress.js';

/** "@a, @b, @c" */
export function snapshotList(snapshots: readonly Snapshot[]): string {
  return snapshots.map((snapshot) => `@${snapshot.name}`).join(', ');
}

/** "1 snapshot", "3 snapshots" */
export function countOf(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}
