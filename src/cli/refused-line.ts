import { UsageError, errorMessage } from '../errors/errors.js';
import { oneLine } from '../log/logger.js';
import { defaultStateDir, readRecord } from '../observe/state-dir.js';
import type { NamedReplica } from './args.js';
import { RunRecorder } from './recorder.js';

/**
 * A crontab line refused at its command line fails on every run, while its replica's record still showed the
 * last good one: status and check said OK until the lag grew past --warn. The record of the replica it names,
 * where there is one (a line that never ran has nothing to show), now says that its last run was refused.
 * Returns the warning line when the record could not be written.
 */
export function recordRefusedLine(
  replica: NamedReplica,
  message: string,
  environment: NodeJS.ProcessEnv,
): string | undefined {
  const stateDir = replica.stateDir ?? defaultStateDir(environment, false);
  const kind = replica.recursive ? 'tree' : 'dataset';
  let previous: ReturnType<typeof readRecord>;
  try {
    previous = readRecord(stateDir, kind, replica.localDataset);
  } catch (error) {
    return `could not read the run record in ${stateDir} (${oneLine(errorMessage(error))}): status, check and metrics do not show this refusal`;
  }
  if (previous === undefined) return undefined;
  const recorder = new RunRecorder({
    host: previous.remoteHost,
    remoteDataset: previous.remoteDataset,
    localDataset: replica.localDataset,
    tag: previous.tag,
    stateDir,
    metricsFile: previous.metricsFile,
    dryRun: false,
  });
  const refused = { error: new UsageError(message) };
  const now = Date.now() / 1000;
  if (kind === 'tree') recorder.tree(now, refused, undefined);
  else recorder.replica(replica.localDataset, previous.remoteDataset, now, refused);
  return recorder.write();
}
