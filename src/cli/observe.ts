import { existsSync } from 'node:fs';
import { errorMessage } from '../errors/errors.js';
import { ExitCode } from '../errors/exit-codes.js';
import { oneLine } from '../log/logger.js';
import { CheckState, checkLine, unknownLine } from '../observe/check.js';
import { type RunRecord, datasetOfRecordFile } from '../observe/record.js';
import { damagedRecordsLine, defaultStateDir, readRecords } from '../observe/state-dir.js';
import { goneReplicas, renderTable, selectDatasets, statusRow } from '../observe/status.js';
import { type CheckSettings, type ObserverCommand, type StatusSettings, parseObserverArgs } from './observe-args.js';

/**
 * `status` and `check`: read this host's records, nothing else (no ssh, no zfs command), and answer. Usage
 * errors of `check` are UNKNOWN (exit 3), as a monitor expects of a plugin; of `status`, exit 2 as for a pull.
 */
export function runObserver(command: ObserverCommand, argv: readonly string[], print: (line: string) => void): number {
  let settings: StatusSettings | CheckSettings;
  try {
    const parsed = parseObserverArgs(command, argv);
    if ('help' in parsed) {
      print(parsed.help);
      return ExitCode.Ok;
    }
    settings = parsed;
  } catch (error) {
    if (command === 'check') {
      print(unknownLine(`${oneLine(errorMessage(error))} (see check --help)`));
      return CheckState.Unknown;
    }
    process.stderr.write(`zfs_replicate: error: ${oneLine(errorMessage(error))} (see status --help)\n`);
    return ExitCode.Usage;
  }
  const stateDir = settings.stateDir ?? defaultStateDir(process.env, true);
  const unreadable = (why: string) => {
    if (command === 'check') {
      print(unknownLine(why));
      return CheckState.Unknown;
    }
    process.stderr.write(`zfs_replicate: error: ${why}\n`);
    return ExitCode.Failure;
  };
  // A mistyped --state-dir would otherwise read as "never replicated" for every replica.
  if (settings.stateDir !== undefined && !existsSync(stateDir))
    return unreadable(`no state directory ${stateDir} (see --state-dir)`);
  let records: RunRecord[];
  let damaged: string[];
  try {
    ({ records, damaged } = readRecords(stateDir));
  } catch (error) {
    return unreadable(`cannot read the records in ${stateDir}: ${oneLine(errorMessage(error))}`);
  }
  const selected = selectDatasets(records, settings.datasets, settings.recursive);
  const concerned = damaged.filter((name) => {
    const dataset = datasetOfRecordFile(name);
    return (
      dataset === undefined ||
      settings.datasets.length === 0 ||
      selected.includes(dataset) ||
      (settings.recursive && settings.datasets.some((root) => dataset.startsWith(`${root}/`)))
    );
  });
  if (concerned.length > 0) {
    const why = damagedRecordsLine(stateDir, concerned, 'unreadable, or not a record this version reads');
    if (command === 'check') return unreadable(why);
    process.stderr.write(`zfs_replicate: warning: ${why}\n`);
  }
  const nowSeconds = Date.now() / 1000;
  // A tree whose first run failed before any member ran has only its own record: it tells why.
  const byName = (kind: RunRecord['kind']) =>
    new Map(records.filter((record) => record.kind === kind).map((record) => [record.localDataset, record]));
  const [replicas, trees] = [byName('dataset'), byName('tree')];
  const gone = goneReplicas(records);
  const rows = selected.map((dataset) =>
    statusRow(dataset, replicas.get(dataset) ?? trees.get(dataset), nowSeconds, gone.has(dataset)),
  );
  if ('warnSeconds' in settings) {
    const { state, line } = checkLine(rows, settings);
    print(line);
    return state;
  }
  if (settings.json) print(JSON.stringify({ stateDir, now: nowSeconds, replicas: rows }, null, 2));
  else for (const line of renderTable(rows, nowSeconds)) print(line);
  return concerned.length > 0 ? ExitCode.Failure : ExitCode.Ok;
}
