import { isUnder } from '../zfs/names.js';
import type { RunRecord } from './record.js';

/** One replica as `status` and `check` see it, at one moment. */
export interface StatusRow {
  dataset: string;
  /** host:dataset it pulls from; undefined when no run of it was ever recorded. */
  remote?: string | undefined;
  tag?: string | undefined;
  newest?: { name: string; creation: number; ageSeconds: number } | undefined;
  tagAt?: string | undefined;
  lastRun?:
    | {
        startedAt: number;
        endedAt: number;
        /** Seconds since it ended (for a first run locked out: since the first lock-out, which later ones keep). */
        ageSeconds: number;
        exitCode: number;
        result: string;
        error?: string | undefined;
      }
    | undefined;
  lastSuccess?: { at: number; ageSeconds: number } | undefined;
  /** A tree's root with no snapshots of its own: replicated through its children, it has no lag. */
  container?: boolean;
  /** A tree run found its source gone (destroyed or renamed): it is left as it is, and no longer updated. */
  sourceGone?: boolean;
  /** The last run found the clocks too far apart and expired nothing; by how much the source's is ahead. */
  expiryWithheld?: { sourceClockOffsetSeconds: number };
}

/** Exit 3 (another run holds the lock) is a run in progress, not a failed one: the lag says whether it is stuck. */
const NOT_FAILED = new Set([0, 3]);

export function lastRunFailed(row: StatusRow): boolean {
  return row.lastRun !== undefined && !NOT_FAILED.has(row.lastRun.exitCode);
}

/** The row for `dataset` at `nowSeconds`, from its record if there is one. */
export function statusRow(
  dataset: string,
  record: RunRecord | undefined,
  nowSeconds: number,
  sourceGone = false,
): StatusRow {
  if (record === undefined) return { dataset };
  const { lastRun, newest } = record;
  const age = (at: number) => Math.max(0, Math.round(nowSeconds - at));
  // The newest snapshot's creation time is the source's clock: its lag is read by that clock too. It was made
  // before the last run that succeeded, whatever its stamp says: a stamp in the future (a source's clock that
  // ran ahead when it was made, or in a chain the origin's, which no offset measured here corrects) must not
  // make a stopped job look fresh.
  const offset = record.sourceClockOffsetSeconds ?? 0;
  const sinceSuccess = record.lastSuccessAt === undefined ? 0 : age(record.lastSuccessAt);
  return {
    dataset,
    remote: `${record.remoteHost}:${record.remoteDataset}`,
    tag: record.tag,
    newest: newest && { ...newest, ageSeconds: Math.max(age(newest.creation - offset), sinceSuccess) },
    tagAt: record.tagAt,
    ...(record.container ? { container: true } : {}),
    ...(sourceGone ? { sourceGone: true } : {}),
    ...(record.expiryWithheld ? { expiryWithheld: { sourceClockOffsetSeconds: offset } } : {}),
    lastRun: {
      startedAt: lastRun.startedAt,
      endedAt: lastRun.endedAt,
      ageSeconds: age(lastRun.endedAt),
      exitCode: lastRun.exitCode,
      result: resultWord(lastRun.exitCode, lastRun.errorCode),
      error: lastRun.error,
    },
    lastSuccess:
      record.lastSuccessAt === undefined
        ? undefined
        : { at: record.lastSuccessAt, ageSeconds: age(record.lastSuccessAt) },
  };
}

function resultWord(exitCode: number, errorCode: string | undefined): string {
  if (exitCode === 0) return 'ok';
  if (exitCode === 3) return 'locked';
  const word = exitCode === 4 ? 'conflict' : exitCode === 5 ? 'stopped' : 'failed';
  return errorCode === undefined ? `${word} (exit ${exitCode})` : `${word} ${errorCode}`;
}

/**
 * The replicas a `status`/`check` asks about: the given datasets (with `recursive`, each one's members as its
 * last tree run found them, and any replica recorded under it, but not one the tree's --exclude leaves out),
 * or with none every replica recorded here.
 */
export function selectDatasets(records: readonly RunRecord[], given: readonly string[], recursive: boolean): string[] {
  const replicas = records.filter((record) => record.kind === 'dataset');
  if (given.length === 0) return [...new Set(replicas.map((record) => record.localDataset))].sort();
  const gone = goneReplicas(records);
  const chosen = new Set<string>();
  for (const root of given) {
    chosen.add(root);
    if (!recursive) continue;
    const tree = records.find((record) => record.kind === 'tree' && record.localDataset === root);
    for (const member of tree?.members ?? []) chosen.add(member);
    for (const { localDataset: name } of replicas) {
      if (isUnder(name, root) && (gone.has(name) || !inSubtrees(name, tree?.excluded))) chosen.add(name);
    }
  }
  return [...chosen].sort();
}

/**
 * The replicas whose source a tree run found gone (destroyed or renamed there): each under one of the tree
 * record's `gone` subtrees, and pulled from under the tree's source (not a replica of another job).
 */
export function goneReplicas(records: readonly RunRecord[]): Set<string> {
  const gone = new Set<string>();
  for (const tree of records.filter((record) => record.kind === 'tree')) {
    for (const replica of records.filter((record) => record.kind === 'dataset' && pulledBy(tree, record))) {
      const name = replica.localDataset;
      if (inSubtrees(name, tree.gone)) gone.add(name);
    }
  }
  return gone;
}

/** Whether `name` is one of `tops` or under one. */
function inSubtrees(name: string, tops: readonly string[] | undefined): boolean {
  return tops?.some((top) => name === top || isUnder(name, top)) ?? false;
}

/** Whether `replica` was pulled from the tree's source (its dataset, or one under it, on the same host). */
function pulledBy(tree: RunRecord, replica: RunRecord): boolean {
  return replica.remoteHost === tree.remoteHost && inSubtrees(replica.remoteDataset, [tree.remoteDataset]);
}

/** "45s", "12m", "5h07m", "3d04h": an age at a glance, in at most 6 characters below 100 days. */
export function formatAge(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${pad(Math.floor((s % 3600) / 60))}m`;
  return `${Math.floor(s / 86_400)}d${pad(Math.floor((s % 86_400) / 3600))}h`;
}

const pad = (value: number) => String(value).padStart(2, '0');

const WIDTH = 80;
const GAP = 2;
const HEADERS = ['DATASET', 'LAG', 'LAST RUN', 'RESULT', 'LAST OK'] as const;

/**
 * The human table: one line per replica (lag, last run's age and result, last success's age), then its
 * details indented under it (newest snapshot, where the tag sits, the source, the error line), every line
 * within 80 columns. A name too long for its column stands on a line of its own.
 */
export function renderTable(rows: readonly StatusRow[], nowSeconds: number): string[] {
  if (rows.length === 0) return ['no replica recorded here yet (records appear after the first run)'];
  const cells = rows.map((row) => [
    row.dataset,
    row.newest ? formatAge(row.newest.ageSeconds) : '-',
    row.lastRun ? `${formatAge(nowSeconds - row.lastRun.endedAt)} ago` : 'never',
    row.lastRun?.result ?? 'no record',
    row.lastSuccess ? `${formatAge(row.lastSuccess.ageSeconds)} ago` : 'never',
  ]);
  const widths = HEADERS.map((header, column) => Math.max(header.length, ...cells.map((line) => line[column]!.length)));
  // The name column gets what the others leave of 80 columns; a longer name stands on its own line.
  const others = widths.slice(1).reduce((sum, width) => sum + width + GAP, 0);
  widths[0] = Math.max(HEADERS[0].length, Math.min(widths[0]!, WIDTH - others));
  const join = (line: readonly string[]) =>
    line
      .map((cell, column) => (column === line.length - 1 ? cell : cell.padEnd(widths[column]!)))
      .join(' '.repeat(GAP))
      .trimEnd();
  const lines = [join(HEADERS)];
  rows.forEach((row, index) => {
    const line = cells[index]!;
    if (line[0]!.length > widths[0]!) lines.push(line[0]!, join(['', ...line.slice(1)]));
    else lines.push(join(line));
    for (const detail of details(row)) lines.push(...wrap(`  ${detail}`));
  });
  return lines;
}

function details(row: StatusRow): string[] {
  if (row.remote === undefined) return ['never run on this host (no record)'];
  const newest = row.newest
    ? `newest @${row.newest.name}`
    : row.container
      ? 'a container: its source has no snapshots, its children are replicated'
      : 'no snapshot received yet';
  const tag = row.tagAt ? `, tag ${row.tag} on @${row.tagAt}` : '';
  const lines = [`${newest}${tag}`, `from ${row.remote}${row.sourceGone ? ', which is gone: no longer updated' : ''}`];
  if (row.lastRun?.error !== undefined && row.lastRun.exitCode !== 0) lines.push(`error: ${row.lastRun.error}`);
  return lines;
}

/** A long error line goes on over more lines, indented, rather than being cut: it is the line that says why. */
function wrap(line: string): string[] {
  const lines: string[] = [];
  let rest = line;
  while (rest.length > WIDTH) {
    const space = rest.lastIndexOf(' ', WIDTH);
    const cut = space > 8 ? space : WIDTH;
    lines.push(rest.slice(0, cut));
    rest = `    ${rest.slice(cut).trimStart()}`;
  }
  return [...lines, rest];
}
