import { ConflictError } from '../errors.js';
import { commandText, PipelineError, runPipeline } from '../transport/pipeline.js';
import { streamStages } from '../transport/stream.js';
import type { ReplicationContext, ReplicationSettings } from './replicate.js';

/** One stream: `zfs send ARGUMENTS` on the remote into `recvArgv` locally, logged with its size. */
export async function transfer(sendArguments: string[], recvArgv: string[], what: string, settings: ReplicationSettings, context: ReplicationContext): Promise<void> {
  const { remote, local, log } = context;
  const stream = streamStages(remote, local, ['zfs', 'send', ...sendArguments], recvArgv, settings.stream);
  const estimate = await remote.estimateSendBytes(sendArguments);
  log.info(`receiving ${what} from ${remote.label}:${settings.remoteDataset} into ${settings.localDataset}${estimate === undefined ? '' : ` (about ${formatBytes(estimate)})`} (compression: ${stream.codec ?? 'none'}, mbuffer: ${stream.buffered ? 'yes' : 'no'})`);
  log.debug(`pipeline: ${stream.stages.map((stage) => `${stage.endpoint.label}$ ${commandText(stage)}`).join(' | ')}`);
  const started = Date.now();
  let outcomes;
  try {
    outcomes = await runPipeline(stream.stages, { cancelSignal: context.cancelSignal, inheritFds: context.lockFd === undefined ? [] : [context.lockFd] });
  } catch (error) {
    if (error instanceof PipelineError) {
      for (const stage of error.stages) log.debug(`stage ${stage.name}: ${stage.signal ?? `exit ${stage.exitStatus}`} after ${stage.exitedAfterMs} ms`);
    }
    if (error instanceof PipelineError && /has been modified/.test(error.stages.at(-1)!.stderr)) {
      throw new ConflictError(
        'EMODIFIED',
        `local dataset ${settings.localDataset} was modified since its newest snapshot, so the incremental stream was refused: re-run with --rollback to discard the local changes (nothing was changed)`,
      );
    }
    throw error;
  }
  // `zfs recv -v` reports the stream size itself: "received 10.2M stream in 2.31 seconds (4.43M/sec)".
  const received = /received (\S+) stream in/.exec(outcomes.at(-1)!.stderr)?.[1];
  log.info(`received ${what}${received ? ` (${received})` : ''} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

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

