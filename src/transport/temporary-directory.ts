import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FailureError } from '../errors/errors.js';

/**
 * A new private directory in $TMPDIR named `prefix` plus a random suffix. A missing, read-only or full $TMPDIR
 * is a failure that names it, `what` saying what the directory was for, never an uncaught ENOENT or EROFS.
 */
export function makeTemporaryDirectory(prefix: string, what: string): string {
  try {
    return mkdtempSync(join(tmpdir(), prefix));
  } catch (error) {
    throw new FailureError('ETRANSFER', `${what} in ${tmpdir()} (set TMPDIR): ${(error as Error).message}`, {
      cause: error,
    });
  }
}
