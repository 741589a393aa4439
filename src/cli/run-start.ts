import { defaultLockDirectory } from '../lock/directories.js';
import { type HeldLock, acquireLock } from '../lock/lock.js';
import { SshMaster, type SshSettings } from '../transport/ssh-master.js';
import { type CliSettings, LOCAL_HOSTS } from './args.js';
import type { CommandLine } from './command-line.js';

/**
 * What a run has before the bulk of the program loads: its replica's lock, then its ssh connection under way.
 * A run that finds the lock taken (another run's long transfer, every cron tick) never connects.
 */
export type RunStart = { lock: HeldLock; lockDir: string; master: SshMaster | undefined } | { refusal: unknown };

export type Invocation =
  | Exclude<CommandLine, { kind: 'run' }>
  | { kind: 'run'; settings: CliSettings; start: RunStart };

export function startInvocation(commandLine: CommandLine): Invocation {
  if (commandLine.kind !== 'run') return commandLine;
  return { ...commandLine, start: startRun(commandLine.settings) };
}

function startRun(settings: CliSettings): RunStart {
  let lockDir: string;
  let lock: HeldLock;
  try {
    lockDir = settings.lockDir ?? defaultLockDirectory();
    lock = acquireLock(lockDir, settings.localDataset, () => new Date());
  } catch (refusal) {
    return { refusal };
  }
  const ssh = sshSettings(settings);
  return { lock, lockDir, master: ssh && new SshMaster(ssh) };
}

/** How to reach the remote host, or undefined when it is this one (no ssh). */
export function sshSettings(settings: CliSettings): SshSettings | undefined {
  if (LOCAL_HOSTS.has(settings.host)) return undefined;
  return {
    host: settings.host,
    user: settings.user,
    port: settings.port,
    identity: settings.identity,
    cipher: settings.cipher,
    options: settings.sshOptions,
    acceptNewHostKey: settings.acceptNewHostKey,
  };
}

/** The connection a run started, if any: whoever ends the run ends it. */
export function startedMaster(invocation: Invocation): SshMaster | undefined {
  return invocation.kind === 'run' && 'master' in invocation.start ? invocation.start.master : undefined;
}
