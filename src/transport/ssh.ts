import { readFileSync } from 'node:fs';
import { FailureError, lastLines } from '../errors/errors.js';
import type { Endpoint } from '../exec/endpoint.js';
import { shellJoin } from '../exec/quote.js';
import { type SshMaster, type SshSettings, sshArguments, sshDestination, sshProblem } from './ssh-master.js';

function readTail(path: string): string {
  try {
    return readFileSync(path, 'utf8').slice(-4096);
  } catch {
    return '';
  }
}

/** What to do about a host key that ssh refused: never accepted silently, so the operator must act. */
export function hostKeyAdvice(said: string, host: string, port: number | undefined): string {
  // known_hosts names a host on another port than 22 as [host]:port.
  const flag = port === undefined ? '' : `-p ${port} `;
  const known = port === undefined ? host : `'[${host}]:${port}'`;
  if (/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key for .* has changed/i.test(said)) {
    return ` (the host key of ${host} CHANGED since it was pinned: if that is expected, check the new key's fingerprint and remove the old one with ssh-keygen -R ${known}; otherwise someone may be impersonating it)`;
  }
  if (/Host key verification failed|No \S+ host key is known/i.test(said)) {
    return ` (the host key of ${host} is not known here: pin it once, e.g. ssh-keyscan ${flag}${host} >> ~/.ssh/known_hosts after checking its fingerprint, or connect once by hand with ssh ${flag}${host}, or run with --accept-new-host-key)`;
  }
  return '';
}

/**
 * An ssh endpoint that multiplexes every command of a run over one connection (one handshake per run): the
 * master, started by the bin; `open()` waits for it, `close()` ends it.
 */
export class SshEndpoint implements Endpoint {
  readonly label: string;
  readonly isRemote = true;

  constructor(private readonly master: SshMaster) {
    this.label = master.settings.host;
  }

  private get settings(): SshSettings {
    return this.master.settings;
  }

  private destination(): string {
    return sshDestination(this.settings);
  }

  wrap(argv: readonly string[]): { file: string; args: string[] } {
    return this.wrapScript(shellJoin(argv));
  }

  /** ssh hands its command string to the remote user's shell, which is what runs the script. */
  wrapScript(script: string): { file: string; args: string[] } {
    return {
      file: 'ssh',
      args: [
        ...sshArguments(this.settings, this.master.controlPath),
        '-o',
        'ControlMaster=no',
        '--',
        this.destination(),
        script,
      ],
    };
  }

  async open(): Promise<void> {
    const outcome = await this.master.outcome;
    if (outcome.exitCode !== 0) {
      const said = `${outcome.stderr}\n${readTail(this.master.masterLog)}`;
      const why = lastLines(said, 2) || sshProblem(outcome);
      throw new FailureError(
        'ESSH',
        `cannot connect to ${this.destination()} over ssh: ${why}${hostKeyAdvice(said, this.settings.host, this.settings.port)}`,
      );
    }
  }

  /**
   * The master's log says why a connection went ("Timeout, server not responding"); a session of a healthy
   * master that exits 255 in silence had its remote command killed by a signal instead (e.g. SIGPIPE).
   */
  connectionLost(commandStderr: string): string | undefined {
    const master = lastLines(readTail(this.master.masterLog), 2);
    const client = lastLines(commandStderr, 2);
    if (master === '' && !/Timeout|Connection (closed|reset|refused|timed out)|Broken pipe|disconnect/i.test(client)) {
      return undefined;
    }
    return `ssh connection to ${this.destination()} lost: ${[master, client].filter(Boolean).join(' | ')}`;
  }

  close(): Promise<void> {
    return this.master.close();
  }
}
