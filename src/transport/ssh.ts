import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { FailureError, lastLines } from '../errors/errors.js';
import type { Endpoint } from '../exec/endpoint.js';
import { shellJoin } from '../exec/quote.js';

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
 * and never prompt (cron has no TTY).
 */
const DEFAULT_OPTIONS = [
  'BatchMode=yes',
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
    rmSync(join(parent, entry), { recursive: true, force: true });
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

function readTail(path: string): string {
  try {
    return readFileSync(path, 'utf8').slice(-4096);
  } catch {
    return '';
  }
}

/** What to do about a host key that ssh refused: never accepted silently, so the operator must act. */
function hostKeyAdvice(said: string, host: string): string {
  if (/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for .* has changed/i.test(said)) {
    return ` (the host key of ${host} CHANGED since it was pinned: if that is expected, check the new key's fingerprint and remove the old one with ssh-keygen -R ${host}; otherwise someone may be impersonating it)`;
  }
  if (/Host key verification failed|No \S+ host key is known/i.test(said)) {
    return ` (the host key of ${host} is not known here: pin it once, e.g. ssh-keyscan ${host} >> ~/.ssh/known_hosts after checking its fingerprint, or connect once by hand with ssh ${host}, or run with --accept-new-host-key)`;
  }
  return '';
}

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

/**
 * An ssh endpoint that multiplexes every command of a run over one connection (one handshake per run).
 * `open()` starts the master, `close()` ends it; a master orphaned by a crash exits by itself after
 * ControlPersist seconds of idleness.
 */
export class SshEndpoint implements Endpoint {
  readonly label: string;
  readonly isRemote = true;
  private readonly controlDir: string;
  private readonly controlPath: string;
  /** The master runs detached (-f): its diagnostics ("Timeout, server not responding") go here, not to /dev/null. */
  private readonly masterLog: string;

  constructor(private readonly settings: SshSettings) {
    this.label = settings.host;
    removeStaleControlDirectories(tmpdir());
    this.controlDir = mkdtempSync(join(tmpdir(), `${CONTROL_DIR_PREFIX}${process.pid}-`));
    this.controlPath = join(this.controlDir, 'master');
    this.masterLog = join(this.controlDir, 'master.log');
  }

  private destination(): string {
    return this.settings.user ? `${this.settings.user}@${this.settings.host}` : this.settings.host;
  }

  private baseArgs(): string[] {
    return sshArguments(this.settings, this.controlPath);
  }

  wrap(argv: readonly string[]): { file: string; args: string[] } {
    return this.wrapScript(shellJoin(argv));
  }

  /** ssh hands its command string to the remote user's shell, which is what runs the script. */
  wrapScript(script: string): { file: string; args: string[] } {
    return { file: 'ssh', args: [...this.baseArgs(), '-o', 'ControlMaster=no', '--', this.destination(), script] };
  }

  async open(): Promise<void> {
    const result = await execa(
      'ssh',
      [
        ...this.baseArgs(),
        '-o',
        'ControlMaster=yes',
        '-o',
        `ControlPersist=${CONTROL_PERSIST_S}`,
        '-E',
        this.masterLog,
        '-f',
        '-N',
        '--',
        this.destination(),
      ],
      { reject: false, stdin: 'ignore', timeout: 60_000 },
    );
    if (result.exitCode !== 0) {
      const said = `${String(result.stderr ?? '')}\n${readTail(this.masterLog)}`;
      const why = lastLines(said, 2) || (result.failed ? result.shortMessage : 'unknown error');
      throw new FailureError(
        'ESSH',
        `cannot connect to ${this.destination()} over ssh: ${why}${hostKeyAdvice(said, this.settings.host)}`,
      );
    }
  }

  /**
   * The master's log says why a connection went ("Timeout, server not responding"); a session of a healthy
   * master that exits 255 in silence had its remote command killed by a signal instead (e.g. SIGPIPE).
   */
  connectionLost(commandStderr: string): string | undefined {
    const master = lastLines(readTail(this.masterLog), 2);
    const client = lastLines(commandStderr, 2);
    if (master === '' && !/Timeout|Connection (closed|reset|refused|timed out)|Broken pipe|disconnect/i.test(client)) {
      return undefined;
    }
    return `ssh connection to ${this.destination()} lost: ${[master, client].filter(Boolean).join(' | ')}`;
  }

  async close(): Promise<void> {
    await execa('ssh', [...this.baseArgs(), '-O', 'exit', '--', this.destination()], {
      reject: false,
      stdin: 'ignore',
      timeout: 10_000,
    });
    rmSync(this.controlDir, { recursive: true, force: true });
  }
}
