import { ConflictError } from '../errors/errors.js';
import { PipelineError } from '../transport/pipeline.js';
import { formatBytes } from './format.js';
import type { ReplicationContext } from './types.js';

export interface TransferRequest {
  /** `zfs send` arguments after `zfs send`: flags and the snapshot(s). */
  sendArguments: readonly string[];
  recvArgv: readonly string[];
  /** For messages: "full @a", "@a..@d", "the rest of an interrupted receive". */
  what: string;
  /** How many snapshots the stream carries, where the plan knows (not for a resumed receive). */
  snapshots?: number;
  remoteDataset: string;
  localDataset: string;
}

export type TransferContext = Pick<ReplicationContext, 'remote' | 'streams' | 'log' | 'cancelSignal' | 'lockFd'>;

/**
 * One stream from the remote into the replica, logged with its size; a refused incremental is a conflict.
 * Resolves to the bytes `zfs recv` reported (0 when it reported none).
 */
export async function transfer(request: TransferRequest, context: TransferContext): Promise<number> {
  const { remote, log } = context;
  const estimate = await remote.estimateSendBytes(request.sendArguments);
  log.info(
    `receiving ${request.what} from ${remote.label}:${request.remoteDataset} into ${request.localDataset}${estimate === undefined ? '' : ` (about ${formatBytes(estimate)})`} (${context.streams.summary})`,
  );
  const started = Date.now();
  let report: string;
  try {
    report = await context.streams.run(['zfs', 'send', ...request.sendArguments], request.recvArgv, {
      cancelSignal: context.cancelSignal,
      inheritFds: context.lockFd === undefined ? [] : [context.lockFd],
      debug: (line) => log.debug(line),
      label: {
        source: `${remote.label}:${request.remoteDataset}`,
        what: request.what,
        snapshots: request.snapshots,
        expectedBytes: estimate,
      },
    });
  } catch (error) {
    if (error instanceof PipelineError) {
      for (const stage of error.stages) {
        log.debug(`stage ${stage.name}: ${stage.signal ?? `exit ${stage.exitStatus}`} after ${stage.exitedAfterMs} ms`);
      }
      if (/has been modified/.test(error.stages.at(-1)?.stderr ?? '')) {
        throw new ConflictError(
          'EMODIFIED',
          `local dataset ${request.localDataset} was modified since its newest snapshot, so the incremental stream was refused: re-run with --rollback to discard the local changes (nothing was received)`,
        );
      }
    }
    throw error;
  }
  const received = receivedBytes(report);
  log.info(
    `received ${request.what}${received === undefined ? '' : ` (${formatBytes(received)})`} in ${((Date.now() - started) / 1000).toFixed(1)} s`,
  );
  return received ?? 0;
}

const UNIT_BYTES: Record<string, number> = {
  '': 1,
  B: 1,
  K: 1024,
  M: 1024 ** 2,
  G: 1024 ** 3,
  T: 1024 ** 4,
  P: 1024 ** 5,
};

/**
 * The size of the whole stream from `zfs recv -v`, which reports each snapshot of an `-I` stream on a line of
 * its own: "received 10.2M stream in 2.31 seconds (4.43M/sec)" (zfs-fuse: "received 312KB stream in ...").
 */
export function receivedBytes(report: string): number | undefined {
  const sizes = [...report.matchAll(/received ([\d.]+)([KMGTP]?)B? stream in/g)].map(
    ([, value, unit]) => Number(value) * (UNIT_BYTES[unit ?? ''] ?? 1),
  );
  return sizes.length === 0 ? undefined : Math.round(sizes.reduce((sum, size) => sum + size, 0));
}
