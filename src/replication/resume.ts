import { PipelineError } from '../transport/pipeline.js';
import { receiveArgv } from '../zfs/stream-args.js';
import { transfer } from './transfer.js';
import type { ListedPair, ReplicationContext, ReplicationSettings } from './types.js';

/** What OpenZFS says when a token can no longer be resumed (its source snapshot was destroyed, or it is stale). */
const TOKEN_UNUSABLE = /no longer exists|token is corrupt|cannot resume|does not exist|invalid/i;

/**
 * A receive cut short with `-s` left a token on the replica, and until it is used or aborted every other
 * receive fails. Resume it (`zfs send -t`: only the missing part travels); if the remote can no longer
 * resume it, abort it (`zfs recv -A`) and go on from the common snapshot. Returns the pair to plan from:
 * the replica listed again when it changed.
 */
export async function settleInterruptedReceive(
  pair: ListedPair,
  settings: ReplicationSettings,
  context: ReplicationContext,
): Promise<ListedPair> {
  const token = pair.local.resumeToken;
  if (token === undefined) return pair;
  const dataset = settings.localDataset;
  if (!context.remote.features.openzfs) {
    await context.local.abortReceive(dataset);
    context.log.warn(
      `${context.remote.label} cannot resume the interrupted receive into ${dataset}; aborted it (zfs recv -A)`,
    );
  } else {
    try {
      await transfer(
        {
          sendArguments: ['-t', token],
          recvArgv: receiveArgv(context.local.features, dataset),
          what: 'the rest of an interrupted receive',
          remoteDataset: settings.remoteDataset,
          localDataset: dataset,
        },
        context,
      );
    } catch (error) {
      const sendStderr = error instanceof PipelineError ? (error.stages[0]?.stderr ?? '') : '';
      if (context.cancelSignal.aborted || !(error instanceof PipelineError) || !TOKEN_UNUSABLE.test(sendStderr)) {
        throw error;
      }
      await context.local.abortReceive(dataset);
      context.log.warn(
        `the interrupted receive into ${dataset} cannot be resumed (${error.message}); aborted it (zfs recv -A) and going on from the common snapshot`,
      );
    }
  }
  return { remote: pair.remote, local: await context.local.state(dataset) };
}
