import { mkdtempSync, rmSync } from 'node:fs';
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

/** ssh arguments shared by the master and every multiplexed command: the user's -o options first, so they win. */
export function sshArguments(settings: SshSettings, controlPath: string): string[] {
  const args: string[] = [];
  for (const option of settings.options) args.push('-o', option);
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

  constructor(private readonly settings: SshSettings) {
    this.label = settings.host;
    this.controlDir = mkdtempSync(join(tmpdir(), 'zfs_replicate-ssh-'));
    this.controlPath = join(this.controlDir, 'master');
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
      [...this.baseArgs(), '-o', 'ControlMaster=yes', '-o', 'ControlPersist=120', '-f', '-N', '--', this.destination()],
      { reject: false, stdin: 'ignore', timeout: 60_000 },
    );
    if (result.exitCode !== 0) {
      const why = lastLines(String(result.stderr ?? ''), 2) || (result.failed ? result.shortMessage : 'unknown error');
      throw new FailureError('ESSH', `cannot connect to ${this.destination()} over ssh: ${why}`);
    }
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
