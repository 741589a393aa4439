import type { RunRecord } from './record.js';

interface Family {
  name: string;
  help: string;
  value: (record: RunRecord) => number | undefined;
}

/**
 * Every family is a gauge: each value is the last run's or a point in time, none counts up. HELP and TYPE are
 * the same in every file this tool writes, so several files may carry the same names side by side.
 */
const FAMILIES: readonly Family[] = [
  {
    name: 'zfs_replicate_last_run_timestamp_seconds',
    help: 'When the last run of this replica ended (Unix time).',
    value: (record) => record.lastRun.endedAt,
  },
  {
    name: 'zfs_replicate_last_success_timestamp_seconds',
    help: 'When the last successful run of this replica ended (Unix time); absent until one succeeds.',
    value: (record) => record.lastSuccessAt,
  },
  {
    name: 'zfs_replicate_last_run_duration_seconds',
    help: 'How long the last run of this replica took.',
    value: (record) => record.lastRun.endedAt - record.lastRun.startedAt,
  },
  {
    name: 'zfs_replicate_last_run_exit_code',
    help: 'Exit code of the last run of this replica (0 success, 1 failure, 2 refused as misconfigured, 3 locked, 4 needs a human, 5 stopped).',
    value: (record) => record.lastRun.exitCode,
  },
  {
    name: 'zfs_replicate_last_run_received_bytes',
    help: 'Stream bytes received by the last run of this replica.',
    value: (record) => record.lastRun.receivedBytes,
  },
  {
    name: 'zfs_replicate_last_run_received_snapshots',
    help: 'Snapshots received by the last run of this replica.',
    value: (record) => record.lastRun.receivedSnapshots,
  },
  {
    name: 'zfs_replicate_last_run_expired_snapshots',
    help: 'Snapshots expired (destroyed) by the last run of this replica.',
    value: (record) => record.lastRun.expiredSnapshots,
  },
  {
    name: 'zfs_replicate_newest_snapshot_timestamp_seconds',
    help: "Creation time of the newest snapshot on the replica (Unix time, the source's clock); the lag is time() minus this.",
    value: (record) => record.newest?.creation,
  },
  {
    name: 'zfs_replicate_source_clock_offset_seconds',
    help: "The source's clock minus this host's, as the last run that reached the source measured it.",
    value: (record) => record.sourceClockOffsetSeconds,
  },
  {
    name: 'zfs_replicate_expiry_withheld',
    help: '1 when the last run that reached the source expired nothing because the clocks differ by more than --max-clock-skew.',
    value: (record) => (record.sourceClockOffsetSeconds === undefined ? undefined : record.expiryWithheld ? 1 : 0),
  },
];

/**
 * The Prometheus text exposition of these replicas (kind "dataset" records), one series per replica and
 * family, labelled by local dataset and remote (host:dataset); no sample timestamps (node_exporter's
 * textfile collector refuses them).
 */
export function renderMetrics(records: readonly RunRecord[]): string {
  const replicas = records
    .filter((record) => record.kind === 'dataset')
    .sort((a, b) => (a.localDataset < b.localDataset ? -1 : a.localDataset > b.localDataset ? 1 : 0));
  const lines: string[] = [];
  for (const family of FAMILIES) {
    lines.push(`# HELP ${family.name} ${family.help}`, `# TYPE ${family.name} gauge`);
    for (const record of replicas) {
      const value = family.value(record);
      if (value === undefined) continue;
      const labels = `dataset="${escapeLabel(record.localDataset)}",remote="${escapeLabel(`${record.remoteHost}:${record.remoteDataset}`)}"`;
      lines.push(`${family.name}{${labels}} ${formatValue(value)}`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** The exposition format's label value escapes: backslash, double quote, newline. */
export function escapeLabel(value: string): string {
  return value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

function formatValue(value: number): string {
  return Number.isInteger(value) ? String(value) : value.toFixed(3);
}
