import { resolve } from 'node:path';
import { renderMetrics } from './metrics.js';
import { readRecords, recordsVersion, writeAtomically } from './state-dir.js';

const ATTEMPTS = 5;

/**
 * Writes the metrics file `path` from every record in `stateDir` whose runs name this same file, so that many
 * crontab lines can share one file; answers the damaged records it had to leave out. Without a lock: after its
 * rename a writer looks whether any record changed since it read them, and if so renders again; the last writer
 * to rename has then seen every record written before its rename, so the file never keeps a stale view for long.
 */
export function writeMetricsFile(path: string, stateDir: string): { damaged: readonly string[] } {
  const file = resolve(path);
  let damaged: readonly string[] = [];
  for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
    const version = recordsVersion(stateDir);
    const read = readRecords(stateDir);
    damaged = read.damaged;
    writeAtomically(file, renderMetrics(read.records.filter((record) => record.metricsFile === file)));
    if (recordsVersion(stateDir) === version) break;
  }
  return { damaged };
}
