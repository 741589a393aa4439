import { type StatusRow, formatAge, lastRunFailed } from './status.js';

/** The monitoring-plugins verdicts: the exit code is the verdict. */
export enum CheckState {
  Ok = 0,
  Warning = 1,
  Critical = 2,
  Unknown = 3,
}

const STATE_WORDS = ['OK', 'WARNING', 'CRITICAL', 'UNKNOWN'] as const;

export interface Thresholds {
  warnSeconds: number;
  critSeconds: number;
}

interface Verdict {
  state: CheckState;
  reason: string;
}

/**
 * One replica's verdict. Lag (the newest snapshot's age) past crit is CRITICAL, past warn WARNING; a failed
 * last run is at least WARNING however small the lag; a replica without any snapshot yet is CRITICAL, unless
 * it is a tree's container root (its children carry the lag), or WARNING while its initial sync runs.
 */
export function judge(row: StatusRow, thresholds: Thresholds): Verdict {
  const failed = lastRunFailed(row) ? ` (last run ${row.lastRun?.result})` : '';
  // Not lagging: left behind. Someone must decide (keep it, or retire it and its record), so it stays visible.
  if (row.sourceGone)
    return { state: CheckState.Warning, reason: `${row.dataset} source ${row.remote} is gone (not updated)` };
  if (row.container) {
    return failed
      ? { state: CheckState.Warning, reason: `${row.dataset} (a container) last run ${row.lastRun?.result}` }
      : { state: CheckState.Ok, reason: `${row.dataset} is a container` };
  }
  if (row.newest === undefined) {
    // A first run locked out by another: the initial sync is under way (a long one is normal). The locked-out
    // runs themselves warn in cron mail once the holder has run past --lock-warn.
    // Past crit it is stuck, or its job is gone, however it began.
    if (row.lastRun?.exitCode === 3) {
      const since = row.lastRun.ageSeconds;
      const reason = `${row.dataset} initial sync in progress for ${formatAge(since)} (no snapshot yet)`;
      return { state: since >= thresholds.critSeconds ? CheckState.Critical : CheckState.Warning, reason };
    }
    const why = row.remote === undefined ? 'no run recorded' : `last run ${row.lastRun?.result}`;
    return { state: CheckState.Critical, reason: `${row.dataset} never replicated (${why})` };
  }
  const lag = `${row.dataset} lag ${formatAge(row.newest.ageSeconds)}`;
  if (row.newest.ageSeconds >= thresholds.critSeconds)
    return { state: CheckState.Critical, reason: `${lag} >= ${formatAge(thresholds.critSeconds)}${failed}` };
  if (row.newest.ageSeconds >= thresholds.warnSeconds)
    return { state: CheckState.Warning, reason: `${lag} >= ${formatAge(thresholds.warnSeconds)}${failed}` };
  if (failed)
    return {
      state: CheckState.Warning,
      reason: `${row.dataset} last run ${row.lastRun?.result}, lag ${formatAge(row.newest.ageSeconds)}`,
    };
  if (row.expiryWithheld !== undefined) {
    const offset = row.expiryWithheld.sourceClockOffsetSeconds;
    const clock = `source clock ${formatAge(Math.abs(offset))} ${offset > 0 ? 'ahead' : 'behind'}`;
    return { state: CheckState.Warning, reason: `${lag}, expiry off (${clock}: check NTP)` };
  }
  return { state: CheckState.Ok, reason: lag };
}

/**
 * The plugin's one line: `ZFS_REPLICATE STATE: text | perfdata`. With several replicas (a tree) the worst
 * decides and is named, with how many are not OK; the perfdata carry the largest lag and last-success age
 * ("U" when there is none yet, as the plugin guidelines say for an undetermined value).
 */
export function checkLine(rows: readonly StatusRow[], thresholds: Thresholds): { state: CheckState; line: string } {
  const verdicts = rows.map((row) => judge(row, thresholds));
  const worst = verdicts.reduce((a, b) => (b.state > a.state ? b : a));
  const notOk = verdicts.filter((verdict) => verdict.state !== CheckState.Ok).length;
  const count =
    rows.length > 1
      ? notOk > 0
        ? ` (${notOk} of ${rows.length} datasets not OK)`
        : ` (all ${rows.length} datasets)`
      : '';
  const lagging = rows.filter((row) => !row.container);
  const lag = maxOrU(lagging.map((row) => row.newest?.ageSeconds));
  const success = maxOrU(rows.map((row) => row.lastSuccess?.ageSeconds));
  const perfdata = `lag=${lag};${thresholds.warnSeconds};${thresholds.critSeconds};0 last_success_age=${success};;;0`;
  return {
    state: worst.state,
    line: `ZFS_REPLICATE ${STATE_WORDS[worst.state]}: ${worst.reason}${count} | ${perfdata}`,
  };
}

/** The largest value in seconds, or "U" when any replica has none (never replicated: no number is honest). */
function maxOrU(values: ReadonlyArray<number | undefined>): string {
  if (values.length === 0 || values.some((value) => value === undefined)) return 'U';
  return `${Math.max(...(values as number[]))}s`;
}

/** When the check itself cannot decide (bad arguments, unreadable state): exit 3 with this line. */
export function unknownLine(reason: string): string {
  return `ZFS_REPLICATE UNKNOWN: ${reason}`;
}
