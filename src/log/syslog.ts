import { execa } from 'execa';
import Transport from 'winston-transport';

/** Reports, once per destination, that a log destination stopped working; the run goes on regardless. */
export type DestinationFailed = (destination: string, reason: string) => void;

const PRIORITY: Record<string, string> = {
  error: 'user.err',
  warn: 'user.warning',
  info: 'user.info',
  debug: 'user.debug',
};

/**
 * Sends log lines to syslog/journald through util-linux logger(1): /dev/log is a datagram socket, which Node
 * cannot open. A missing socket or logger binary costs the lines (reported once), never the run.
 */
export class SyslogTransport extends Transport {
  private readonly pending = new Set<Promise<unknown>>();
  private broken = false;

  constructor(
    private readonly tag: string,
    private readonly socket: string,
    private readonly failed: DestinationFailed,
    options: Transport.TransportStreamOptions = {},
  ) {
    super(options);
  }

  override log(entry: { level: string; message: unknown }, next: () => void): void {
    if (!this.broken) {
      const sent = execa(
        'logger',
        [
          // logger's default ('auto') says nothing, and exits 0, when the socket is missing.
          '--socket-errors=on',
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
        { reject: false, stdin: 'ignore', stdout: 'ignore', stderr: 'pipe', timeout: 5000 },
      ).then((result) => {
        if (result.exitCode === 0 || this.broken) return;
        this.broken = true;
        const why = String(result.stderr ?? '').trim() || result.shortMessage || 'failed';
        this.failed(`--syslog (${this.socket})`, why);
      });
      this.pending.add(sent);
      void sent.finally(() => this.pending.delete(sent));
    }
    next();
  }

  /** Waits for lines still on their way, so none is lost when the run exits. */
  async flush(): Promise<void> {
    await Promise.all([...this.pending]);
  }
}
