import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants, closeSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { formatDistanceStrict } from 'date-fns/formatDistanceStrict';
import { FailureError, LockedError, errorMessage } from '../errors/errors.js';
import { makeDirectory } from './directories.js';

export interface LockHolder {
  pid: number;
  /** Milliseconds since the epoch when the holder took the lock. */
  since: number;
}

export interface HeldLock {
  path: string;
  /**
   * The locked descriptor. Handing it to the transfer's processes keeps the lock held while any of them runs,
   * even if this process is SIGKILLed: a new run must not receive into the dataset while orphans still do.
   */
  fd: number;
  release(): void;
}

/** flock(1) exits with this when the lock is taken (its -E option); chosen to stand apart from its own errors. */
const BUSY_STATUS = 75;

/**
 * One run at a time per local dataset, with a kernel flock(2) lock: the kernel drops it when the process dies
 * in any way (SIGKILL, power loss: the file survives, the lock does not), so no lock is ever stale.
 * Node has no flock binding, so util-linux flock(1) takes the lock on the open file description it inherits
 * from us; the lock then lives exactly as long as our own descriptor.
 */
export function acquireLock(directory: string, localDataset: string, now: () => Date): HeldLock {
  const path = join(directory, lockFileName(localDataset));
  let fd: number;
  try {
    makeDirectory(directory);
    fd = openSync(path, constants.O_RDWR | constants.O_CREAT, 0o644);
  } catch (error) {
    // A read-only file system, a missing permission, a file where the directory should be: the operator's to fix.
    throw new FailureError(
      'ELOCK',
      `cannot open the lock file ${path}: ${errorMessage(error)} (choose a writable directory with --lock-dir)`,
      { cause: error },
    );
  }
  const result = spawnSync('flock', ['--nonblock', '--conflict-exit-code', String(BUSY_STATUS), '3'], {
    stdio: ['ignore', 'ignore', 'pipe', fd],
    encoding: 'utf8',
  });
  if (result.status !== 0) {
    closeSync(fd);
    if (result.status === BUSY_STATUS) throw lockedError(localDataset, readHolder(path), now());
    const why = result.error ? result.error.message : (result.stderr || `exit ${result.status}`).trim();
    throw new FailureError('ELOCK', `cannot lock ${path}: ${why}`);
  }
  const holder: LockHolder = { pid: process.pid, since: now().getTime() };
  ftruncateSync(fd, 0);
  writeSync(fd, `${JSON.stringify(holder)}\n`, 0);
  let released = false;
  return {
    path,
    fd,
    release() {
      if (released) return;
      released = true;
      closeSync(fd);
    },
  };
}

/** File names stop at 255 bytes; an encoded dataset name (up to 255 bytes, tripled by %-escapes) may not. */
const MAX_READABLE_NAME = 200;

/** One lock file per dataset: its encoded name, or, for very long names, a readable head and a hash. */
export function lockFileName(localDataset: string): string {
  const encoded = encodeURIComponent(localDataset);
  if (encoded.length <= MAX_READABLE_NAME) return `${encoded}.lock`;
  const hash = createHash('sha256').update(localDataset).digest('hex').slice(0, 32);
  return `${encoded.slice(0, MAX_READABLE_NAME - 40).replace(/%[0-9A-F]?$/, '')}~${hash}.lock`;
}

function readHolder(path: string): LockHolder | undefined {
  try {
    const parsed = JSON.parse(readFileSync(path, 'utf8')) as Partial<LockHolder>;
    return typeof parsed.pid === 'number' && typeof parsed.since === 'number'
      ? { pid: parsed.pid, since: parsed.since }
      : undefined;
  } catch {
    return undefined;
  }
}

function lockedError(localDataset: string, holder: LockHolder | undefined, now: Date): LockedError {
  if (holder === undefined)
    return new LockedError(`another run is replicating into ${localDataset}; skipping this run`, undefined);
  const heldForMs = Math.max(0, now.getTime() - holder.since);
  const orphaned = processGone(holder.pid) ? ', and has died, but its transfer processes are still running' : '';
  return new LockedError(
    `another run (pid ${holder.pid}) has been replicating into ${localDataset} for ${formatDistanceStrict(holder.since, now)}${orphaned}; skipping this run`,
    heldForMs,
  );
}

function processGone(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return false;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ESRCH';
  }
}
