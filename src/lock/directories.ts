import { constants, accessSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { FailureError } from '../errors/errors.js';

/** Where a default directory goes: the system's place, else the user's own, else a message naming the flag. */
export interface DirectoryDefaults {
  /** The system-wide directory (root's cron jobs), e.g. /run/lock/zfs_replicate. */
  system: string;
  /** Whether this process may create the system directory when it is missing (root only: see defaultLockDirectory). */
  createSystem: boolean;
  /** The user's own places, best first, e.g. $XDG_RUNTIME_DIR/zfs_replicate; relative ones are never used. */
  userDirectories: readonly (string | undefined)[];
  /** The option that sets the directory, for the message: "--lock-dir". */
  flag: string;
}

/**
 * The default directory for a run's files: the system one when this user can write it (root, as under cron),
 * else the first of the user's own that it can create and write (a non-root user), else a problem naming the
 * flag and why each place failed. `problemOf` says why a directory cannot be used (undefined: it can).
 */
export function chooseDefaultDirectory(
  defaults: DirectoryDefaults,
  problemOf: (path: string, create: boolean) => string | undefined,
): { path: string } | { problem: string } {
  const tried: string[] = [];
  const candidates = [
    { path: defaults.system, create: defaults.createSystem },
    ...defaults.userDirectories.filter((path) => path?.startsWith('/')).map((path) => ({ path, create: true })),
  ];
  for (const { path, create } of candidates) {
    if (path === undefined) continue;
    const problem = problemOf(path, create);
    if (problem === undefined) return { path };
    tried.push(`${path} (${problem})`);
  }
  return { problem: `cannot use ${tried.join(', nor ')}: choose a writable directory with ${defaults.flag}` };
}

/** Why this process cannot keep files in `path` (creating it if missing and `create`), or undefined when it can. */
export function directoryProblem(path: string, create: boolean): string | undefined {
  try {
    if (create) makeDirectory(path);
    accessSync(path, constants.W_OK | constants.X_OK);
    return undefined;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code ?? (error as Error).message;
  }
}

export const SYSTEM_LOCK_DIRECTORY = '/run/lock/zfs_replicate';

/**
 * The lock directory when --lock-dir is not given: /run/lock/zfs_replicate, else $XDG_RUNTIME_DIR/zfs_replicate,
 * else ~/.local/state/zfs_replicate/locks (cron gives a user's job HOME but no XDG_RUNTIME_DIR; a lock file that
 * outlives a reboot is harmless, since the lock is the flock on it, not the file).
 * Only root creates the system directory: /run/lock is world-writable, and a directory a user created there
 * would let that user delete root's lock files (and so run two of root's jobs at once).
 */
export function defaultLockDirectory(environment: NodeJS.ProcessEnv = process.env): string {
  const home = environment.HOME;
  const choice = chooseDefaultDirectory(
    {
      system: SYSTEM_LOCK_DIRECTORY,
      createSystem: process.geteuid?.() === 0,
      userDirectories: [
        environment.XDG_RUNTIME_DIR && join(environment.XDG_RUNTIME_DIR, 'zfs_replicate'),
        home && home !== '/' ? join(home, '.local/state/zfs_replicate/locks') : undefined,
      ],
      flag: '--lock-dir',
    },
    directoryProblem,
  );
  if ('problem' in choice) throw new FailureError('ELOCK', `no lock directory: ${choice.problem}`);
  return choice.path;
}

/**
 * `mkdir -p`, bounded: Node's recursive mkdirSync loops for ever where mkdir answers ENOENT although the
 * parent exists (under /proc, for one), which hung a run given such a --lock-dir.
 */
export function makeDirectory(path: string): void {
  try {
    mkdirSync(path, { mode: 0o755 });
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') {
      if (!statSync(path).isDirectory()) throw new Error(`${path} exists and is not a directory`);
      return;
    }
    const parent = dirname(path);
    if (code !== 'ENOENT' || parent === path) throw error;
    makeDirectory(parent);
    mkdirSync(path, { mode: 0o755 });
  }
}
