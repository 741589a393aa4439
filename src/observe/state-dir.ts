import { randomBytes } from 'node:crypto';
import {
  constants,
  accessSync,
  closeSync,
  existsSync,
  fsyncSync,
  openSync,
  readFileSync,
  readdirSync,
  renameSync,
  statSync,
  unlinkSync,
  writeSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { makeDirectory } from '../lock/directories.js';
import { RECORD_FILE, type RunRecord, parseRecord, recordFileName } from './record.js';

export const SYSTEM_STATE_DIR = '/var/lib/zfs_replicate';

/**
 * Where records live when --state-dir is not given: the system directory for root, and for a user who may
 * write there; else the user's own XDG state directory. `forReading` (status, check): that same directory when
 * it exists, so a user sees its own runs; else the system one, so a monitoring user (nagios) that runs nothing
 * itself reads the records of root's cron jobs.
 */
export function defaultStateDir(environment: NodeJS.ProcessEnv, forReading: boolean): string {
  const own = process.getuid?.() === 0 || mayWrite(SYSTEM_STATE_DIR) ? SYSTEM_STATE_DIR : userStateDir(environment);
  return forReading && !existsSync(own) && existsSync(SYSTEM_STATE_DIR) ? SYSTEM_STATE_DIR : own;
}

function userStateDir(environment: NodeJS.ProcessEnv): string {
  const xdg = environment.XDG_STATE_HOME;
  return join(xdg?.startsWith('/') ? xdg : join(environment.HOME ?? homedir(), '.local/state'), 'zfs_replicate');
}

function mayWrite(directory: string): boolean {
  try {
    accessSync(existsSync(directory) ? directory : dirname(directory), constants.W_OK);
    return true;
  } catch {
    return false;
  }
}

/**
 * Replaces `path` with `text` so that a reader sees the old file or the new one, never a part: a temporary
 * file in the same directory (a name no other writer can pick), fsync, rename. Readable by all: monitoring
 * users read what root's cron jobs write.
 */
export function writeAtomically(path: string, text: string): void {
  const temporary = join(dirname(path), `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  const fd = openSync(temporary, 'wx', 0o644);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } catch (error) {
    closeSync(fd);
    unlinkSync(temporary);
    throw error;
  }
  closeSync(fd);
  try {
    renameSync(temporary, path);
  } catch (error) {
    unlinkSync(temporary);
    throw error;
  }
}

export function writeRecord(stateDir: string, record: RunRecord): void {
  makeDirectory(stateDir);
  writeAtomically(join(stateDir, recordFileName(record.kind, record.localDataset)), `${JSON.stringify(record)}\n`);
}

/** The record of one replica or tree; a damaged one counts as none, since the run writes it anew. */
export function readRecord(stateDir: string, kind: RunRecord['kind'], localDataset: string): RunRecord | undefined {
  const record = readRecordFile(join(stateDir, recordFileName(kind, localDataset)));
  return record === 'damaged' ? undefined : record;
}

export interface RecordsRead {
  records: RunRecord[];
  /** Record files that hold no record this version can read (truncated, edited, or from a newer version). */
  damaged: string[];
}

/** One line naming damaged record files, what that costs, and the way out. */
export function damagedRecordsLine(stateDir: string, names: readonly string[], cost: string): string {
  return `damaged record ${names.map((name) => join(stateDir, name)).join(', ')}: ${cost} (if its permissions are wrong, mend them; else delete it: the next run of its replica writes a new one)`;
}

/** Every record in the directory (none when it does not exist yet), and the names of the damaged ones. */
export function readRecords(stateDir: string): RecordsRead {
  const read: RecordsRead = { records: [], damaged: [] };
  for (const name of recordFiles(stateDir)) {
    const record = readRecordFile(join(stateDir, name));
    if (record === 'damaged') read.damaged.push(name);
    else if (record !== undefined) read.records.push(record);
  }
  return read;
}

/** What the records are right now, as one string: equal strings mean no record changed in between. */
export function recordsVersion(stateDir: string): string {
  return recordFiles(stateDir)
    .map((name) => {
      try {
        const stat = statSync(join(stateDir, name), { bigint: true });
        return `${name}:${stat.mtimeNs}:${stat.ino}`;
      } catch {
        return `${name}:gone`;
      }
    })
    .join('\n');
}

function recordFiles(stateDir: string): string[] {
  try {
    return readdirSync(stateDir)
      .filter((name) => RECORD_FILE.test(name))
      .sort();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw error;
  }
}

/** A file that cannot be read (its mode, a directory of that name) is damaged too: it costs its own replica's check only. */
function readRecordFile(path: string): RunRecord | 'damaged' | undefined {
  try {
    return parseRecord(readFileSync(path, 'utf8')) ?? 'damaged';
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'ENOENT' ? undefined : 'damaged';
  }
}
