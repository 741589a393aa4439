import { ExitCode } from '../errors/exit-codes.js';

/** Conflicts: situations that need a human decision; each is found before anything changes. */
export type ConflictCode =
  | 'EREMOTEMISSING'
  | 'EREMOTEEMPTY'
  | 'ENOTREPLICA'
  | 'ENOCOMMON'
  | 'EDIVERGED'
  | 'EHELD'
  | 'ECLONED'
  | 'EMODIFIED'
  | 'ENAMETAKEN'
  | 'ETREE';

/** Failures: the run could not finish, the base stays held on both sides. */
export type FailureCode =
  | 'ECOMMAND'
  | 'ETRANSFER'
  | 'EINTERRUPTED'
  | 'ESSH'
  | 'ELOCK'
  | 'EEXPIRY'
  | 'EVERIFY'
  | 'ETREE'
  | 'ENOZFS'
  | 'EPARSE';

/** Every stable code the tool reports (logs, metrics and tests match on these, never on message text). */
export type ErrorCode = ConflictCode | FailureCode | 'EUSAGE' | 'ELOCKED';

/**
 * One base for every failure the tool reports. `code` is stable; `exitCode` is what the process ends with,
 * decided here by the kind of error and nowhere else; `message` is one line a sysadmin can act on.
 */
export class ReplicateError extends Error {
  readonly code: ErrorCode;
  readonly exitCode: ExitCode;

  protected constructor(code: ErrorCode, message: string, exitCode: ExitCode, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
    this.exitCode = exitCode;
  }
}

/** The run could not finish: ssh, zfs, a transfer, verification, expiry. Exit 1. */
export class FailureError extends ReplicateError {
  constructor(code: FailureCode, message: string, options?: { cause?: unknown }) {
    super(code, message, ExitCode.Failure, options);
  }
}

/** A stop (SIGTERM, SIGINT) asked for while the run worked: the run ends where it is, saying where. */
export function stopIfInterrupted(cancelSignal: AbortSignal | undefined, where: string): void {
  if (cancelSignal?.aborted) throw new FailureError('EINTERRUPTED', `stopped ${where}`);
}

/** Bad command line or configuration: nothing was touched. Exit 2. */
export class UsageError extends ReplicateError {
  constructor(message: string) {
    super('EUSAGE', message, ExitCode.Usage);
  }
}

/** Another run holds the lock; `heldForMs` says for how long, where the holder recorded when it started. Exit 3. */
export class LockedError extends ReplicateError {
  constructor(
    message: string,
    readonly heldForMs: number | undefined,
  ) {
    super('ELOCKED', message, ExitCode.Locked);
  }
}

/** A situation that needs a human decision; nothing was changed. Exit 4. */
export class ConflictError extends ReplicateError {
  constructor(code: ConflictCode, message: string) {
    super(code, message, ExitCode.Conflict);
  }
}

/** An external command ran and failed (or could not start). Carries what a human needs to see why. */
export class CommandError extends FailureError {
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
    reason?: string | undefined;
    /** Set when the command never ran to its end because the ssh connection went: says why. */
    connectionLost?: string | undefined;
  }) {
    const how = args.reason ?? (args.signal ? `killed by ${args.signal}` : `exit ${args.exitStatus ?? '?'}`);
    const tail = lastLines(args.stderr, 3);
    super(
      args.connectionLost === undefined ? 'ECOMMAND' : 'ESSH',
      args.connectionLost ?? `${args.where}: \`${args.command}\` failed (${how})${tail ? `: ${tail}` : ''}`,
    );
    this.command = args.command;
    this.where = args.where;
    this.exitStatus = args.exitStatus;
    this.signal = args.signal;
    this.stderr = args.stderr;
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
