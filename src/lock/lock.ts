import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { constants, closeSync, ftruncateSync, openSync, readFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { formatDistanceStrict } from 'date-fns/formatDistanceStrict';
import { FailureError, LockedError, errorMessage, lastLines } from '../errors/errors.js';
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

/** Why a dataset's lock was not taken: another run holds it (LockedError), or it cannot be taken at all. */
export type LockRefusal = LockedError | FailureError;

/** One flock(1) per descriptor, in one shell: a tree of hundreds of members costs one spawn, not hundreds. */
const FLOCK_EACH = `for fd do flock --nonblock --conflict-exit-code ${BUSY_STATUS} "$fd"; echo "$?"; done`;
/** Descriptors handed to one shell: well under any limit on a child's descriptors. */
const LOCKS_PER_SHELL = 100;

/**
 * One run at a time per local dataset, with a kernel flock(2) lock: the kernel drops it when the process dies
 * in any way (SIGKILL, power loss: the file survives, the lock does not), so no lock is ever stale.
 * Node has no flock binding, so util-linux flock(1) takes the lock on the open file description it inherits
 * from us; the lock then lives exactly as long as our own descriptor.
 */
export function acquireLock(directory: string, localDataset: string, now: () => Date): HeldLock {
  const [attempt] = acquireLocks(directory, [localDataset], now);
  if (attempt === undefined || attempt instanceof Error) throw attempt;
  return attempt;
}

/** acquireLock for many datasets at once: each one's lock, or why it was not taken, in the order given. */
export function acquireLocks(
  directory: string,
  localDatasets: readonly string[],
  now: () => Date,
): (HeldLock | LockRefusal)[] {
  const opened = openLockFiles(directory, localDatasets);
  const toLock = opened.filter((file): file is LockFile => !(file instanceof Error));
  const statuses = new Map<LockFile, { code: number | undefined; why: string }>();
  for (let start = 0; start < toLock.length; start += LOCKS_PER_SHELL) {
    const chunk = toLock.slice(start, start + LOCKS_PER_SHELL);
    const result = spawnSync('sh', ['-c', FLOCK_EACH, 'sh', ...chunk.map((_, index) => String(index + 3))], {
      stdio: ['ignore', 'pipe', 'pipe', ...chunk.map((file) => file.fd)],
      encoding: 'utf8',
    });
    const codes = (result.stdout ?? '').split('\n').filter(Boolean).map(Number);
    // flock's own words (e.g. "flock: not found", "No locks available" on some NFS) say more than its status.
    const why = result.error ? result.error.message : lastLines(result.stderr ?? '', 2) || `exit ${result.status}`;
    chunk.forEach((file, index) => statuses.set(file, { code: codes[index], why }));
  }
  return opened.map((file) => {
    if (file instanceof Error) return file;
    const status = statuses.get(file);
    if (status?.code === 0) {
      try {
        return holdLock(file, now);
      } catch (error) {
        closeSync(file.fd);
        return new FailureError('ELOCK', `cannot write the lock file ${file.path}: ${errorMessage(error)}`);
      }
    }
    closeSync(file.fd);
    if (status?.code === BUSY_STATUS) return lockedError(file.dataset, readHolder(file.path), now());
    return new FailureError('ELOCK', `cannot lock ${file.path}: ${status?.why ?? 'not attempted'}`);
  });
}

interface LockFile {
  dataset: string;
  path: string;
  fd: number;
}

/** The directory is made once for all of them; each file is then opened on its own. */
function openLockFiles(directory: string, localDatasets: readonly string[]): (LockFile | FailureError)[] {
  // A read-only file system, a missing permission, a file where the directory should be: the operator's to fix.
  const unusable = (path: string, error: unknown) =>
    new FailureError(
      'ELOCK',
      `cannot open the lock file ${path}: ${errorMessage(error)} (choose a writable directory with --lock-dir)`,
      { cause: error },
    );
  const pathOf = (dataset: string) => join(directory, lockFileName(dataset));
  try {
    makeDirectory(directory);
  } catch (error) {
    return localDatasets.map((dataset) => unusable(pathOf(dataset), error));
  }
  return localDatasets.map((dataset) => {
    const path = pathOf(dataset);
    try {
      return { dataset, path, fd: openSync(path, constants.O_RDWR | constants.O_CREAT, 0o644) };
    } catch (error) {
      return unusable(path, error);
    }
  });
}

function holdLock({ path, fd }: LockFile, now: () => Date): HeldLock {
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
