import { PipelineError } from '../transport/pipeline.js';
import { receiveArgv } from '../zfs/stream-args.js';
import type { DatasetState } from '../zfs/types.js';
import type { ReplicationContext, ReplicationSettings } from './replicate.js';
import { transfer } from './transfer.js';

/** What OpenZFS says when a token can no longer be resumed (its source snapshot was destroyed, or it is stale). */
const TOKEN_UNUSABLE = /no longer exists|token is corrupt|cannot resume|does not exist|invalid/i;

/**
 * A receive cut short with `-s` left a token on the replica, and until it is used or aborted every other
 * receive fails. Resume it (`zfs send -t`: only the missing part travels); if the remote can no longer
 * resume it, abort it (`zfs recv -A`) and go on from the common snapshot. Returns whether the replica changed.
 */
export async function settleInterruptedReceive(local: DatasetState, settings: ReplicationSettings, context: ReplicationContext): Promise<boolean> {
  const token = local.resumeToken;
  if (token === undefined) return false;
  const dataset = settings.localDataset;
  if (!context.remote.features.openzfs) {
    await context.local.abortReceive(dataset);
    context.log.warn(`${context.remote.label} cannot resume the interrupted receive into ${dataset}; aborted it (zfs recv -A)`);
    return true;
  }
  try {
    await transfer(['-t', token], receiveArgv(context.local.features, dataset), 'the rest of an interrupted receive', settings, context);
  } catch (error) {
    if (context.cancelSignal.aborted || !(error instanceof PipelineError) || !TOKEN_UNUSABLE.test(error.stages[0]!.stderr)) throw error;
    await context.local.abortReceive(dataset);
    context.log.warn(`the interrupted receive into ${dataset} cannot be resumed (${error.message}); aborted it (zfs recv -A) and going on from the common snapshot`);
  }
  return true;
}
