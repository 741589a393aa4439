import winston from 'winston';
import { SyslogTransport } from './syslog.js';

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
  const lineFormat =
    settings.format === 'json'
      ? winston.format.combine(winston.format.timestamp(), winston.format.json())
      : winston.format.printf(
          (entry) =>
            `zfs_replicate[${settings.context}]: ${LEVEL_WORD[entry.level] ?? entry.level}: ${String(entry.message)}`,
        );
  const transports: winston.transport[] = [
    new winston.transports.Console({
      level: settings.verbosity,
      stderrLevels: ['error', 'warn', 'info', 'debug'],
      format: lineFormat,
    }),
  ];
  if (settings.file) {
    transports.push(
      new winston.transports.File({
        filename: settings.file,
        level: settings.verbosity === 'debug' ? 'debug' : 'info',
        format:
          settings.format === 'json'
            ? lineFormat
            : winston.format.combine(
                winston.format.timestamp(),
                winston.format.printf(
                  (entry) =>
                    `${String(entry.timestamp)} [${settings.context}] ${LEVEL_WORD[entry.level] ?? entry.level}: ${String(entry.message)}`,
                ),
              ),
      }),
    );
  }
  const syslog = settings.syslogSocket
    ? new SyslogTransport(`zfs_replicate[${settings.context}]`, settings.syslogSocket, {
        level: settings.verbosity === 'debug' ? 'debug' : 'info',
        format: winston.format.printf((entry) => String(entry.message)),
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
      await new Promise<void>((resolve) => {
        logger.on('finish', () => resolve());
        logger.end();
      });
    },
  }) as unknown as Logger;
}
