import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeTemporaryDirectory } from './temporary-directory.js';

export interface SshSettings {
  host: string;
  user?: string | undefined;
  port?: number | undefined;
  identity?: string | undefined;
  cipher?: string | undefined;
  /** Raw `-o` options from the user; they come first so they override our defaults (ssh keeps the first value). */
  options: readonly string[];
  /** Trust an unknown host's key on first contact (StrictHostKeyChecking=accept-new); a changed key still fails. */
  acceptNewHostKey?: boolean | undefined;
}

/**
 * Defaults that make a dead link fail within seconds instead of hanging cron forever (the ancestor had none),
 * and never prompt (cron has no TTY). StrictHostKeyChecking overrides an ssh_config that trusts any key (`no`):
 * a changed host key must fail the run, not feed the backup from whoever answers.
 */
const DEFAULT_OPTIONS = [
  'BatchMode=yes',
  'StrictHostKeyChecking=yes',
  'ConnectTimeout=10',
  'ServerAliveInterval=5',
  'ServerAliveCountMax=3',
  'Compression=no',
];

const CONTROL_DIR_PREFIX = 'zfs_replicate-ssh-';
/**
 * How long the master outlives its last command. Short: a run keeps it busy from start to end, and the master
 * of a run that was SIGKILLed should not linger.
 */
const CONTROL_PERSIST_S = 10;
/** ConnectTimeout bounds only the TCP connect; a server that accepts and then stalls is given up on here. */
const MASTER_TIMEOUT_S = 60;
const EXIT_TIMEOUT_S = 10;
/**
 * After ssh exits, how long to wait for the rest of its stderr. A ProxyCommand it started can hold the pipe open
 * for as long as that command lives, so the pipe's end is not waited for.
 */
const STDERR_GRACE_MS = 250;

/** ssh arguments shared by the master and every multiplexed command: the user's -o options first, so they win. */
export function sshArguments(settings: SshSettings, controlPath: string): string[] {
  const args: string[] = [];
  for (const option of settings.options) args.push('-o', option);
  if (settings.acceptNewHostKey) args.push('-o', 'StrictHostKeyChecking=accept-new');
  for (const option of DEFAULT_OPTIONS) args.push('-o', option);
  if (settings.port !== undefined) args.push('-p', String(settings.port));
  if (settings.identity !== undefined) args.push('-i', settings.identity);
  if (settings.cipher !== undefined) args.push('-c', settings.cipher);
  args.push('-S', controlPath);
  return args;
}

export function sshDestination(settings: SshSettings): string {
  return settings.user ? `${settings.user}@${settings.host}` : settings.host;
}

/** The control directories of runs that died without cleaning up (SIGKILL): their pid is gone. */
export function removeStaleControlDirectories(parent: string): void {
  let entries: string[];
  try {
    entries = readdirSync(parent);
  } catch {
    return;
  }
  for (const entry of entries) {
    const pid = new RegExp(`^${CONTROL_DIR_PREFIX}(\\d+)-`).exec(entry)?.[1];
    if (pid === undefined || processAlive(Number(pid))) continue;
    try {
      rmSync(join(parent, entry), { recursive: true, force: true });
    } catch {
      // Not ours to remove, or a read-only $TMPDIR: the run goes on, and says so if it needs the directory.
    }
  }
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}

export interface SshOutcome {
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  timedOut: boolean;
  /** ssh could not be started at all (not installed). */
  spawnError?: Error | undefined;
}

/** Why an ssh that did not exit 0 failed, when its own words (stderr, log) say nothing. */
export function sshProblem(outcome: SshOutcome): string {
  if (outcome.spawnError !== undefined) return outcome.spawnError.message;
  if (outcome.timedOut) return `no answer within ${MASTER_TIMEOUT_S} s`;
  if (outcome.signal !== null) return `ssh was stopped by ${outcome.signal}`;
  return `ssh exited with status ${outcome.exitCode}`;
}

/**
 * The one ssh connection (one handshake) that every command of a run is multiplexed over. The bin starts it
 * from the parsed command line before the rest of the program loads, so the handshake (about 0.2 s) and that
 * load (about 0.05 s) overlap; that is why it uses node:child_process and not execa, which is a good part of
 * what it would otherwise wait for. `-f` returns once the connection is up; a master orphaned by a crash exits
 * by itself after ControlPersist seconds of idleness.
 */
export class SshMaster {
  readonly controlPath: string;
  /** The master runs detached (-f): its diagnostics ("Timeout, server not responding") go here, not to /dev/null. */
  readonly masterLog: string;
  readonly outcome: Promise<SshOutcome>;
  private readonly masterPid: Promise<number | undefined> = Promise.resolve(undefined);
  /** Undefined when no control directory could be made: then no ssh was started either. */
  private readonly controlDir: string | undefined;
  private readonly child: ChildProcess | undefined;

  constructor(readonly settings: SshSettings) {
    removeStaleControlDirectories(tmpdir());
    try {
      this.controlDir = makeTemporaryDirectory(
        `${CONTROL_DIR_PREFIX}${process.pid}-`,
        'no room for the control socket',
      );
    } catch (error) {
      // Reported the way a refused connection is, by open(): one line and a run record, from the run's own catch.
      this.controlPath = this.masterLog = '';
      this.outcome = Promise.resolve({
        exitCode: null,
        signal: null,
        stderr: '',
        timedOut: false,
        spawnError: error as Error,
      });
      return;
    }
    this.controlPath = join(this.controlDir, 'master');
    this.masterLog = join(this.controlDir, 'master.log');
    const args = [
      ...sshArguments(settings, this.controlPath),
      '-o',
      'ControlMaster=yes',
      '-o',
      `ControlPersist=${CONTROL_PERSIST_S}`,
      '-E',
      this.masterLog,
      '-f',
      '-N',
      '--',
      sshDestination(settings),
    ];
    const { child, outcome } = runSsh(args, MASTER_TIMEOUT_S);
    this.child = child;
    this.outcome = outcome;
    this.masterPid = outcome.then((up) => (up.exitCode === 0 ? this.askPid() : undefined));
  }

  /**
   * The master's process, asked while the run is under way, so that close() can end it with a signal: a
   * `-O exit` at the end would be one more ssh to start and wait for (15-35 ms of a 0.3 s no-op run).
   */
  private async askPid(): Promise<number | undefined> {
    const { stderr } = await this.control('check');
    const pid = /Master running \(pid=(\d+)\)/.exec(stderr)?.[1];
    return pid === undefined ? undefined : Number(pid);
  }

  /** Asks the master over its control socket (`ssh -O`). */
  private control(operation: 'check' | 'exit'): Promise<SshOutcome> {
    const args = [
      ...sshArguments(this.settings, this.controlPath),
      '-O',
      operation,
      '--',
      sshDestination(this.settings),
    ];
    return runSsh(args, EXIT_TIMEOUT_S).outcome;
  }

  /** Ends the master by its pid if it is still ours: its command line names our control socket. */
  private endByPid(pid: number | undefined): boolean {
    if (pid === undefined) return false;
    try {
      if (!readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes(this.controlPath)) return false;
      process.kill(pid, 'SIGTERM');
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Gives up a handshake still under way (a server that accepts and then stalls can take a minute to fail),
   * so that a signal ends the run at once; a connection that is already up is left for close().
   */
  stopHandshake(): void {
    if (this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null) this.child.kill();
  }

  /** Ends the connection (or the attempt still under way) and removes the control socket's directory. */
  async close(): Promise<void> {
    if (this.controlDir === undefined) return;
    this.stopHandshake();
    const outcome = await this.outcome;
    if (outcome.spawnError === undefined && !this.endByPid(await this.masterPid)) await this.control('exit');
    rmSync(this.controlDir, { recursive: true, force: true });
  }
}

/**
 * Both of this class's ssh commands run through here, not through the command runner: this module is loaded
 * before the runner and execa are (see SshMaster).
 */
function runSsh(args: string[], timeoutSeconds: number): { child: ChildProcess; outcome: Promise<SshOutcome> } {
  const child = spawn('ssh', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const outcome = new Promise<SshOutcome>((resolve) => {
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill();
    }, timeoutSeconds * 1000);
    child.stderr?.setEncoding('utf8').on('data', (text: string) => {
      stderr += text;
    });
    child.on('error', (spawnError) => {
      clearTimeout(timer);
      resolve({ exitCode: null, signal: null, stderr, timedOut, spawnError });
    });
    child.on('exit', (exitCode, signal) => {
      clearTimeout(timer);
      const settle = () => resolve({ exitCode, signal, stderr, timedOut });
      child.on('close', settle);
      setTimeout(settle, STDERR_GRACE_MS).unref();
    });
  });
  return { child, outcome };
}
