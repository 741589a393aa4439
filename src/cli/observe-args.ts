import yargs from 'yargs';
import { UsageError } from '../errors/errors.js';
import { parseDuration } from '../retention/duration.js';
import { datasetNameProblem } from '../zfs/names.js';
import { kebab, optionKinds, switchValuesRead, usageFailure } from './usage.js';

export type ObserverCommand = 'status' | 'check';
const OBSERVER_COMMANDS: ReadonlySet<string> = new Set<ObserverCommand>(['status', 'check']);

/**
 * The subcommand, when the first word names one; anything else is a pull with the ancestor's flags, as before
 * (`-h status ...` is a pull from a host named "status": only a first word that is not an option counts).
 */
export function observerCommand(argv: readonly string[]): ObserverCommand | undefined {
  const first = argv[0] ?? '';
  return OBSERVER_COMMANDS.has(first) ? (first as ObserverCommand) : undefined;
}

export interface StatusSettings {
  datasets: string[];
  recursive: boolean;
  json: boolean;
  stateDir: string | undefined;
}

export interface CheckSettings extends StatusSettings {
  warnSeconds: number;
  critSeconds: number;
}

const USAGE: Record<ObserverCommand, readonly [string, string]> = {
  status: [
    '$0 status [-l LOCAL_DATASET]... [-R] [--json]',
    'What this host knows of its replicas: lag, where the tag sits, the last run and the last success.\nLocal only: no ssh, no zfs command.',
  ],
  check: [
    '$0 check -l LOCAL_DATASET [-R] --warn 26h --crit 50h',
    'A Nagios/Icinga check: exit 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN, one line with perfdata.\nLag is the age of the newest snapshot on the replica; a failed last run is at least WARNING;\nnever replicated is CRITICAL; with -R the worst member decides.',
  ],
};

/**
 * `status` and `check`: their own small option set. Of the environment only ZFS_REPLICATE_STATE_DIR applies
 * (the same variable a pull reads), so a check run from a pull's environment finds the same records.
 */
export function parseObserverArgs(
  command: ObserverCommand,
  argv: readonly string[],
  environment: NodeJS.ProcessEnv = process.env,
): StatusSettings | CheckSettings | { help: string } {
  let helpText = '';
  const parser = yargs([...argv])
    .scriptName('zfs_replicate')
    .usage(USAGE[command][0])
    .epilog(USAGE[command][1])
    .parserConfiguration({
      'boolean-negation': false,
      'strip-aliased': true,
      'strip-dashed': true,
      'dot-notation': false,
    })
    .help(false)
    .version(false)
    .option('local', {
      alias: ['l', 'local-fs'],
      type: 'string',
      array: true,
      describe:
        command === 'check'
          ? 'local dataset (the replica) to check'
          : 'local dataset (repeatable); default: every replica recorded here',
    })
    .option('recursive', { alias: ['R'], type: 'boolean', describe: 'also every replica under it (its -R tree)' })
    .option('state-dir', { type: 'string', describe: 'where the runs leave their records (as given to the runs)' });
  if (command === 'status') parser.option('json', { type: 'boolean', describe: 'JSON instead of the table' });
  else {
    parser
      .option('warn', { type: 'string', describe: 'WARNING at this lag (a duration such as 26h, or seconds)' })
      .option('crit', { type: 'string', describe: 'CRITICAL at this lag (a duration such as 50h, or seconds)' });
  }
  parser
    .option('help', { type: 'boolean', describe: 'show this help' })
    .strict()
    .wrap(Math.min(120, process.stdout.columns || 100))
    .exitProcess(false)
    .fail(usageFailure(argv));
  const kinds = optionKinds(parser);
  const parsed = parser.parseSync(switchValuesRead(argv, kinds).argv) as Record<string, unknown>;
  if (parsed.help) {
    parser.showHelp((text) => {
      helpText = text;
    });
    return { help: helpText };
  }
  const leftOver = (parsed._ as unknown[] | undefined) ?? [];
  // What follows `--`: yargs keeps it aside, and the check would silently ignore it.
  if (leftOver.length > 0) throw new UsageError(`unexpected argument ${JSON.stringify(String(leftOver[0]))}`);
  for (const [key, value] of Object.entries(parsed)) {
    if (Array.isArray(value) && key !== 'local' && key !== '_')
      throw new UsageError(`option --${kebab(key)} was given more than once`);
  }
  const datasets = ((parsed.local as string[] | undefined) ?? []).map((name) => {
    const problem = datasetNameProblem(name);
    if (problem) throw new UsageError(`-l/--local: dataset name ${JSON.stringify(name)} ${problem}`);
    return name;
  });
  if (parsed.recursive && datasets.length === 0)
    throw new UsageError('-R needs -l LOCAL_DATASET (the root of the tree)');
  const stateDir = (parsed.stateDir as string | undefined) ?? (environment.ZFS_REPLICATE_STATE_DIR || undefined);
  const settings: StatusSettings = {
    datasets,
    recursive: parsed.recursive === true,
    json: parsed.json === true,
    stateDir,
  };
  if (command === 'status') return settings;

  if (datasets.length === 0) throw new UsageError('missing required option -l/--local');
  const warnSeconds = lag(parsed.warn, '--warn');
  const critSeconds = lag(parsed.crit, '--crit');
  if (warnSeconds > critSeconds) throw new UsageError('--warn must not be longer than --crit');
  return { ...settings, warnSeconds, critSeconds };
}

function lag(value: unknown, flag: string): number {
  if (value === undefined || value === '') throw new UsageError(`missing required option ${flag}`);
  const text = String(value);
  const seconds = /^\d+$/.test(text) ? Number(text) : parseDuration(text);
  if (seconds === undefined)
    throw new UsageError(`${flag}: ${JSON.stringify(text)} is not a duration such as 26h or a number of seconds`);
  return seconds;
}
