import { execa } from 'execa';
import { CommandError } from '../errors/errors.js';
import type { Endpoint } from './endpoint.js';
import { shellJoin } from './quote.js';

export interface CommandResult {
  exitStatus: number | undefined;
  signal: string | undefined;
  stdout: string;
  stderr: string;
  /** Set when the command could not be started at all (e.g. ENOENT), or was stopped (timeout, output cap). */
  spawnError: string | undefined;
  /** Its output passed RunOptions.maxOutputBytes, and it was stopped. */
  outputTooLarge: boolean;
}

export interface RunOptions {
  /** Milliseconds before the command is killed; commands that never return must not block cron forever. */
  timeoutMs?: number;
  cancelSignal?: AbortSignal;
  /** Stop the command once its stdout passes this size (a listing this large is not one to act on). */
  maxOutputBytes?: number;
}

/** Observes every command the tool runs (debug logging, command counts in tests and metrics). */
export type CommandObserver = (endpoint: Endpoint, argv: readonly string[]) => void;

const DEFAULT_TIMEOUT_MS = 10 * 60 * 1000;
const CLEANUP_TIMEOUT_MS = 10 * 1000;
/** How long the output of a killed command is still read after it exited (see spawn). */
const KILLED_OUTPUT_GRACE_MS = 250;
const DEFAULT_MAX_OUTPUT_BYTES = 512 * 1024 * 1024;

/**
 * How the tool runs every zfs and probe command, locally or over ssh (streams go through transport/pipeline;
 * the ssh master, flock and logger(1) are started where they live). It never
 * throws for a non-zero exit on its own: `attempt` returns the result so callers can read idempotent errors
 * ("tag already exists"); `run` turns any failure into a CommandError naming the host, the command and stderr.
 */
export class CommandRunner {
  private readonly observers: CommandObserver[] = [];
  /** Commands started before the run asked for them (startEarly), by endpoint and argv; each is handed out once. */
  private readonly early = new Map<Endpoint, Map<string, Promise<CommandResult>>>();

  /**
   * `stop`: the run's stop (SIGTERM, SIGINT). A command under way when it comes is stopped with it: a hung zfs
   * would otherwise keep the run, and its lock, for the whole timeout. One started after it is the run's
   * cleanup (holding what arrived), and runs, but for `cleanupTimeoutMs` at most: on a pool that hangs it
   * would hang too, and the run must still end soon after the signal.
   */
  constructor(
    private readonly stop?: AbortSignal,
    private readonly cleanupTimeoutMs = CLEANUP_TIMEOUT_MS,
  ) {}

  observe(observer: CommandObserver): void {
    this.observers.push(observer);
  }

  /**
   * Starts a read-only command that the run is about to ask for, so that its round trip overlaps the one the run
   * waits for now (the remote's probe). The first attempt() of the same argv on the same endpoint gets its
   * result; one never asked for (a wrong guess at the remote's listing form) finishes unread, or is stopped with
   * the run.
   */
  startEarly(endpoint: Endpoint, argv: readonly string[], options: RunOptions = {}): void {
    const started = this.spawn(endpoint, argv, options);
    started.catch(() => undefined);
    const onEndpoint = this.early.get(endpoint) ?? new Map<string, Promise<CommandResult>>();
    this.early.set(endpoint, onEndpoint);
    onEndpoint.set(argv.join('\0'), started);
  }

  async attempt(endpoint: Endpoint, argv: readonly string[], options: RunOptions = {}): Promise<CommandResult> {
    const key = argv.join('\0');
    const onEndpoint = this.early.get(endpoint);
    const started = onEndpoint?.get(key);
    if (onEndpoint === undefined || started === undefined) return this.spawn(endpoint, argv, options);
    onEndpoint.delete(key);
    return started;
  }

  protected async spawn(endpoint: Endpoint, argv: readonly string[], options: RunOptions): Promise<CommandResult> {
    for (const observer of this.observers) observer(endpoint, argv);
    const { file, args } = endpoint.wrap(argv);
    const stops = [options.cancelSignal, this.stop?.aborted ? undefined : this.stop].filter(
      (signal): signal is AbortSignal => signal !== undefined,
    );
    const cancelSignal = stops.length > 1 ? AbortSignal.any(stops) : stops[0];
    const subprocess = execa(file, args, {
      reject: false,
      stdin: 'ignore',
      stripFinalNewline: false,
      timeout: this.stop?.aborted
        ? Math.min(options.timeoutMs ?? DEFAULT_TIMEOUT_MS, this.cleanupTimeoutMs)
        : (options.timeoutMs ?? DEFAULT_TIMEOUT_MS),
      ...(cancelSignal ? { cancelSignal } : {}),
      forceKillAfterDelay: 2000,
      maxBuffer: options.maxOutputBytes ?? DEFAULT_MAX_OUTPUT_BYTES,
    });
    subprocess.on('exit', () => {
      // Killed (stopped, or timed out): over the run's shared ssh connection the master holds the other end of
      // its output too, until the remote command ends, which on a pool that hangs is never. Its end is not
      // waited for.
      if (subprocess.killed) {
        setTimeout(() => {
          subprocess.stdout?.destroy();
          subprocess.stderr?.destroy();
        }, KILLED_OUTPUT_GRACE_MS).unref();
      }
    });
    const result = await subprocess;
    const spawnError = spawnFailure(result);
    return {
      exitStatus: result.exitCode,
      signal: result.signal,
      stdout: String(result.stdout ?? ''),
      stderr: String(result.stderr ?? ''),
      spawnError,
      outputTooLarge: result.isMaxBuffer === true,
    };
  }

  async run(endpoint: Endpoint, argv: readonly string[], options: RunOptions = {}): Promise<CommandResult> {
    const result = await this.attempt(endpoint, argv, options);
    if (!succeeded(result)) throw commandError(endpoint, argv, result);
    return result;
  }
}

export function succeeded(result: CommandResult): boolean {
  return result.exitStatus === 0 && result.spawnError === undefined;
}

export function commandError(endpoint: Endpoint, argv: readonly string[], result: CommandResult): CommandError {
  return new CommandError({
    command: shellJoin(argv),
    where: endpoint.label,
    exitStatus: result.exitStatus,
    signal: result.signal,
    stderr: result.stderr,
    reason: result.spawnError,
    connectionLost: result.exitStatus === 255 ? endpoint.connectionLost?.(result.stderr) : undefined,
  });
}

function spawnFailure(result: {
  failed: boolean;
  exitCode?: number | undefined;
  signal?: string | undefined;
  timedOut?: boolean | undefined;
  isCanceled?: boolean | undefined;
  isMaxBuffer?: boolean | undefined;
  code?: string | undefined;
  originalMessage?: string | undefined;
}): string | undefined {
  if (!result.failed) return undefined;
  if (result.timedOut) return 'timed out';
  if (result.isCanceled) return 'cancelled';
  if (result.isMaxBuffer) return 'stopped: its output was too large';
  if (result.exitCode === undefined && result.signal === undefined) {
    return result.code === 'ENOENT' ? 'command not found' : (result.originalMessage ?? 'could not start');
  }
  return undefined;
}
