/** The process exit codes. Monitoring depends on them: never renumber. */
export enum ExitCode {
  Ok = 0,
  Failure = 1,
  Usage = 2,
  Locked = 3,
  Conflict = 4,
  Interrupted = 5,
}

/**
 * What each exit code means, in the words `--help` prints and README.md's table repeats (a unit test holds the
 * README to these lines, so the two never drift apart). Short enough for one line of --help at 100 columns.
 */
export const EXIT_CODE_MEANINGS: ReadonlyArray<readonly [ExitCode, string]> = [
  [ExitCode.Ok, 'success (also: nothing new to pull)'],
  [ExitCode.Failure, 'failure (ssh, zfs or transfer error); the base stays held on both sides'],
  [ExitCode.Usage, 'bad command line or option value; nothing was touched'],
  [ExitCode.Locked, "another run holds this dataset's lock (quiet unless held longer than --lock-warn)"],
  [ExitCode.Conflict, 'needs a human (diverged or modified replica, no common snapshot, ...); nothing was changed'],
  [ExitCode.Interrupted, 'stopped by SIGTERM/SIGINT/SIGHUP; the base stays held on both sides, the lock is released'],
];
