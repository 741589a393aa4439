/** The process exit codes; documented in README.md and `--help`. Monitoring depends on them: never renumber. */
export enum ExitCode {
  Ok = 0,
  Failure = 1,
  Usage = 2,
  Locked = 3,
  Conflict = 4,
  Interrupted = 5,
}

export const exitCodeTable: ReadonlyArray<[ExitCode, string]> = [
  [ExitCode.Ok, 'success (also: nothing new to pull)'],
  [ExitCode.Failure, 'failure (ssh, zfs or transfer error); the base stays held on both sides'],
  [ExitCode.Usage, 'bad command line or option value; nothing was touched'],
  [ExitCode.Locked, 'another run holds the lock for this local dataset'],
  [ExitCode.Conflict, 'needs a human: diverged replica, no common snapshot, modified replica, not a replica'],
  [ExitCode.Interrupted, 'stopped by SIGTERM/SIGINT; the base stays held on both sides'],
];
