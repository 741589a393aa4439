import type { Snapshot } from '../zfs/types.js';

export function formatBytes(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/** "@a, @b, @c" */
export function snapshotList(snapshots: readonly Snapshot[]): string {
  return snapshots.map((snapshot) => `@${snapshot.name}`).join(', ');
}

/** "1 snapshot", "3 snapshots" */
export function countOf(count: number, noun: string): string {
  return `${count} ${noun}${count === 1 ? '' : 's'}`;
}
