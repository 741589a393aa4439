import { ExitCode } from '../errors/exit-codes.js';
import { lockFileName } from '../lock/lock.js';
import type { RunOutcome } from '../replication/types.js';

/**
 * What this host knows of one replica (kind "dataset") or of one `-R` tree run (kind "tree"): its last run and
 * what earlier runs established (the last success, the newest snapshot), kept across failed runs.
 */
export interface RunRecord {
  version: 1;
  kind: 'dataset' | 'tree';
  localDataset: string;
  remoteHost: string;
  remoteDataset: string;
  tag: string;
  lastRun: LastRun;
  /** Seconds since the epoch; absent until a run succeeds. */
  lastSuccessAt?: number | undefined;
  /** The newest snapshot on the replica, its creation time by the source's clock. */
  newest?: { name: string; creation: number } | undefined;
  /** The snapshot our tag holds on both sides. */
  tagAt?: string | undefined;
  /** Tree records: the local names of every member the tree run found. */
  members?: string[] | undefined;
  /** Tree records: replicas under the root whose source the tree run found gone (each the top of a subtree). */
  gone?: string[] | undefined;
  /** Tree records: replicas under the root that --exclude leaves out. */
  excluded?: string[] | undefined;
  /** The --metrics-file this replica's runs write: the file shows every replica that names it. */
  metricsFile?: string | undefined;
  /** A tree's root that has no snapshots of its own at the source: replicated through its children. */
  container?: true | undefined;
  /** The last run that found another run holding the lock (exit 3): it leaves lastRun as that run left it. */
  lockedOutAt?: number | undefined;
  /** The source's clock minus this host's, as the last run that reached the source measured it. */
  sourceClockOffsetSeconds?: number | undefined;
  /** That offset was past --max-clock-skew: the run expired nothing. */
  expiryWithheld?: true | undefined;
}

export interface LastRun {
  /** Seconds since the epoch. */
  startedAt: number;
  endedAt: number;
  exitCode: number;
  /** The stable error code (EDIVERGED, ESSH, ...); absent on success and for an internal error. */
  errorCode?: string | undefined;
  /** The one error line the run logged. */
  error?: string | undefined;
  receivedSnapshots: number;
  receivedBytes: number;
  expiredSnapshots: number;
}

/** One run's end as the CLI saw it, for one replica or one tree. */
export interface RunReport {
  kind: RunRecord['kind'];
  localDataset: string;
  remoteHost: string;
  remoteDataset: string;
  tag: string;
  startedAt: number;
  endedAt: number;
  exitCode: number;
  errorCode?: string | undefined;
  error?: string | undefined;
  outcome?: Omit<RunOutcome, 'received'> | undefined;
  members?: string[] | undefined;
  gone?: string[] | undefined;
  excluded?: string[] | undefined;
  metricsFile?: string | undefined;
  container?: true | undefined;
  /** How the run judged the source's clock; absent when it never reached the source. */
  clock?: { offsetSeconds: number; expiryWithheld: boolean } | undefined;
}

/** The record after `report`: its last run replaced; the last success, newest snapshot and tag kept unless it tells newer. */
export function nextRecord(previous: RunRecord | undefined, report: RunReport): RunRecord {
  // A run that found the lock taken did nothing: the run that holds it, or the last one that ended, says
  // what state the replica is in (a failure or conflict must not read as cleared by the next cron line).
  if (report.exitCode === ExitCode.Locked && previous !== undefined)
    return { ...previous, lockedOutAt: report.endedAt, metricsFile: report.metricsFile ?? previous.metricsFile };
  const { outcome } = report;
  return {
    version: 1,
    kind: report.kind,
    localDataset: report.localDataset,
    remoteHost: report.remoteHost,
    remoteDataset: report.remoteDataset,
    tag: report.tag,
    lastRun: {
      startedAt: report.startedAt,
      endedAt: report.endedAt,
      exitCode: report.exitCode,
      errorCode: report.errorCode,
      error: report.error,
      receivedSnapshots: outcome?.receivedSnapshots ?? 0,
      receivedBytes: outcome?.receivedBytes ?? 0,
      expiredSnapshots: outcome?.expiredSnapshots ?? 0,
    },
    lastSuccessAt: report.exitCode === 0 ? report.endedAt : previous?.lastSuccessAt,
    newest: outcome?.newest ?? previous?.newest,
    tagAt: outcome?.tagAt ?? previous?.tagAt,
    members: report.members ?? previous?.members,
    gone: report.gone ?? previous?.gone,
    excluded: report.excluded ?? previous?.excluded,
    metricsFile: report.metricsFile ?? previous?.metricsFile,
    // Only a run that got through says whether the root is (still) a container.
    container: report.exitCode === ExitCode.Ok ? report.container : previous?.container,
    sourceClockOffsetSeconds: report.clock?.offsetSeconds ?? previous?.sourceClockOffsetSeconds,
    expiryWithheld: report.clock === undefined ? previous?.expiryWithheld : report.clock.expiryWithheld || undefined,
  };
}

/** A record read back from disk, or undefined when the text is not one (a hand-edited or foreign file). */
export function parseRecord(text: string): RunRecord | undefined {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return undefined;
  }
  const record = value as Partial<RunRecord> | null;
  if (typeof record !== 'object' || record === null) return undefined;
  const lastRun = record.lastRun as Partial<LastRun> | null | undefined;
  const newest = record.newest as Partial<NonNullable<RunRecord['newest']>> | null | undefined;
  // Every field status, check and the metrics read is checked for its type: a value of another (a record
  // edited by hand, or by another program) would otherwise come out as NaN, or fail the metrics file of every
  // replica that shares it.
  const valid =
    record.version === 1 &&
    (record.kind === 'dataset' || record.kind === 'tree') &&
    [record.localDataset, record.remoteHost, record.remoteDataset, record.tag].every(isString) &&
    typeof lastRun === 'object' &&
    lastRun !== null &&
    [lastRun.startedAt, lastRun.endedAt, lastRun.exitCode].every(isNumber) &&
    [lastRun.receivedSnapshots, lastRun.receivedBytes, lastRun.expiredSnapshots].every(optional(isNumber)) &&
    [lastRun.errorCode, lastRun.error].every(optional(isString)) &&
    [record.lastSuccessAt, record.lockedOutAt, record.sourceClockOffsetSeconds].every(optional(isNumber)) &&
    [record.tagAt, record.metricsFile].every(optional(isString)) &&
    [record.container, record.expiryWithheld].every(optional((flag) => flag === true)) &&
    [record.members, record.gone, record.excluded].every(
      optional((list) => Array.isArray(list) && list.every(isString)),
    ) &&
    (newest === undefined ||
      (typeof newest === 'object' && newest !== null && isString(newest.name) && isNumber(newest.creation)));
  return valid ? (record as RunRecord) : undefined;
}

const isString = (value: unknown): boolean => typeof value === 'string';
const isNumber = (value: unknown): boolean => typeof value === 'number' && Number.isFinite(value);
const optional =
  (check: (value: unknown) => boolean) =>
  (value: unknown): boolean =>
    value === undefined || check(value);

/**
 * Its file's name in the state directory: one file per replica and per tree, never one name for two. Named
 * as the replica's lock file is (readable, and within the 255-byte limit for the longest dataset names).
 */
export function recordFileName(kind: RunRecord['kind'], localDataset: string): string {
  return `${kind}-${lockFileName(localDataset).replace(/\.lock$/, '.json')}`;
}

export const RECORD_FILE = /^(dataset|tree)-[^/]+\.json$/;

/** The dataset a record file is named after; undefined when a long name was shortened with a hash. */
export function datasetOfRecordFile(name: string): string | undefined {
  const encoded = name.replace(/^(dataset|tree)-/, '').replace(/\.json$/, '');
  if (encoded.includes('~')) return undefined;
  try {
    return decodeURIComponent(encoded);
  } catch {
    return undefined;
  }
}
