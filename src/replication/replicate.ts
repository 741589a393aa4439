import { ConflictError, ReplicateError } from '../errors.js';
import { shellJoin } from '../exec/quote.js';
import type { Logger } from '../log/logger.js';
import { PipelineError, runPipeline } from '../transport/pipeline.js';
import { streamStages, type StreamSettings } from '../transport/stream.js';
import type { ZfsHost } from '../zfs/host.js';
import { parentOf, snapshotName } from '../zfs/names.js';
import type { DatasetState, Snapshot } from '../zfs/types.js';
import { moveHolds } from './holds.js';
import { planReplication, type IncrementalPlan, type InitialPlan, type Plan } from './plan.js';
import { describePlan } from './describe.js';

export interface ReplicationSettings {
  remoteDataset: string;
  localDataset: string;
  tag: string;
  keepSeconds: number;
  rollback: boolean;
  dryRun: boolean;
  stream: StreamSettings;
}

export interface ReplicationContext {
  remote: ZfsHost;
  local: ZfsHost;
  log: Logger;
  /** Dry-run output: the plan, for a human who asked for it. */
  print: (line: string) => void;
  cancelSignal: AbortSignal;
  now: () => Date;
  /** The run lock's descriptor, inherited by the transfer's processes (see HeldLock.fd). */
  lockFd?: number;
}

export interface PreparedRun {
  plan: Exclude<Plan, { kind: 'conflict' }>;
  remoteState: DatasetState;
  localState: DatasetState;
}

export interface ExecutedRun {
  /** The local dataset as listed after the receive. */
  localState: DatasetState;
  /** The snapshot both sides hold from now on. */
  base: { local: Snapshot; remote: Snapshot };
}

/** Lists both sides (one command each) and plans; a conflict is thrown before anything changes. */
export async function prepareReplication(settings: ReplicationSettings, context: ReplicationContext): Promise<PreparedRun> {
  const { remote, local, log } = context;
  const [remoteState, localState] = await Promise.all([remote.state(settings.remoteDataset), local.state(settings.localDataset)]);
  log.debug(`listed ${remoteState.snapshots.length} remote and ${localState.snapshots.length} local snapshots`);
  const plan = planReplication({
    remote: remoteState,
    local: localState,
    remoteHost: remote.label,
    nowSeconds: Math.floor(context.now().getTime() / 1000),
    keepSeconds: settings.keepSeconds,
    rollback: settings.rollback,
  });
  if (plan.kind === 'conflict') throw new ConflictError(plan.code, plan.message);
  return { plan, remoteState, localState };
}

export async function printPlan(prepared: PreparedRun, settings: ReplicationSettings, context: ReplicationContext): Promise<void> {
  const parentMissing = prepared.plan.kind === 'initial' ? await missingParent(context.local, settings.localDataset) : undefined;
  for (const line of describePlan(prepared.plan, { ...settings, remoteHost: context.remote.label, parentMissing })) context.print(line);
}

/** Transfers what the plan says, verifies it by guid, and moves the holds. */
export async function executePlan(prepared: PreparedRun, settings: ReplicationSettings, context: ReplicationContext): Promise<ExecutedRun> {
  const { remote, local, log } = context;
  const { plan, remoteState } = prepared;
  let received = prepared.localState;
  if (plan.kind === 'initial') received = await pullInitial(plan, settings, context);
  if (plan.kind === 'incremental') received = await pullIncremental(plan, settings, context);

  const target = plan.kind === 'up-to-date' ? plan.base.remote : plan.target;
  const localBase = received.snapshots.find((snapshot) => snapshot.guid === target.guid);
  if (localBase === undefined) throw verifyError(settings, remote.label, [target]);
  await moveHolds(
    settings.tag,
    [
      { zfs: remote, dataset: settings.remoteDataset, keep: target, snapshots: remoteState.snapshots },
      { zfs: local, dataset: settings.localDataset, keep: localBase, snapshots: received.snapshots },
    ],
    plan.kind !== 'up-to-date',
    log,
  );
  return { localState: received, base: { local: localBase, remote: target } };
}

async function missingParent(local: ZfsHost, dataset: string): Promise<string | undefined> {
  const parent = parentOf(dataset);
  return parent !== undefined && !(await local.exists(parent)) ? parent : undefined;
}

async function pullInitial(plan: InitialPlan, settings: ReplicationSettings, context: ReplicationContext): Promise<DatasetState> {
  const { local, log } = context;
  const parent = await missingParent(local, settings.localDataset);
  if (parent !== undefined) {
    // Only the parents: the replica itself must come from the full stream, never from `zfs create`.
    await local.createParents(parent);
    log.info(`created parent dataset ${parent}`);
  }
  await transfer(['zfs', 'send', snapshotName(settings.remoteDataset, plan.first.name)], settings, context, `full @${plan.first.name}`);
  // A mounted, writable replica drifts (atime, stray writes) and then refuses the next incremental.
  await local.setProperty(settings.localDataset, 'readonly', 'on');
  if (plan.target.guid !== plan.first.guid) {
    await transfer(incrementalSend(settings, plan.first, plan.target), settings, context, `@${plan.first.name}..@${plan.target.name}`);
  }
  return verify(plan.incoming, settings, context);
}

async function pullIncremental(plan: IncrementalPlan, settings: ReplicationSettings, context: ReplicationContext): Promise<DatasetState> {
  const { local, log } = context;
  if (settings.rollback) {
    await local.rollback(settings.localDataset, plan.base.local.name, plan.discard.length > 0);
    // Whoever wrote to the replica had made it writable; the drift must not recur.
    await local.setProperty(settings.localDataset, 'readonly', 'on');
    log.warn(`rolled ${settings.localDataset} back to @${plan.base.local.name}${plan.discard.length > 0 ? `, destroying ${plan.discard.map((snapshot) => `@${snapshot.name}`).join(', ')}` : ''} (--rollback)`);
  }
  if (plan.incoming.length > 0) {
    await transfer(incrementalSend(settings, plan.base.remote, plan.target), settings, context, `@${plan.base.remote.name}..@${plan.target.name}`);
  }
  return verify(plan.incoming, settings, context);
}

function incrementalSend(settings: ReplicationSettings, from: Snapshot, to: Snapshot): string[] {
  return ['zfs', 'send', '-I', snapshotName(settings.remoteDataset, from.name), snapshotName(settings.remoteDataset, to.name)];
}

async function transfer(sendArgv: string[], settings: ReplicationSettings, context: ReplicationContext, what: string): Promise<void> {
  const { remote, local, log } = context;
  const stream = streamStages(remote, local, sendArgv, ['zfs', 'recv', '-u', settings.localDataset], settings.stream);
  log.info(`receiving ${what} from ${remote.label}:${settings.remoteDataset} into ${settings.localDataset} (compression: ${stream.codec ?? 'none'}, mbuffer: ${stream.buffered ? 'yes' : 'no'})`);
  log.debug(`pipeline: ${stream.stages.map((stage) => `${stage.endpoint.label}$ ${'argv' in stage.command ? shellJoin(stage.command.argv) : stage.command.script}`).join(' | ')}`);
  const started = Date.now();
  try {
    await runPipeline(stream.stages, { cancelSignal: context.cancelSignal, inheritFds: context.lockFd === undefined ? [] : [context.lockFd] });
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
  log.info(`received ${what} in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

/**
 * rc 0 can lie on zfs-fuse (an incremental into a missing target lands elsewhere; a duplicate receive
 * "succeeds" with 0 bytes): the replica must now hold every expected snapshot with the remote's guid.
 */
async function verify(expected: readonly Snapshot[], settings: ReplicationSettings, context: ReplicationContext): Promise<DatasetState> {
  const state = await context.local.state(settings.localDataset);
  const present = new Set(state.snapshots.map((snapshot) => snapshot.guid));
  const missing = expected.filter((snapshot) => !present.has(snapshot.guid));
  if (missing.length > 0) throw verifyError(settings, context.remote.label, missing);
  return state;
}

function verifyError(settings: ReplicationSettings, remoteHost: string, missing: readonly Snapshot[]): ReplicateError {
  return new ReplicateError(
    'EVERIFY',
    `after receiving, ${settings.localDataset} lacks ${missing.map((snapshot) => `@${snapshot.name}`).join(', ')} of ${remoteHost}:${settings.remoteDataset} (matched by guid): the receive did not land where expected`,
  );
}
