import { ConflictError, ReplicateError } from '../errors.js';
import type { Logger } from '../log/logger.js';
import type { StreamSettings } from '../transport/stream.js';
import type { ZfsHost } from '../zfs/host.js';
import { parentOf } from '../zfs/names.js';
import { receiveArgv, replicaProperties, sendFlags } from '../zfs/stream-args.js';
import { plannedSends } from './sends.js';
import { keepBookmark } from './bookmarks.js';
import { settleInterruptedReceive } from './resume.js';
import { formatBytes, transfer } from './transfer.js';
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
  /** Send encrypted datasets raw (the backup never sees the key); false sends them decrypted. */
  raw: boolean;
  stream: StreamSettings;
  /** Replicas a recursive dry-run would receive before this one: a missing parent among them is not created. */
  arrivingFirst?: ReadonlySet<string>;
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

/** Both sides of one dataset as listed (by a recursive run, which lists whole trees at once). */
export interface ListedPair {
  remote: DatasetState;
  local: DatasetState;
}

/**
 * Lists both sides (one command each) unless `listed` already has them, and plans; a conflict is thrown
 * before anything changes.
 */
export async function prepareReplication(settings: ReplicationSettings, context: ReplicationContext, listed?: ListedPair): Promise<PreparedRun> {
  const { remote, local, log } = context;
  const [remoteState, listedLocal] = listed
    ? [listed.remote, listed.local]
    : await Promise.all([remote.state(settings.remoteDataset), local.state(settings.localDataset)]);
  let localState = listedLocal;
  if (localState.resumeToken !== undefined) {
    if (settings.dryRun) context.print(`would first resume (or abort) the interrupted receive into ${settings.localDataset}`);
    else if (await settleInterruptedReceive(localState, settings, context)) localState = await local.state(settings.localDataset);
  }
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
  const { local, remote } = context;
  const missing = prepared.plan.kind === 'initial' ? await missingParent(local, settings.localDataset) : undefined;
  const parentMissing = missing !== undefined && settings.arrivingFirst?.has(missing) ? undefined : missing;
  for (const line of describePlan(prepared.plan, { ...settings, remoteHost: remote.label, parentMissing })) context.print(line);
  const sends = plannedSends(prepared.plan, settings.remoteDataset);
  if (sends.length === 0) return;
  const flags = runSendFlags(prepared, settings, context);
  const estimates = await Promise.all(sends.map((send) => remote.estimateSendBytes([...flags, ...send.arguments])));
  const known = estimates.filter((estimate): estimate is number => estimate !== undefined);
  context.print(known.length === sends.length
    ? `estimated stream size: ${formatBytes(known.reduce((sum, estimate) => sum + estimate, 0))}${flags.length > 0 ? ` (zfs send ${flags.join(' ')})` : ''}`
    : `estimated stream size: unknown (${remote.label} cannot estimate: zfs send -nvP is missing)`);
}

/** Transfers what the plan says, verifies it by guid, and moves the holds. */
export async function executePlan(prepared: PreparedRun, settings: ReplicationSettings, context: ReplicationContext): Promise<ExecutedRun> {
  const { remote, local, log } = context;
  const { plan, remoteState } = prepared;
  const received = plan.kind === 'up-to-date' ? prepared.localState : await pull(plan, prepared, settings, context);

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
  await keepBookmark(remote, settings.remoteDataset, settings.tag, target, remoteState.bookmarks, log);
  return { localState: received, base: { local: localBase, remote: target } };
}

/** This run's `zfs send` options: what both hosts support, raw where the source is encrypted. */
function runSendFlags(prepared: PreparedRun, settings: ReplicationSettings, context: ReplicationContext): string[] {
  return sendFlags(context.remote.features, context.local.features, settings.raw && prepared.remoteState.encrypted === true);
}

async function missingParent(local: ZfsHost, dataset: string): Promise<string | undefined> {
  const parent = parentOf(dataset);
  return parent !== undefined && !(await local.exists(parent)) ? parent : undefined;
}

/** Runs the plan's sends, creating the parents first and rolling back first where the plan says so. */
async function pull(plan: InitialPlan | IncrementalPlan, prepared: PreparedRun, settings: ReplicationSettings, context: ReplicationContext): Promise<DatasetState> {
  const { local, log } = context;
  if (plan.kind === 'initial') {
    const parent = await missingParent(local, settings.localDataset);
    if (parent !== undefined) {
      // Only the parents: the replica itself must come from the full stream, never from `zfs create`.
      await local.createParents(parent);
      log.info(`created parent dataset ${parent}`);
    }
  } else if (settings.rollback) {
    await local.rollback(settings.localDataset, plan.base.local.name, plan.discard.length > 0);
    // Whoever wrote to the replica had made it writable; the drift must not recur.
    await local.setProperty(settings.localDataset, 'readonly', 'on');
    log.warn(`rolled ${settings.localDataset} back to @${plan.base.local.name}${plan.discard.length > 0 ? `, destroying ${plan.discard.map((snapshot) => `@${snapshot.name}`).join(', ')}` : ''} (--rollback)`);
  }
  const flags = runSendFlags(prepared, settings, context);
  for (const send of plannedSends(plan, settings.remoteDataset)) {
    const recv = receiveArgv(local.features, settings.localDataset, send.full ? prepared.remoteState.type : undefined);
    await transfer([...flags, ...send.arguments], recv, send.what, settings, context);
    if (send.full && !local.features.openzfs) {
      for (const [property, value] of replicaProperties(prepared.remoteState.type)) await local.setProperty(settings.localDataset, property, value);
    }
  }
  return verify(plan.incoming, settings, context);
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
