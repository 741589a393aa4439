import winston from 'winston';
import { FileTransport } from './file.js';
import { type DestinationFailed, SyslogTransport } from './syslog.js';

export type Verbosity = 'error' | 'warn' | 'info' | 'debug';

export interface LogSettings {
  verbosity: Verbosity;
  format: 'text' | 'json';
  file?: string | undefined;
  /** Shown in every line, so a mail from several crontab lines says which one spoke. */
  context: string;
  /** The syslog socket to log to (normally /dev/log); undefined: no syslog. */
  syslogSocket?: string | undefined;
}

export type Logger = Pick<winston.Logger, 'error' | 'warn' | 'info' | 'debug'> & { close(): Promise<void> };

const LEVEL_WORD: Record<string, string> = { error: 'error', warn: 'warning', info: 'info', debug: 'debug' };

/**
 * Everything goes to stderr: cron mails any output, so a successful run at the default verbosity (warnings
 * and errors) prints nothing at all. A log file, when asked for, records at least info lines.
 */
export function createLogger(settings: LogSettings): Logger {
  const prefix = `zfs_replicate[${oneLine(settings.context)}]`;
  const reported = new Set<string>();
  // Written straight to stderr, not through winston: the failing destination is one of its transports.
  const destinationFailed: DestinationFailed = (destination, reason) => {
    if (reported.has(destination)) return;
    reported.add(destination);
    process.stderr.write(`${prefix}: warning: ${destination} failed (${oneLine(reason)}); logging there stopped\n`);
  };
  const word = (level: string) => LEVEL_WORD[level] ?? level;
  // A JSON line names its crontab line's dataset in a field of its own: many jobs may share one log.
  const named = winston.format((entry) => Object.assign(entry, { dataset: settings.context }));
  const lineFormat =
    settings.format === 'json'
      ? winston.format.combine(singleLine(), named(), winston.format.timestamp(), winston.format.json())
      : winston.format.combine(
          singleLine(),
          winston.format.printf((entry) => `${prefix}: ${word(entry.level)}: ${text(entry)}`),
        );
  const fileFormat =
    settings.format === 'json'
      ? lineFormat
      : winston.format.combine(
          singleLine(),
          winston.format.timestamp(),
          winston.format.printf(
            (entry) => `${String(entry.timestamp)} [${settings.context}] ${word(entry.level)}: ${text(entry)}`,
          ),
        );
  const recordLevel = settings.verbosity === 'debug' ? 'debug' : 'info';
  const transports: winston.transport[] = [
    new winston.transports.Console({
      level: settings.verbosity,
      stderrLevels: ['error', 'warn', 'info', 'debug'],
      format: lineFormat,
    }),
  ];
  if (settings.file) {
    transports.push(new FileTransport(settings.file, destinationFailed, { level: recordLevel, format: fileFormat }));
  }
  const syslog = settings.syslogSocket
    ? new SyslogTransport(prefix, settings.syslogSocket, destinationFailed, {
        level: recordLevel,
        format: winston.format.combine(singleLine(), winston.format.printf(text)),
      })
    : undefined;
  if (syslog) transports.push(syslog);
  const logger = winston.createLogger({
    levels: { error: 0, warn: 1, info: 2, debug: 3 },
    level: 'debug',
    transports,
    exitOnError: false,
  });
  return Object.assign(logger, {
    close: async () => {
      await syslog?.flush();
      // Every transport here writes synchronously or has been flushed; the bound only guards the exit code
      // against a transport that never reports 'finish'.
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, CLOSE_BOUND_MS);
        timer.unref();
        logger.on('finish', () => {
          clearTimeout(timer);
          resolve();
        });
        logger.end();
      });
    },
  }) as unknown as Logger;
}

const CLOSE_BOUND_MS = 2000;

/** A line's text: the message, and the error's stable code where the line reports one (see ErrorCode). */
function text(entry: winston.Logform.TransformableInfo): string {
  return entry.code === undefined ? String(entry.message) : `${String(entry.message)} (${String(entry.code)})`;
}

/** One event, one line: a newline in a zfs message or a name must not split a log line (or a cron mail). */
export function oneLine(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what is replaced.
  return text.replace(/\s*[\r\n]+\s*/g, ' | ').replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '?');
}

const singleLine = winston.format((entry) => {
  entry.message = oneLine(String(entry.message));
  return entry;
});
