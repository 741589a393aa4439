import { ExitCode } from './cli/exit-codes.js';

/**
 * One base for every failure the tool reports. `code` is stable (for logs, metrics and tests); `exitCode`
 * is what the process ends with; `message` is one line a sysadmin can act on.
 */
export class ReplicateError extends Error {
  readonly code: string;
  readonly exitCode: ExitCode;

  constructor(code: string, message: string, exitCode: ExitCode = ExitCode.Failure, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ReplicateError';
    this.code = code;
    this.exitCode = exitCode;
  }
}

/** Bad command line or configuration: nothing was touched. */
export class UsageError extends ReplicateError {
  constructor(message: string) {
    super('EUSAGE', message, ExitCode.Usage);
    this.name = 'UsageError';
  }
}

/** An external command ran and failed (or could not start). Carries what a human needs to see why. */
export class CommandError extends ReplicateError {
  readonly command: string;
  readonly where: string;
  readonly exitStatus: number | undefined;
  readonly signal: string | undefined;
  readonly stderr: string;

  constructor(args: {
    command: string;
    where: string;
    exitStatus?: number | undefined;
    signal?: string | undefined;
    stderr: string;
    reason?: string;
  }) {
    const how = args.reason ?? (args.signal ? `killed by ${args.signal}` : `exit ${args.exitStatus ?? '?'}`);
    const tail = lastLines(args.stderr, 3);
    super('ECOMMAND', `${args.where}: \`${args.command}\` failed (${how})${tail ? `: ${tail}` : ''}`);
    this.name = 'CommandError';
    this.command = args.command;
    this.where = args.where;
    this.exitStatus = args.exitStatus;
    this.signal = args.signal;
    this.stderr = args.stderr;
  }
}

/** A situation that needs a human decision; nothing was changed. */
export class ConflictError extends ReplicateError {
  constructor(code: string, message: string) {
    super(code, message, ExitCode.Conflict);
    this.name = 'ConflictError';
  }
}

/** Another run holds the lock; `heldForMs` says for how long, where the holder recorded when it started. */
export class LockedError extends ReplicateError {
  constructor(
    message: string,
    readonly heldForMs: number | undefined,
  ) {
    super('ELOCKED', message, ExitCode.Locked);
    this.name = 'LockedError';
  }
}

export function lastLines(text: string, count: number): string {
  return text
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.length > 0)
    .slice(-count)
    .join(' | ');
}

/** The one line to show for anything thrown. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
