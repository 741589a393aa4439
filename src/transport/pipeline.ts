import { type ChildProcess, spawn } from 'node:child_process';
import { FailureError, lastLines } from '../errors/errors.js';
import type { Endpoint } from '../exec/endpoint.js';
import { shellJoin } from '../exec/quote.js';
import { closeQuietly, makeKernelPipes } from './kernel-pipe.js';
import { counterLines } from './progress.js';

export interface Stage {
  /** Short role for messages: "send", "mbuffer", "recv". */
  name: string;
  endpoint: Endpoint;
  /** The command, or for a stage that is itself a shell pipeline (compression on the remote side), a script. */
  command: { argv: readonly string[] } | { script: string };
  /** For a meter stage (pv -n -b): receives each byte count it prints; its other stderr lines are kept as usual. */
  counter?: (bytes: number) => void;
}

export interface StageOutcome {
  name: string;
  command: string;
  where: string;
  exitStatus: number | undefined;
  signal: string | undefined;
  spawnError: string | undefined;
  stderr: string;
  /** Milliseconds from the start of the pipeline to this stage's exit. */
  exitedAfterMs: number | undefined;
  /** Why the ssh connection went, for a stage over ssh that exited 255. */
  connectionLost?: string | undefined;
  overSsh: boolean;
}

export interface PipelineOptions {
  cancelSignal?: AbortSignal;
  /** Descriptors every stage inherits (as fd 3, 4, ...): the run lock, so orphans of a killed run keep it. */
  inheritFds?: readonly number[];
}

export class PipelineError extends FailureError {
  readonly stages: StageOutcome[];
  readonly failedStage: StageOutcome;

  constructor(failedStage: StageOutcome, stages: StageOutcome[], cancelled: boolean) {
    const others = stages.filter((stage) => stage !== failedStage && !stageSucceeded(stage));
    const detail = describeFailure(failedStage);
    const rest =
      others.length > 0 ? ` (then: ${others.map((stage) => `${stage.name} ${shortStatus(stage)}`).join(', ')})` : '';
    super(
      cancelled ? 'EINTERRUPTED' : 'ETRANSFER',
      `${cancelled ? 'transfer interrupted' : 'transfer failed'}: ${detail}${rest}`,
    );
    this.stages = stages;
    this.failedStage = failedStage;
  }
}

const STDERR_TAIL_BYTES = 16 * 1024;
/** After one stage failed, how long the others get to exit on their own (and report why) before they are killed. */
const FAILURE_GRACE_MS = 10_000;

/** The stage's command as a shell would read it, for messages and logs. */
export function commandText(stage: Stage): string {
  return 'argv' in stage.command ? shellJoin(stage.command.argv) : stage.command.script;
}

/**
 * Runs `stages[0] | stages[1] | ... ` with a kernel pipe between each pair, so the stream never passes through
 * JavaScript. Every stage's exit status and stderr is kept, and the stage that caused a failure is named
 * (see causeOf).
 */
export async function runPipeline(stages: readonly Stage[], options: PipelineOptions = {}): Promise<StageOutcome[]> {
  if (stages.length === 0) throw new Error('empty pipeline');
  const pipes = makeKernelPipes(stages.length - 1);
  const outcomes: StageOutcome[] = stages.map((stage) => ({
    name: stage.name,
    command: commandText(stage),
    where: stage.endpoint.label,
    overSsh: stage.endpoint.isRemote,
    exitStatus: undefined,
    signal: undefined,
    spawnError: undefined,
    stderr: '',
    exitedAfterMs: undefined,
  }));
  const started = Date.now();
  const children: ChildProcess[] = [];
  const exits: Promise<void>[] = [];
  const failuresInOrder: StageOutcome[] = [];
  let cancelled = false;
  let killTimer: NodeJS.Timeout | undefined;
  const killAll = () => {
    for (const child of children) terminate(child);
  };
  try {
    stages.forEach((stage, index) => {
      const { file, args } =
        'argv' in stage.command
          ? stage.endpoint.wrap(stage.command.argv)
          : stage.endpoint.wrapScript(stage.command.script);
      const outcome = outcomes[index]!;
      // node:child_process, not execa: execa wraps an integer stdout fd in a Node stream (a socketpair that
      // JavaScript copies through), while spawn hands the kernel pipe to the child as it is.
      const child = spawn(file, args, {
        stdio: [
          index === 0 ? 'ignore' : pipes[index - 1]!.readFd,
          index === stages.length - 1 ? 'pipe' : pipes[index]!.writeFd,
          'pipe',
          ...(options.inheritFds ?? []),
        ],
      });
      const keep = (text: string) => {
        outcome.stderr = (outcome.stderr + text).slice(-STDERR_TAIL_BYTES);
      };
      child.stderr?.setEncoding('utf8');
      child.stderr?.on('data', stage.counter ? countingLines(stage.counter, keep) : keep);
      // The last stage's stdout carries messages only (e.g. `zfs recv -v`), never the stream.
      child.stdout?.setEncoding('utf8');
      child.stdout?.on('data', keep);
      children.push(child);
      exits.push(
        new Promise<void>((resolve) => {
          child.once('error', (error: NodeJS.ErrnoException) => {
            outcome.spawnError = error.code === 'ENOENT' ? 'command not found' : error.message;
          });
          child.once('close', (code, signal) => {
            outcome.exitedAfterMs = Date.now() - started;
            outcome.exitStatus = code ?? undefined;
            outcome.signal = signal ?? undefined;
            if (!stageSucceeded(outcome)) {
              if (failuresInOrder.length === 0) killTimer = setTimeout(killAll, FAILURE_GRACE_MS);
              failuresInOrder.push(outcome);
            }
            resolve();
          });
        }),
      );
    });
  } finally {
    // The parent must not keep pipe ends: a dead consumer would otherwise leave the producer blocked forever.
    for (const pipe of pipes) {
      closeQuietly(pipe.readFd);
      closeQuietly(pipe.writeFd);
    }
  }

  /** When the stop came, in the same clock as the stages' exitedAfterMs. */
  let stoppedAfterMs: number | undefined;
  const onAbort = () => {
    cancelled = true;
    stoppedAfterMs = Date.now() - started;
    killAll();
  };
  if (options.cancelSignal?.aborted) onAbort();
  options.cancelSignal?.addEventListener('abort', onAbort, { once: true });
  try {
    await Promise.all(exits);
  } finally {
    if (killTimer) clearTimeout(killTimer);
    options.cancelSignal?.removeEventListener('abort', onAbort);
  }
  // Asked only now: the ssh master notices a dead link at about the time its sessions do, and logs why.
  stages.forEach((stage, index) => {
    const outcome = outcomes[index]!;
    if (outcome.exitStatus === 255) outcome.connectionLost = stage.endpoint.connectionLost?.(outcome.stderr);
  });
  const cause = causeOf(failuresInOrder);
  if (cause !== undefined) throw new PipelineError(cause, outcomes, cancelled);
  // A stop that came after the last stage had ended well interrupted nothing: the stream is complete (the caller
  // verifies it by guid and holds it, then stops). A stage that exited 0 only once told to stop may not be.
  const last = outcomes.at(-1)!;
  const endedFirst = last.exitedAfterMs !== undefined && last.exitedAfterMs <= (stoppedAfterMs ?? 0);
  if (cancelled && !endedFirst) throw new PipelineError(outcomes[0]!, outcomes, true);
  return outcomes;
}

/** Splits a meter's stderr into lines: counts go to `counter`, anything else (an error) to `keep`. */
function countingLines(counter: (bytes: number) => void, keep: (text: string) => void): (text: string) => void {
  let partial = '';
  return (text) => {
    const lines = (partial + text).split('\n');
    partial = lines.pop() ?? '';
    const { counts, other } = counterLines(lines);
    for (const bytes of counts) counter(bytes);
    if (other.length > 0) keep(`${other.join('\n')}\n`);
  };
}

export function stageSucceeded(outcome: StageOutcome): boolean {
  return outcome.exitStatus === 0 && outcome.spawnError === undefined;
}

const FORCE_KILL_AFTER_MS = 2000;

/** SIGTERM, then SIGKILL for a stage that ignores it: nothing may hang. */
function terminate(child: ChildProcess): void {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }, FORCE_KILL_AFTER_MS);
  timer.unref();
  child.once('close', () => clearTimeout(timer));
}

/**
 * What a stage says when it failed only because its neighbour had gone: a writer whose reader went (EPIPE;
 * mbuffer exits 1 with "Broken pipe" a few ms before `zfs recv` exits with the real reason), or a reader whose
 * writer went (zfs recv on a cut stream).
 */
const NEIGHBOUR_WENT =
  /broken pipe|failed to read from stream|incomplete stream|unexpected end|premature end|truncated|unfinished stream/i;

/**
 * The stage that caused a failed pipeline: the first to fail in time that said why on its own (a real error
 * message, or an ssh connection that was lost), not merely that its neighbour had gone. Where none did, the
 * first to fail other than by SIGPIPE (directly, or as a shell's status 141).
 */
function causeOf(failuresInOrder: readonly StageOutcome[]): StageOutcome | undefined {
  const spoke = (outcome: StageOutcome) =>
    outcome.connectionLost !== undefined || (outcome.stderr.trim() !== '' && !NEIGHBOUR_WENT.test(outcome.stderr));
  const piped = (outcome: StageOutcome) => outcome.signal === 'SIGPIPE' || outcome.exitStatus === 141;
  return (
    failuresInOrder.find((outcome) => spoke(outcome) && !piped(outcome)) ??
    failuresInOrder.find((outcome) => !piped(outcome)) ??
    failuresInOrder[0]
  );
}

function shortStatus(outcome: StageOutcome): string {
  if (outcome.spawnError) return outcome.spawnError;
  return outcome.signal ? `killed by ${outcome.signal}` : `exit ${outcome.exitStatus}`;
}

function describeFailure(outcome: StageOutcome): string {
  if (outcome.connectionLost !== undefined) return outcome.connectionLost;
  // Chosen as the cause although ssh gave no reason: nothing else failed on its own, so the link did.
  if (outcome.exitStatus === 255 && outcome.overSsh && outcome.stderr.trim() === '') {
    return `ssh connection to ${outcome.where} lost (ssh exit 255 while \`${outcome.command}\` ran)`;
  }
  const tail = lastLines(outcome.stderr, 2);
  return `${outcome.name} on ${outcome.where} (\`${outcome.command}\`) ${shortStatus(outcome)}${tail ? `: ${tail}` : ''}`;
}
