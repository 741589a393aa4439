import { resolve } from 'node:path';
import { ReplicateError, errorMessage } from '../errors/errors.js';
import { ExitCode } from '../errors/exit-codes.js';
import { oneLine } from '../log/logger.js';
import { writeMetricsFile } from '../observe/metrics-file.js';
import { type RunReport, nextRecord } from '../observe/record.js';
import { damagedRecordsLine, readRecord, readRecords, writeRecord } from '../observe/state-dir.js';
import type { SummaryEntry } from '../observe/summary.js';
import { counterpart, isExcluded } from '../replication/tree.js';
import type { RunOutcome } from '../replication/types.js';
import { isUnder } from '../zfs/names.js';

/** What a run of one replica (or a whole tree) came to: what it did, or why it stopped. */
export type RunResult =
  | { outcome: Omit<RunOutcome, 'received'>; container?: true }
  | { error: unknown; interrupted?: boolean };

export interface RecorderSettings {
  host: string;
  remoteDataset: string;
  localDataset: string;
  tag: string;
  /** A tree's --exclude: the replicas under it are other jobs'. */
  exclude?: readonly string[] | undefined;
  stateDir: string;
  metricsFile: string | undefined;
  /** A dry run changes nothing, and leaves no record. */
  dryRun: boolean;
}

/**
 * Collects the end of every replica's run (and a tree's own), then writes them as records and the metrics
 * file: after the run, so that a failure to write costs one warning and never the run's own exit code.
 */
export class RunRecorder {
  private readonly reports: RunReport[] = [];
  private readonly summaries: SummaryEntry[] = [];
  private written: { problem: string | undefined } | undefined;
  private clock: RunReport['clock'];
  private shape: Pick<RunReport, 'gone' | 'excluded'> = {};

  constructor(private readonly settings: RecorderSettings) {}

  /** A tree run's replicas that are not members (source gone, or excluded): its record keeps them for check. */
  treeShape(shape: { gone: readonly string[]; excluded: readonly string[] }): void {
    this.shape = { gone: [...shape.gone], excluded: [...shape.excluded] };
  }

  /** How this run judged the source's clock: every record it writes carries it (status reads lag by it). */
  clocksJudged(clock: NonNullable<RunReport['clock']>): void {
    this.clock = clock;
  }

  replica(localDataset: string, remoteDataset: string, startedAt: number, result: RunResult): void {
    this.reports.push(this.report('dataset', localDataset, remoteDataset, startedAt, result));
    if ('outcome' in result && !result.container) {
      this.summaries.push({ label: localDataset, ...result.outcome, seconds: Date.now() / 1000 - startedAt });
    }
  }

  tree(startedAt: number, result: RunResult, members: string[] | undefined): void {
    const { localDataset, remoteDataset } = this.settings;
    this.reports.push({
      ...this.report('tree', localDataset, remoteDataset, startedAt, result),
      members,
      ...this.shape,
    });
  }

  /** One summary entry per replica that ran to its end. */
  get entries(): readonly SummaryEntry[] {
    return this.summaries;
  }

  /**
   * Writes every record, then the metrics file, once (later calls only repeat the answer); returns the one
   * warning line when either failed.
   */
  write(): string | undefined {
    if (this.written === undefined) this.written = { problem: this.settings.dryRun ? undefined : this.writeAll() };
    return this.written.problem;
  }

  private writeAll(): string | undefined {
    const { stateDir, metricsFile } = this.settings;
    try {
      for (const report of this.withTreeFailureOnMembers()) {
        writeRecord(stateDir, nextRecord(readRecord(stateDir, report.kind, report.localDataset), report));
      }
    } catch (error) {
      return `could not write the run record in ${stateDir} (${oneLine(errorMessage(error))}): status, check and metrics do not show this run`;
    }
    if (metricsFile === undefined) return undefined;
    try {
      const { damaged } = writeMetricsFile(metricsFile, stateDir);
      // Their series are gone from the file, so no alert on them can fire: said on every run until mended.
      if (damaged.length > 0) return damagedRecordsLine(stateDir, damaged, `its series are left out of ${metricsFile}`);
    } catch (error) {
      return `could not write the metrics file ${metricsFile} (${oneLine(errorMessage(error))})`;
    }
    return undefined;
  }

  /**
   * A tree run that failed before any member ran (ssh down, the root locked, the listing refused) failed for
   * each of its members too: their records say so, or their last success would look like the current state.
   * Its members' records are those it wrote: same source host, tag and place in the tree. Other replicas under
   * the root (another job's, nested or left out with --exclude) are not this failure's.
   */
  private withTreeFailureOnMembers(): RunReport[] {
    const tree = this.reports.find((report) => report.kind === 'tree');
    const membersRan = this.reports.some((report) => report.kind === 'dataset');
    if (tree === undefined || tree.exitCode === ExitCode.Ok || membersRan) return this.reports;
    const { localDataset: root, remoteDataset: remoteRoot, host, tag, exclude = [] } = this.settings;
    const known = readRecords(this.settings.stateDir).records.filter(
      (record) =>
        record.kind === 'dataset' &&
        (record.localDataset === root || isUnder(record.localDataset, root)) &&
        record.remoteHost === host &&
        record.tag === tag &&
        record.remoteDataset === counterpart(record.localDataset, root, remoteRoot) &&
        !isExcluded(record.remoteDataset, exclude),
    );
    // A new tree has no member yet: its root stands for it, or no series would show the failure; unless the
    // root is another job's replica (a new line pointed at it), whose record is not this failure's either.
    const rootTaken = readRecord(this.settings.stateDir, 'dataset', root) !== undefined;
    const marked =
      known.length > 0 || rootTaken ? known : [{ localDataset: root, remoteDataset: this.settings.remoteDataset }];
    return [
      ...this.reports,
      ...marked.map((record) => ({
        ...tree,
        kind: 'dataset' as const,
        localDataset: record.localDataset,
        remoteDataset: record.remoteDataset,
        members: undefined,
        gone: undefined,
        excluded: undefined,
      })),
    ];
  }

  private report(
    kind: RunReport['kind'],
    localDataset: string,
    remoteDataset: string,
    startedAt: number,
    result: RunResult,
  ): RunReport {
    const { host, tag, metricsFile } = this.settings;
    return {
      kind,
      localDataset,
      remoteHost: host,
      remoteDataset,
      tag,
      startedAt,
      endedAt: Date.now() / 1000,
      ...('outcome' in result
        ? { exitCode: ExitCode.Ok, outcome: result.outcome, container: result.container }
        : failureOf(result)),
      metricsFile: metricsFile === undefined ? undefined : resolve(metricsFile),
      clock: this.clock,
    };
  }
}

function failureOf(result: { error: unknown; interrupted?: boolean }): Pick<
  RunReport,
  'exitCode' | 'errorCode' | 'error'
> {
  const { error } = result;
  const error_ = oneLine(errorMessage(error));
  if (result.interrupted) return { exitCode: ExitCode.Interrupted, errorCode: 'EINTERRUPTED', error: error_ };
  if (error instanceof ReplicateError) return { exitCode: error.exitCode, errorCode: error.code, error: error_ };
  return { exitCode: ExitCode.Failure, error: `unexpected internal error: ${error_}` };
}
