import type { Logger } from '../log/logger.js';
import type { StreamRunner } from '../transport/stream.js';
import type { ZfsOperations } from '../zfs/host.js';
import type { DatasetState } from '../zfs/types.js';
import type { HoldMover } from './holds.js';
import type { Plan } from './plan.js';

/** What one dataset's run is asked to do (a tree run passes one of these per member). */
export interface ReplicationSettings {
  remoteDataset: string;
  localDataset: string;
  tag: string;
  keepSeconds: number;
  /** How keep reads in messages ("30 days", "36h"). */
  keepLabel: string;
  rollback: boolean;
  dryRun: boolean;
  /** Send encrypted datasets raw (the backup never sees the key); false sends them decrypted. */
  raw: boolean;
}

/** The hosts and the process-level facilities a run works with. */
export interface ReplicationContext {
  remote: ZfsOperations;
  local: ZfsOperations;
  streams: StreamRunner;
  log: Logger;
  /** Dry-run output: the plan, for a human who asked for it. */
  print: (line: string) => void;
  cancelSignal: AbortSignal;
  now: () => Date;
  /** The run lock's descriptor, inherited by the transfer's processes (see HeldLock.fd). */
  lockFd?: number | undefined;
  /** The source's clock minus ours (see clock.ts): ages are judged by the source's clock. */
  sourceClockOffsetSeconds?: number;
  /** Set when the clocks disagree beyond the tolerance: expiry is skipped, for this reason. */
  expiryWithheld?: string | undefined;
  /** How the run's new base gets its holds; a tree gathers its members' (see HoldBatch), one run moves its own. */
  holdMover?: HoldMover;
}

/** What one dataset's run did, for its record, its metrics and its summary line. */
export interface RunOutcome {
  /** Anything was (or, in a dry-run, would be) received. */
  received: boolean;
  receivedSnapshots: number;
  /** Stream bytes as `zfs recv` reported them. */
  receivedBytes: number;
  expiredSnapshots: number;
  /** The newest snapshot on the replica after the run, with its creation time (the source's clock). */
  newest?: { name: string; creation: number } | undefined;
  /** The snapshot our tag holds on both sides after the run. */
  tagAt?: string | undefined;
}

/** Both sides of one dataset as listed. */
export interface ListedPair {
  remote: DatasetState;
  local: DatasetState;
}

/** A plan that can be carried out (conflicts are thrown before this point), with the listings it came from. */
export interface PreparedRun {
  plan: Exclude<Plan, { kind: 'conflict' }>;
  pair: ListedPair;
  /** An interrupted receive was resumed (or aborted) before planning: the replica changed this run. */
  settled: boolean;
  /**
   * The replica is not claimed yet by this source and tag (a first run, a changed tag, a replica received by
   * hand, a source replaced): its holds on an unchanged base are new, not repairs of removed ones.
   */
  newClaim: boolean;
}
