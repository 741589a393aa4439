import { execa } from 'execa';
import Transport from 'winston-transport';

const PRIORITY: Record<string, string> = {
  error: 'user.err',
  warn: 'user.warning',
  info: 'user.info',
  debug: 'user.debug',
};

/**
 * Sends log lines to syslog/journald through util-linux logger(1): /dev/log is a datagram socket, which Node
 * cannot open. A missing /dev/log or logger binary costs the line, never the run.
 */
export class SyslogTransport extends Transport {
  private readonly pending = new Set<Promise<unknown>>();

  constructor(
    private readonly tag: string,
    private readonly socket: string,
    options: Transport.TransportStreamOptions = {},
  ) {
    super(options);
  }

  override log(entry: { level: string; message: unknown }, next: () => void): void {
    const sent = execa(
      'logger',
      [
        '--socket',
        this.socket,
        `--id=${process.pid}`,
        '-t',
        this.tag,
        '-p',
        PRIORITY[entry.level] ?? 'user.notice',
        '--',
        String(entry.message),
      ],
      {
        reject: false,
        stdin: 'ignore',
        stdout: 'ignore',
        stderr: 'ignore',
        timeout: 5000,
      },
    );
    this.pending.add(sent);
    void sent.finally(() => this.pending.delete(sent));
    next();
  }

  /** Waits for lines still on their way, so none is lost when the run exits. */
  async flush(): Promise<void> {
    await Promise.all([...this.pending]);
  }
}
