import { constants, closeSync, openSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { execaSync } from 'execa';
import { makeTemporaryDirectory } from './temporary-directory.js';

export interface KernelPipe {
  readFd: number;
  writeFd: number;
}

/**
 * Pipes are made this many at a time, and kept open until a pipeline takes them: one mkfifo(1), which blocks
 * the event loop while it runs, per batch instead of per pipeline (a tree of many small members runs hundreds).
 */
const PIPES_PER_BATCH = 16;
const sparePipes: KernelPipe[] = [];

/** `count` pipes of their own: each is handed out once, and its two ends are the caller's to close. */
export function makeKernelPipes(count: number): KernelPipe[] {
  if (sparePipes.length < count) sparePipes.push(...createPipes(Math.max(count, PIPES_PER_BATCH)));
  return sparePipes.splice(0, count);
}

/**
 * Real kernel pipes for joining child processes. Node has no pipe(2), and its `stdio: 'pipe'` is a unix
 * socketpair that runs at ~60% of a pipe's speed, so a pipe is made from a FIFO: opening it O_RDWR first lets
 * the read and write opens proceed without blocking; the name is unlinked at once so nothing is left behind.
 */
function createPipes(count: number): KernelPipe[] {
  const dir = makeTemporaryDirectory('zfs_replicate-pipe-', "cannot make the stream's pipes");
  try {
    const paths = Array.from({ length: count }, (_, index) => join(dir, `p${index}`));
    execaSync('mkfifo', ['-m', '600', ...paths]);
    return paths.map((path) => {
      const anchor = openSync(path, constants.O_RDWR);
      try {
        const readFd = openSync(path, constants.O_RDONLY);
        const writeFd = openSync(path, constants.O_WRONLY);
        return { readFd, writeFd };
      } finally {
        closeSync(anchor);
      }
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // Already closed: nothing to release.
  }
}
