import yargs from 'yargs';
import { UsageError } from '../errors/errors.js';
import { EXIT_CODE_MEANINGS } from '../errors/exit-codes.js';
import type { Verbosity } from '../log/logger.js';
import { parseDuration } from '../retention/duration.js';
import { datasetNameProblem, isUnder, tagProblem } from '../zfs/names.js';

export interface CliSettings {
  host: string;
  remoteDataset: string;
  localDataset: string;
  recursive: boolean;
  exclude: string[];
  tag: string;
  keepSeconds: number;
  keepLabel: string;
  mbufferSize: string;
  port: number | undefined;
  compress: boolean;
  raw: boolean;
  sshOptions: string[];
  identity: string | undefined;
  user: string | undefined;
  cipher: string | undefined;
  rollback: boolean;
  dryRun: boolean;
  verbosity: Verbosity;
  logFile: string | undefined;
  logFormat: 'text' | 'json';
  syslog: boolean;
  syslogSocket: string;
  lockDir: string;
  lockWarnSeconds: number;
}

const ENV_PREFIX = 'ZFS_REPLICATE_';
export const LOCAL_HOSTS = new Set(['localhost', '127.0.0.1', '::1']);
const HOSTNAME = /^[A-Za-z0-9_.:%[\]-]+$/;
const MBUFFER_SIZE = /^\d+(\.\d+)?[kKmMgG]?$/;
const SSH_OPTION = /^[A-Za-z]+[= ]\S/;
const REPEATABLE = new Set(['_', 'sshOption', 'exclude']);

const EPILOG = [
  'Pulls the snapshots of REMOTE_DATASET on HOST into LOCAL_DATASET over ssh, keeping the newest common',
  'snapshot held with TAG on both sides, and expires local snapshots older than the keep period.',
  '',
  'Exit codes:',
  ...EXIT_CODE_MEANINGS.map(([code, meaning]) => `  ${code}  ${meaning}`),
  '',
  'Every option can also come from the environment: ZFS_REPLICATE_HOST, ZFS_REPLICATE_KEEP_DAYS, ...',
].join('\n');

/**
 * Parses the command line and ZFS_REPLICATE_* variables (the command line wins); throws UsageError with one
 * line on any problem. `-h` is the host, as in the ancestor's crontab lines: help is `--help` only.
 */
export function parseArgs(argv: readonly string[]): CliSettings | { help: string } | { version: true } {
  let helpText: string | undefined;
  const parser = yargs([...argv])
    .scriptName('zfs_replicate')
    .usage('$0 -h HOST -r REMOTE_DATASET -l LOCAL_DATASET -t TAG -k DAYS [options]')
    .parserConfiguration({
      'boolean-negation': false,
      'strip-aliased': true,
      'strip-dashed': true,
      'duplicate-arguments-array': true,
    })
    .env(ENV_PREFIX.slice(0, -1))
    // Built-in help would claim -h; both are plain options here, answered by main().
    .help(false)
    .version(false)
    .option('host', {
      alias: ['h', 'remote-host'],
      type: 'string',
      describe: 'remote host to pull from ("localhost": no ssh)',
    })
    .option('remote', { alias: ['r', 'remote-fs'], type: 'string', describe: 'remote dataset' })
    .option('local', { alias: ['l', 'local-fs'], type: 'string', describe: 'local dataset (the replica)' })
    .option('recursive', {
      alias: ['R'],
      type: 'boolean',
      default: false,
      describe: 'also replicate every filesystem and volume under REMOTE_DATASET, each from its own common snapshot',
    })
    .option('exclude', {
      type: 'string',
      array: true,
      default: [],
      describe: 'with -R: leave out this remote dataset and everything under it (repeatable)',
    })
    .option('tag', {
      alias: ['t'],
      type: 'string',
      describe: 'hold tag that protects the common snapshot on both sides',
    })
    .option('keep-days', { alias: ['k'], type: 'string', describe: 'days of local history to keep' })
    .option('keep', { type: 'string', describe: 'local history to keep as a duration (36h, 90m, 30d); overrides -k' })
    .option('mbuffer', {
      alias: ['b'],
      type: 'string',
      default: '256M',
      describe: 'mbuffer memory on the receiving side',
    })
    .option('port', { alias: ['p'], type: 'string', describe: 'ssh port' })
    .option('no-compress', {
      alias: ['n', 'no-pigz'],
      type: 'boolean',
      default: false,
      describe: 'no wire compression (never dry-run)',
    })
    .option('no-raw', {
      type: 'boolean',
      default: false,
      describe:
        'send encrypted datasets decrypted, so the backup holds the plaintext (default: raw, the backup never needs the key)',
    })
    .option('ssh-option', {
      type: 'string',
      array: true,
      default: [],
      describe: 'extra ssh -o option (repeatable), e.g. ConnectTimeout=5',
    })
    .option('identity', { alias: ['i'], type: 'string', describe: 'ssh identity file' })
    .option('user', { type: 'string', describe: 'ssh user' })
    .option('cipher', { type: 'string', describe: 'ssh cipher (default: ssh chooses)' })
    .option('rollback', {
      type: 'boolean',
      default: false,
      describe:
        'roll the replica back to the common snapshot (destroying local-only snapshots that carry no hold) before receiving',
    })
    .option('dry-run', { type: 'boolean', default: false, describe: 'print what would be done; change nothing' })
    .option('verbose', { alias: ['v'], type: 'count', describe: 'more output (-v info, -vv commands)' })
    .option('quiet', { alias: ['q'], type: 'boolean', default: false, describe: 'errors only' })
    .option('log-file', { type: 'string', describe: 'also log (info and up) to this file' })
    .option('log-format', { choices: ['text', 'json'] as const, default: 'text' as const, describe: 'log line format' })
    .option('syslog', { type: 'boolean', default: false, describe: 'also log (info and up) to syslog/journald' })
    .option('syslog-socket', { type: 'string', default: '/dev/log', describe: 'syslog socket for --syslog' })
    .option('lock-dir', {
      type: 'string',
      default: '/run/lock/zfs_replicate',
      describe: 'directory of the per-dataset lock files',
    })
    .option('lock-warn', {
      type: 'string',
      default: '6h',
      describe: 'warn (instead of exiting quietly) when the lock holder has run longer than this',
    })
    .option('help', { type: 'boolean', describe: 'show this help' })
    .option('version', { type: 'boolean', describe: 'show the version' })
    .strict()
    .wrap(Math.min(120, process.stdout.columns || 100))
    .epilog(EPILOG)
    .exitProcess(false)
    .fail((message, error) => {
      throw new UsageError(message || error?.message || 'invalid command line');
    });
  // getOptions() is public yargs API that @types/yargs does not declare.
  const environmentOn = environmentFlags(
    (parser as unknown as { getOptions(): { key: Record<string, unknown>; boolean: string[] } }).getOptions(),
  );
  const parsed = parser.parseSync();
  if (parsed.help) {
    parser.showHelp((text) => {
      helpText = text;
    });
    return { help: helpText ?? '' };
  }
  if (parsed.version) return { version: true };
  // A flag is never negated on the command line, so one switched on by the environment simply adds to it.
  for (const option of environmentOn) Object.assign(parsed, { [camel(option)]: true });
  for (const [key, value] of Object.entries(parsed)) {
    // Only --ssh-option and --exclude repeat; a repeated -t or -l in a crontab line is a mistake, not "the last one wins".
    if (Array.isArray(value) && !REPEATABLE.has(key))
      throw new UsageError(`option --${kebab(key)} was given more than once`);
  }

  const host = required(parsed.host, '-h/--host');
  if (!HOSTNAME.test(host) || host.startsWith('-')) throw new UsageError(`invalid host ${JSON.stringify(host)}`);
  const remoteDataset = dataset(required(parsed.remote, '-r/--remote'), '-r/--remote');
  const localDataset = dataset(required(parsed.local, '-l/--local'), '-l/--local');
  const exclude = (parsed.exclude ?? []).map((name) => excluded(String(name), remoteDataset, parsed.recursive));
  const tag = required(parsed.tag, '-t/--tag');
  const tagIssue = tagProblem(tag);
  if (tagIssue) throw new UsageError(`hold tag ${tagIssue}`);

  return {
    host,
    remoteDataset,
    localDataset,
    recursive: parsed.recursive,
    exclude,
    tag,
    ...keepWindow(parsed.keep, parsed.keepDays),
    mbufferSize: checked(parsed.mbuffer, MBUFFER_SIZE, '-b/--mbuffer', 'a size such as 256M or 1G'),
    port: parsed.port === undefined ? undefined : port(parsed.port),
    compress: !parsed.noCompress,
    raw: !parsed.noRaw,
    sshOptions: (parsed.sshOption ?? []).map((option) =>
      checked(String(option), SSH_OPTION, '--ssh-option', 'Name=value'),
    ),
    identity: parsed.identity,
    user:
      parsed.user === undefined
        ? undefined
        : checked(parsed.user, /^[A-Za-z0-9_.][A-Za-z0-9_.-]*$/, '--user', 'a user name'),
    cipher:
      parsed.cipher === undefined
        ? undefined
        : checked(parsed.cipher, /^[A-Za-z0-9@.,-]+$/, '--cipher', 'an ssh cipher name'),
    rollback: parsed.rollback,
    dryRun: parsed.dryRun,
    verbosity: parsed.quiet ? 'error' : (['warn', 'info', 'debug'] as const)[Math.min(parsed.verbose, 2)]!,
    logFile: parsed.logFile,
    logFormat: parsed.logFormat,
    syslog: parsed.syslog,
    syslogSocket: parsed.syslogSocket,
    lockDir: required(parsed.lockDir, '--lock-dir'),
    lockWarnSeconds: duration(parsed.lockWarn, '--lock-warn'),
  };
}

const ENV_TRUE = /^(1|true|yes|on)$/i;
const ENV_FALSE = /^(0|false|no|off)?$/i;

/**
 * Checks the ZFS_REPLICATE_* variables and returns the flags they switch on (yargs reads "1" or "yes" as
 * false: ZFS_REPLICATE_DRY_RUN=1 must not run for real). A misspelt variable must not be silently ignored,
 * nor reported as an "argument".
 */
function environmentFlags(options: { key: Record<string, unknown>; boolean: string[] }): Set<string> {
  const booleans = new Set(options.boolean.map(kebab));
  const on = new Set<string>();
  for (const [name, value = ''] of Object.entries(process.env)) {
    if (!name.startsWith(ENV_PREFIX)) continue;
    const option = kebab(
      name
        .slice(ENV_PREFIX.length)
        .toLowerCase()
        .replace(/_([a-z])/g, (_, letter: string) => letter.toUpperCase()),
    );
    if (!(option in options.key) && !(camel(option) in options.key))
      throw new UsageError(`unknown environment variable ${name}: no option --${option}`);
    if (!booleans.has(option)) continue;
    if (ENV_TRUE.test(value)) on.add(option);
    else if (!ENV_FALSE.test(value))
      throw new UsageError(`${name}=${JSON.stringify(value)}: expected 1 or 0 (true/false, yes/no)`);
  }
  return on;
}

function camel(kebabName: string): string {
  return kebabName.replace(/-([a-z])/g, (_, letter: string) => letter.toUpperCase());
}

function kebab(camel: string): string {
  return camel.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
}

function required(value: string | undefined, flag: string): string {
  if (value === undefined || value === '') throw new UsageError(`missing required option ${flag}`);
  return value;
}

function dataset(name: string, flag: string): string {
  const problem = datasetNameProblem(name);
  if (problem) throw new UsageError(`${flag}: dataset name ${JSON.stringify(name)} ${problem}`);
  return name;
}

function excluded(name: string, remoteDataset: string, recursive: boolean): string {
  if (!recursive) throw new UsageError('--exclude only applies with -R/--recursive');
  dataset(name, '--exclude');
  if (!isUnder(name, remoteDataset))
    throw new UsageError(
      `--exclude: ${JSON.stringify(name)} is not a dataset under -r ${remoteDataset} (give its full name)`,
    );
  return name;
}

function checked(value: string, pattern: RegExp, flag: string, expected: string): string {
  if (!pattern.test(value)) throw new UsageError(`${flag}: ${JSON.stringify(value)} is not ${expected}`);
  return value;
}

function port(text: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < 1 || value > 65535)
    throw new UsageError(`-p/--port: ${JSON.stringify(text)} is not a port number (1-65535)`);
  return value;
}

function duration(text: string, flag: string): number {
  const seconds = parseDuration(text);
  if (seconds === undefined)
    throw new UsageError(`${flag}: ${JSON.stringify(text)} is not a duration such as 90m, 36h or 30d`);
  return seconds;
}

function keepWindow(
  keep: string | undefined,
  keepDays: string | undefined,
): { keepSeconds: number; keepLabel: string } {
  if (keep !== undefined) return { keepSeconds: duration(keep, '--keep'), keepLabel: keep };
  if (keepDays === undefined || keepDays === '')
    throw new UsageError('missing required option -k/--keep-days (or --keep)');
  if (!/^\d+(\.\d+)?$/.test(keepDays))
    throw new UsageError(`-k/--keep-days: ${JSON.stringify(keepDays)} is not a non-negative number of days`);
  return { keepSeconds: Math.round(Number(keepDays) * 86_400), keepLabel: `${keepDays} days` };
}
