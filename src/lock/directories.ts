import { constants, accessSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { FailureError } from '../errors/errors.js';

/** Where a default directory goes: the system's place, else the user's own, else a message naming the flag. */
export interface DirectoryDefaults {
  /** The system-wide directory (root's cron jobs), e.g. /run/lock/zfs_replicate. */
  system: string;
  /** Why the system directory cannot be used (undefined: it can). */
  systemProblem: string | undefined;
  /** The user's base directory for such files, e.g. $XDG_RUNTIME_DIR; undefined where there is none. */
  userBase: string | undefined;
  /** The option that sets the directory, for the message: "--lock-dir". */
  flag: string;
}

/**
 * The default directory for a run's files: the system one when this user can write it (root, as under cron),
 * else `zfs_replicate` under the user's own base directory (a non-root user), else a problem naming the flag.
 * Pure: the caller finds out whether the system directory is usable.
 */
export function chooseDefaultDirectory(defaults: DirectoryDefaults): { path: string } | { problem: string } {
  if (defaults.systemProblem === undefined) return { path: defaults.system };
  const userBase = defaults.userBase;
  if (userBase?.startsWith('/')) return { path: join(userBase, 'zfs_replicate') };
  return {
    problem: `cannot use ${defaults.system} (${defaults.systemProblem}) and there is no user directory to fall back on: choose a writable directory with ${defaults.flag}`,
  };
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
 * The lock directory when --lock-dir is not given: /run/lock/zfs_replicate, else $XDG_RUNTIME_DIR/zfs_replicate.
 * Only root creates the system directory: /run/lock is world-writable, and a directory a user created there
 * would let that user delete root's lock files (and so run two of root's jobs at once).
 */
export function defaultLockDirectory(environment: NodeJS.ProcessEnv = process.env): string {
  const choice = chooseDefaultDirectory({
    system: SYSTEM_LOCK_DIRECTORY,
    systemProblem: directoryProblem(SYSTEM_LOCK_DIRECTORY, process.geteuid?.() === 0),
    userBase: environment.XDG_RUNTIME_DIR || undefined,
    flag: '--lock-dir',
  });
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
