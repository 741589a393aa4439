import { constants, closeSync, openSync, writeSync } from 'node:fs';
import Transport from 'winston-transport';
import type { DestinationFailed } from './syslog.js';

/**
 * Appends each line to a file with a synchronous write. winston's own File transport is a stream: on a full
 * file system it emitted an 'error' nobody handled (a crash with a stack trace), and on an unwritable path
 * its 'finish' never came, so the run waited for ever and then exited 0. Here a failure costs the file, once,
 * with one line on stderr, and never the run's result.
 */
export class FileTransport extends Transport {
  private fd: number | undefined;

  constructor(
    private readonly path: string,
    private readonly failed: DestinationFailed,
    options: Transport.TransportStreamOptions = {},
  ) {
    super(options);
    try {
      // Non-blocking: a FIFO that nobody reads would block open() for ever, with the replica's lock held.
      this.fd = openSync(
        path,
        constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NONBLOCK,
        0o640,
      );
    } catch (error) {
      this.stop((error as NodeJS.ErrnoException).code === 'ENXIO' ? new Error('a FIFO that nobody reads') : error);
    }
  }

  override log(entry: Record<string | symbol, unknown>, next: () => void): void {
    if (this.fd !== undefined) {
      try {
        writeSync(this.fd, `${String(entry[Symbol.for('message')])}\n`);
      } catch (error) {
        this.stop(error);
      }
    }
    next();
  }

  override close(): void {
    if (this.fd !== undefined) closeSync(this.fd);
    this.fd = undefined;
  }

  private stop(error: unknown): void {
    this.close();
    this.failed(`--log-file ${this.path}`, (error as NodeJS.ErrnoException).message ?? String(error));
  }
}
