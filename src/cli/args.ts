import { constants, accessSync } from 'node:fs';
import { totalmem } from 'node:os';
import yargs from 'yargs';
import { UsageError } from '../errors/errors.js';
import { EXIT_CODE_MEANINGS } from '../errors/exit-codes.js';
import type { Verbosity } from '../log/logger.js';
import { parseDuration } from '../retention/duration.js';
import { parseRate } from '../transport/progress.js';
import { datasetNameProblem, isUnder, tagProblem } from '../zfs/names.js';
import {
  ENV_FALSE,
  ENV_TRUE,
  type OptionKinds,
  camel,
  kebab,
  optionKinds,
  switchValuesRead,
  usageFailure,
} from './usage.js';

export interface CliSettings {
  host: string;
  remoteDataset: string;
  localDataset: string;
  recursive: boolean;
  exclude: string[];
  /** With -R: how many members replicate at once. */
  jobs: number;
  tag: string;
  keepSeconds: number;
  keepLabel: string;
  /** -b: mbuffer's memory, in bytes. */
  mbufferBytes: number;
  port: number | undefined;
  compress: boolean;
  raw: boolean;
  sshOptions: string[];
  identity: string | undefined;
  acceptNewHostKey: boolean;
  user: string | undefined;
  cipher: string | undefined;
  rollback: boolean;
  dryRun: boolean;
  verbosity: Verbosity;
  logFile: string | undefined;
  logFormat: 'text' | 'json';
  syslog: boolean;
  syslogSocket: string;
  /** Undefined: the default, chosen when the lock is taken (see defaultLockDirectory). */
  lockDir: string | undefined;
  lockWarnSeconds: number;
  maxClockSkewSeconds: number;
  /** auto: a live progress line when stderr is a terminal. */
  progress: 'auto' | 'on' | 'off';
  /** Bytes per second, or no limit. */
  bwlimit: number | undefined;
  /** Undefined: the default (see observe/state-dir.ts), decided where the records are written. */
  stateDir: string | undefined;
  metricsFile: string | undefined;
}

const ENV_PREFIX = 'ZFS_REPLICATE_';
export const LOCAL_HOSTS = new Set(['localhost', '127.0.0.1', '::1']);
const HOSTNAME = /^[A-Za-z0-9_.:%[\]-]+$/;
const MBUFFER_SIZE = /^\d+(\.\d+)?[kKmMgG]?$/;
const SSH_OPTION = /^[A-Za-z]+[= ]\S/;
const REPEATABLE = new Set(['_', 'sshOption', 'exclude']);
const DEFAULT_JOBS = 4;
/**
 * The members of a tree share the run's one ssh connection, and sshd allows 10 sessions on one connection
 * (MaxSessions); a member holds at most two at once (a listing or a size estimate beside its stream).
 */
const MAX_JOBS = 5;

const EPILOG = [
  'Pulls the snapshots of REMOTE_DATASET on HOST into LOCAL_DATASET over ssh, keeping the newest common',
  'snapshot held with TAG on both sides, and expires local snapshots older than the keep period.',
  '',
  'Exit codes:',
  ...EXIT_CODE_MEANINGS.map(([code, meaning]) => `  ${code}  ${meaning}`),
  '',
  'Every option can also come from the environment: ZFS_REPLICATE_HOST, ZFS_REPLICATE_KEEP_DAYS, ...',
  '(a flag takes 1/0, -v takes 0-2); the command line wins, also over the other option of a pair',
  '(-k/--keep, -q/-v).',
  '',
  'Monitoring (local only, no ssh): zfs_replicate status [-l LOCAL_DATASET [-R]] [--json]',
  '                                 zfs_replicate check -l LOCAL_DATASET [-R] --warn 26h --crit 50h',
].join('\n');

/**
 * Parses the command line and ZFS_REPLICATE_* variables (the command line wins); throws UsageError with one
 * line on any problem. `-h` is the host, as in the ancestor's crontab lines: help is `--help` only.
 */
export function parseArgs(
  argv: readonly string[],
  environment: NodeJS.ProcessEnv = process.env,
): CliSettings | { help: string } | { version: true } {
  let helpText: string | undefined;
  const parser = yargs([...argv])
    .scriptName('zfs_replicate')
    .usage('$0 -h HOST -r REMOTE_DATASET -l LOCAL_DATASET -t TAG -k DAYS [options]')
    .parserConfiguration({
      'boolean-negation': false,
      'strip-aliased': true,
      'strip-dashed': true,
      'duplicate-arguments-array': true,
      // `--ssh-option.x=1` would be an object where a list of strings is expected.
      'dot-notation': false,
    })
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
      describe: 'also replicate every filesystem and volume under REMOTE_DATASET, each from its own common snapshot',
    })
    .option('exclude', {
      type: 'string',
      array: true,
      describe: 'with -R: leave out this remote dataset and everything under it (repeatable)',
    })
    .option('jobs', {
      alias: ['j'],
      type: 'string',
      defaultDescription: String(DEFAULT_JOBS),
      describe: `with -R: members replicated at once, each after its parent (1-${MAX_JOBS})`,
    })
    .option('tag', {
      alias: ['t'],
      type: 'string',
      describe: 'hold tag that protects the common snapshot on both sides',
    })
    .option('keep-days', { alias: ['k'], type: 'string', describe: 'days of local history to keep' })
    .option('keep', {
      type: 'string',
      nargs: 1,
      describe: 'local history to keep as a duration (36h, 90m, 30d); overrides -k',
    })
    .option('mbuffer', {
      nargs: 1,
      alias: ['b'],
      type: 'string',
      defaultDescription: '256M',
      describe: 'mbuffer memory on the receiving side',
    })
    .option('port', { alias: ['p'], type: 'string', describe: 'ssh port' })
    .option('no-compress', {
      alias: ['n', 'no-pigz'],
      type: 'boolean',
      describe: 'no wire compression (never dry-run)',
    })
    .option('no-raw', {
      type: 'boolean',
      describe:
        'send encrypted datasets decrypted, so the backup holds the plaintext (default: raw, the backup never needs the key)',
    })
    .option('ssh-option', {
      type: 'string',
      array: true,
      describe: 'extra ssh -o option (repeatable), e.g. ConnectTimeout=5',
    })
    .option('identity', { alias: ['i'], type: 'string', describe: 'ssh identity file' })
    .option('user', { type: 'string', describe: 'ssh user' })
    .option('accept-new-host-key', {
      type: 'boolean',
      describe: "trust the remote's host key on first contact (a changed key still fails)",
    })
    .option('cipher', { type: 'string', describe: 'ssh cipher (default: ssh chooses)' })
    .option('rollback', {
      type: 'boolean',
      describe:
        'roll the replica back to the common snapshot (destroying local-only snapshots that carry no hold) before receiving',
    })
    .option('dry-run', { type: 'boolean', describe: 'print what would be done; change nothing' })
    .option('verbose', { alias: ['v'], type: 'count', describe: 'more output (-v info, -vv commands)' })
    .option('quiet', { alias: ['q'], type: 'boolean', describe: 'errors only' })
    .option('log-file', { type: 'string', describe: 'also log (info and up) to this file' })
    .option('log-format', {
      choices: ['text', 'json'] as const,
      defaultDescription: 'text',
      describe: 'log line format',
    })
    .option('syslog', { type: 'boolean', describe: 'also log (info and up) to syslog/journald' })
    .option('syslog-socket', { type: 'string', defaultDescription: '/dev/log', describe: 'syslog socket for --syslog' })
    .option('progress', { type: 'boolean', describe: 'show a live progress line per transfer even without a terminal' })
    .option('no-progress', { type: 'boolean', describe: 'no progress line, even on a terminal' })
    .option('bwlimit', {
      type: 'string',
      describe: 'cap the transfer rate, bytes per second (500k, 20M, 1G: binary units)',
    })
    .option('lock-dir', {
      type: 'string',
      defaultDescription: '/run/lock/zfs_replicate, else $XDG_RUNTIME_DIR/zfs_replicate or ~/.local/state/...',
      describe: 'directory of the per-dataset lock files',
    })
    .option('lock-warn', {
      type: 'string',
      nargs: 1,
      defaultDescription: '6h',
      describe: 'warn (instead of exiting quietly) when the lock holder has run longer than this',
    })
    .option('max-clock-skew', {
      type: 'string',
      nargs: 1,
      defaultDescription: '5m',
      describe: "expire nothing (and warn) while the two hosts' clocks differ by more than this",
    })
    .option('state-dir', {
      type: 'string',
      defaultDescription: '/var/lib/zfs_replicate (non-root: ~/.local/state/zfs_replicate)',
      describe: 'where each run leaves its record (read by status, check and --metrics-file)',
    })
    .option('metrics-file', {
      type: 'string',
      describe: "write Prometheus metrics here after every run (node_exporter's textfile collector)",
    })
    .option('help', { type: 'boolean', describe: 'show this help' })
    .option('version', { type: 'boolean', describe: 'show the version' })
    .strict()
    .wrap(Math.min(120, process.stdout.columns || 100))
    .epilog(EPILOG)
    .exitProcess(false)
    .fail(usageFailure(argv));
  const kinds = optionKinds(parser);
  const switches = switchValuesRead(argv, kinds);
  const fromCommandLine = parser.parseSync(switches.argv) as Record<string, unknown>;
  if (fromCommandLine.help) {
    parser.showHelp((text) => {
      helpText = text;
    });
    return { help: helpText ?? '' };
  }
  if (fromCommandLine.version) return { version: true };
  const leftOver = (fromCommandLine._ as unknown[] | undefined) ?? [];
  // yargs keeps what follows `--` aside: in a crontab line it is a mistake, and would be silently ignored.
  if (leftOver.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(String(leftOver[0]))}`);
  for (const [key, value] of Object.entries(fromCommandLine)) {
    // Only --ssh-option and --exclude repeat; a repeated -t or -l in a crontab line is a mistake, not "the last one wins".
    if (Array.isArray(value) && !REPEATABLE.has(key)) {
      throw new UsageError(`option --${kebab(key)} was given more than once`);
    }
  }
  const given = Object.fromEntries(Object.entries(fromCommandLine).filter(([, value]) => isGiven(value)));
  const parsed = {
    ...DEFAULTS,
    ...environmentOptions(environment, kinds, new Set([...Object.keys(given), ...switches.off])),
    ...given,
  } as Parsed;

  return settingsOf(parsed, given);
}

/** The replica a crontab line names: a refused line marks that replica's record (see recordRefusedLine). */
export interface NamedReplica {
  localDataset: string;
  recursive: boolean;
  stateDir: string | undefined;
}

/**
 * The replica a refused line names (a key file gone, an unknown or repeated option, a bad variable), read
 * leniently from the line and the environment, since the line itself could not be read: enough to mark that
 * replica's record. A dry run names none: it is no run of the job.
 */
export function namedReplica(argv: readonly string[], environment: NodeJS.ProcessEnv): NamedReplica | undefined {
  const end = argv.indexOf('--');
  const words = end === -1 ? argv : argv.slice(0, end);
  const optionValue = (names: readonly string[]) => {
    for (const [index, word] of words.entries()) {
      for (const name of names) {
        if (word === name) return words[index + 1];
        if (word.startsWith(`${name}=`)) return word.slice(name.length + 1);
      }
    }
    return undefined;
  };
  const switchOn = (name: string, short: string | undefined, variable: string) => {
    const combined = short === undefined ? undefined : new RegExp(`^-[A-Za-z]*${short}[A-Za-z]*$`);
    for (const word of words) {
      if (word === name || combined?.test(word)) return true;
      if (word.startsWith(`${name}=`)) return ENV_TRUE.test(word.slice(name.length + 1));
    }
    return ENV_TRUE.test(environment[variable] ?? '');
  };
  if (switchOn('--dry-run', undefined, 'ZFS_REPLICATE_DRY_RUN')) return undefined;
  const local =
    optionValue(['-l', '--local', '--local-fs']) ??
    environment.ZFS_REPLICATE_LOCAL ??
    environment.ZFS_REPLICATE_LOCAL_FS;
  if (local === undefined || datasetNameProblem(local) !== undefined) return undefined;
  return {
    localDataset: local,
    recursive: switchOn('--recursive', 'R', 'ZFS_REPLICATE_RECURSIVE'),
    stateDir: optionValue(['--state-dir']) || environment.ZFS_REPLICATE_STATE_DIR || undefined,
  };
}

function settingsOf(parsed: Parsed, given: Record<string, unknown>): CliSettings {
  const host = required(parsed.host, '-h/--host');
  if (!HOSTNAME.test(host) || host.startsWith('-')) throw new UsageError(`invalid host ${JSON.stringify(host)}`);
  const remoteDataset = dataset(required(parsed.remote, '-r/--remote'), '-r/--remote');
  const localDataset = dataset(required(parsed.local, '-l/--local'), '-l/--local');
  const exclude = (parsed.exclude ?? []).map((name) => excluded(String(name), remoteDataset, parsed.recursive));
  if (given.jobs !== undefined && !parsed.recursive) throw new UsageError('-j/--jobs only applies with -R/--recursive');
  const tag = required(parsed.tag, '-t/--tag');
  const tagIssue = tagProblem(tag);
  if (tagIssue) throw new UsageError(`hold tag ${tagIssue}`);

  return {
    host,
    remoteDataset,
    localDataset,
    recursive: parsed.recursive,
    exclude,
    jobs: jobs(parsed.jobs),
    tag,
    ...keepWindow(parsed.keep, parsed.keepDays),
    mbufferBytes: mbufferBytes(parsed.mbuffer),
    port: parsed.port === undefined ? undefined : port(parsed.port),
    compress: !parsed.noCompress,
    raw: !parsed.noRaw,
    sshOptions: (parsed.sshOption ?? []).map((option) =>
      checked(String(option), SSH_OPTION, '--ssh-option', 'Name=value'),
    ),
    identity: parsed.identity === undefined ? undefined : readableFile(parsed.identity, '-i/--identity'),
    acceptNewHostKey: parsed.acceptNewHostKey,
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
    logFile: parsed.logFile === undefined ? undefined : required(parsed.logFile, '--log-file'),
    logFormat: oneOf(parsed.logFormat, ['text', 'json'] as const, '--log-format'),
    syslog: parsed.syslog,
    syslogSocket: parsed.syslogSocket,
    lockDir: parsed.lockDir === undefined ? undefined : required(parsed.lockDir, '--lock-dir'),
    lockWarnSeconds: duration(parsed.lockWarn, '--lock-warn'),
    maxClockSkewSeconds: duration(parsed.maxClockSkew, '--max-clock-skew'),
    progress: progressMode(parsed.progress, parsed.noProgress),
    bwlimit: parsed.bwlimit === undefined ? undefined : rate(parsed.bwlimit, '--bwlimit'),
    stateDir: parsed.stateDir === undefined ? undefined : required(parsed.stateDir, '--state-dir'),
    metricsFile: parsed.metricsFile === undefined ? undefined : required(parsed.metricsFile, '--metrics-file'),
  };
}

/** What the environment may not say: a cron job that prints help replicates nothing, silently. */
const NOT_FROM_ENVIRONMENT = new Set(['help', 'version']);

/**
 * Options that set one thing together: the command line giving either one overrides the environment giving
 * either one (`-k 30` beats ZFS_REPLICATE_KEEP=1s). Within one source the documented override holds (--keep
 * over -k, -q over -v).
 */
const OPTION_GROUPS: ReadonlyArray<readonly string[]> = [
  ['keep', 'keepDays'],
  ['quiet', 'verbose'],
  ['progress', 'noProgress'],
];

/** The values an option has when neither the command line nor the environment gives it. */
const DEFAULTS = {
  recursive: false,
  exclude: [],
  jobs: String(DEFAULT_JOBS),
  mbuffer: '256M',
  noCompress: false,
  noRaw: false,
  sshOption: [],
  acceptNewHostKey: false,
  rollback: false,
  dryRun: false,
  verbose: 0,
  quiet: false,
  logFormat: 'text',
  syslog: false,
  syslogSocket: '/dev/log',
  progress: false,
  noProgress: false,
  lockWarn: '6h',
  maxClockSkew: '5m',
};

interface Parsed {
  host?: string;
  remote?: string;
  local?: string;
  recursive: boolean;
  exclude: string[];
  jobs: string;
  tag?: string;
  keep?: string;
  keepDays?: string;
  mbuffer: string;
  port?: string;
  noCompress: boolean;
  noRaw: boolean;
  sshOption: string[];
  identity?: string;
  acceptNewHostKey: boolean;
  user?: string;
  cipher?: string;
  rollback: boolean;
  dryRun: boolean;
  verbose: number;
  quiet: boolean;
  logFile?: string;
  logFormat: 'text' | 'json';
  syslog: boolean;
  syslogSocket: string;
  lockDir?: string;
  lockWarn: string;
  maxClockSkew: string;
  progress: boolean;
  noProgress: boolean;
  bwlimit?: string;
  stateDir?: string;
  metricsFile?: string;
}

function isGiven(value: unknown): boolean {
  return value !== undefined && value !== false && value !== 0 && !(Array.isArray(value) && value.length === 0);
}

/**
 * The options ZFS_REPLICATE_* variables give, each with the same meaning as its flag, except those the
 * command line already gives (itself or one of its group). A misspelt variable must not be silently ignored,
 * nor reported as an "argument"; yargs' own reading took "1" for false (ZFS_REPLICATE_DRY_RUN=1 ran for real).
 */
function environmentOptions(
  environment: NodeJS.ProcessEnv,
  kinds: OptionKinds,
  onCommandLine: ReadonlySet<string>,
): Record<string, unknown> {
  const values: Record<string, unknown> = {};
  const setBy = new Map<string, string>();
  for (const [name, value = ''] of Object.entries(environment)) {
    if (!name.startsWith(ENV_PREFIX)) continue;
    const spelt = name.slice(ENV_PREFIX.length).toLowerCase().replace(/_/g, '-');
    // hasOwn: `in` would take ZFS_REPLICATE_CONSTRUCTOR for an option (Object.prototype's).
    if (!Object.hasOwn(kinds.key, spelt) && !Object.hasOwn(kinds.key, camel(spelt))) {
      throw new UsageError(`unknown environment variable ${name}: no option --${spelt}`);
    }
    // An alias (ZFS_REPLICATE_NO_PIGZ, ..._REMOTE_FS) means its option, which is what the rest reads.
    const option = Object.entries(kinds.alias).find(([, aliases]) => aliases.includes(spelt))?.[0] ?? spelt;
    const key = camel(option);
    // Two spellings of one option: which one wins would depend on the environment's order.
    const other = setBy.get(key);
    if (other !== undefined) throw new UsageError(`${other} and ${name} both set --${option}: keep one`);
    setBy.set(key, name);
    if (NOT_FROM_ENVIRONMENT.has(key)) throw new UsageError(`${name}: --${option} cannot come from the environment`);
    const group = OPTION_GROUPS.find((members) => members.includes(key)) ?? [key];
    if (group.some((member) => onCommandLine.has(member))) continue;
    values[key] = environmentValue(name, value, key, kinds);
  }
  return values;
}

function environmentValue(name: string, value: string, key: string, kinds: OptionKinds): unknown {
  const is = (list: readonly string[]) => list.includes(key) || list.includes(kebab(key));
  if (is(kinds.boolean)) {
    if (ENV_TRUE.test(value)) return true;
    if (ENV_FALSE.test(value)) return false;
    throw new UsageError(`${name}=${JSON.stringify(value)}: expected 1 or 0 (true/false, yes/no)`);
  }
  if (is(kinds.count)) {
    if (/^[0-2]$/.test(value)) return Number(value);
    throw new UsageError(`${name}=${JSON.stringify(value)}: expected 0, 1 or 2 (as many as -v flags)`);
  }
  return is(kinds.array) ? [value] : value;
}

function required(value: string | undefined, flag: string): string {
  if (value === undefined) throw new UsageError(`missing required option ${flag}`);
  if (value === '') throw new UsageError(`${flag}: the value is empty`);
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

/** A missing key file must not fall back to ssh's default key in silence. */
function readableFile(path: string, flag: string): string {
  try {
    accessSync(path, constants.R_OK);
  } catch (error) {
    throw new UsageError(`${flag}: cannot read ${JSON.stringify(path)} (${(error as NodeJS.ErrnoException).code})`);
  }
  return path;
}

/** yargs' `choices` is not enforced under strip-dashed, and the environment bypasses it anyway. */
function oneOf<Choice extends string>(value: unknown, choices: readonly Choice[], flag: string): Choice {
  if (typeof value !== 'string') throw new UsageError(`${flag} needs a value: ${choices.join(' or ')}`);
  if (!(choices as readonly string[]).includes(value))
    throw new UsageError(`${flag}: ${JSON.stringify(value)} is not one of ${choices.join(', ')}`);
  return value as Choice;
}

function checked(value: string, pattern: RegExp, flag: string, expected: string): string {
  if (!pattern.test(value)) throw new UsageError(`${flag}: ${JSON.stringify(value)} is not ${expected}`);
  return value;
}

const UNIT_BYTES: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/**
 * mbuffer refuses fewer than 5 of its 128k blocks, and fails at run time, after the source's send has begun,
 * when it cannot have its memory: both are refused here. At most half of this host's memory (it is the
 * receiving side's buffer).
 */
function mbufferBytes(text: string): number {
  const flag = '-b/--mbuffer';
  checked(text, MBUFFER_SIZE, flag, 'a size such as 256M or 1G');
  const bytes = Math.floor(Number.parseFloat(text) * (UNIT_BYTES[text.slice(-1).toLowerCase()] ?? 1));
  if (bytes < UNIT_BYTES.m!) throw new UsageError(`${flag}: ${JSON.stringify(text)} is too small (at least 1M)`);
  const most = totalmem() / 2;
  if (bytes > most)
    throw new UsageError(
      `${flag}: ${JSON.stringify(text)} is more than half of this host's memory (${Math.floor(most / UNIT_BYTES.m!)}M)`,
    );
  return bytes;
}

function jobs(text: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < 1 || value > MAX_JOBS)
    throw new UsageError(`-j/--jobs: ${JSON.stringify(text)} is not a number of jobs (1-${MAX_JOBS})`);
  return value;
}

function port(text: string): number {
  const value = Number(text);
  if (!/^\d+$/.test(text) || value < 1 || value > 65535)
    throw new UsageError(`-p/--port: ${JSON.stringify(text)} is not a port number (1-65535)`);
  return value;
}

function progressMode(on: boolean, off: boolean): CliSettings['progress'] {
  if (on && off) throw new UsageError('--progress and --no-progress contradict each other');
  return on ? 'on' : off ? 'off' : 'auto';
}

function rate(text: string, flag: string): number {
  const bytes = parseRate(text);
  if (bytes === undefined)
    throw new UsageError(`${flag}: ${JSON.stringify(text)} is not a rate in bytes per second such as 500k, 20M or 1G`);
  return bytes;
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
  // --keep wins over -k, but a -k beside it that means nothing is still a mistake in the line.
  if (keepDays !== undefined && !/^\d+(\.\d+)?$/.test(keepDays))
    throw new UsageError(`-k/--keep-days: ${JSON.stringify(keepDays)} is not a non-negative number of days`);
  if (keep !== undefined) return { keepSeconds: duration(keep, '--keep'), keepLabel: keep };
  if (keepDays === undefined) throw new UsageError('missing required option -k/--keep-days (or --keep)');
  return { keepSeconds: Math.round(Number(keepDays) * 86_400), keepLabel: `${keepDays} days` };
}
