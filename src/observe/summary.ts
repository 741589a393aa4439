import { countOf, formatBytes } from '../replication/format.js';

export interface SummaryEntry {
  /** What the line is about in a tree: a member, or the total; none for a single dataset's run. */
  label?: string | undefined;
  receivedSnapshots: number;
  receivedBytes: number;
  expiredSnapshots: number;
  seconds: number;
}

/** "summary: backup/x: received 3 snapshots, 12.3 MB in 4.2 s, 2.9 MB/s, expired 1 snapshot" */
export function summaryLine(entry: SummaryEntry): string {
  const seconds = Math.max(entry.seconds, 0);
  const rate = seconds > 0 ? `, ${formatBytes(entry.receivedBytes / seconds)}/s` : '';
  return `summary: ${entry.label === undefined ? '' : `${entry.label}: `}received ${countOf(entry.receivedSnapshots, 'snapshot')}, ${formatBytes(entry.receivedBytes)} in ${seconds.toFixed(1)} s${rate}, expired ${countOf(entry.expiredSnapshots, 'snapshot')}`;
}

/** The tree's own line: the members' sums over the whole run's time. */
export function totalEntry(entries: readonly SummaryEntry[], seconds: number): SummaryEntry {
  return {
    label: `total (${countOf(entries.length, 'dataset')})`,
    receivedSnapshots: entries.reduce((sum, entry) => sum + entry.receivedSnapshots, 0),
    receivedBytes: entries.reduce((sum, entry) => sum + entry.receivedBytes, 0),
    expiredSnapshots: entries.reduce((sum, entry) => sum + entry.expiredSnapshots, 0),
    seconds,
  };
}
