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
 * README to these lines, so the two never drift apart).
 */
export const EXIT_CODE_MEANINGS: ReadonlyArray<readonly [ExitCode, string]> = [
  [ExitCode.Ok, 'success (also: nothing new to pull)'],
  [ExitCode.Failure, 'failure (ssh, zfs or transfer error); the base stays held on both sides'],
  [ExitCode.Usage, 'bad command line or option value; nothing was touched'],
  [ExitCode.Locked, 'another run holds the lock for this local dataset (quiet unless held longer than --lock-warn)'],
  [
    ExitCode.Conflict,
    'needs a human (diverged, modified or not a replica, no common snapshot, a hold in the way); nothing was changed',
  ],
  [ExitCode.Interrupted, 'stopped by SIGTERM/SIGINT; the base stays held on both sides, the lock is released'],
];
