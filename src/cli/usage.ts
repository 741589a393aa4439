import { UsageError } from '../errors/errors.js';

export function kebab(camel: string): string {
  return camel.replace(/[A-Z]/g, (letter) => `-${letter.toLowerCase()}`);
}

/**
 * yargs' own failures as usage errors. yargs names an unknown option by its camelCased key ("bogusOpt"), which
 * is not what anyone typed: it is named as typed on the command line (--bogus-opt) where it can be found there.
 */
export function usageFailure(argv: readonly string[]): (message: string, error: Error | undefined) => never {
  return (message, error) => {
    throw new UsageError(namedAsTyped(message || error?.message || 'invalid command line', argv));
  };
}

function namedAsTyped(message: string, argv: readonly string[]): string {
  const unknown = /^(Unknown arguments?: )(.*)$/.exec(message);
  if (!unknown) return message;
  const typed = argv.map((word) => word.split('=')[0]!);
  const names = unknown[2]!
    .split(', ')
    .map((name) => typed.find((word) => [`--${kebab(name)}`, `--${name}`, `-${name}`].includes(word)) ?? name);
  return `${unknown[1]}${names.join(', ')}`;
}

/** What yargs knows of a parser's options. */
export interface OptionKinds {
  key: Record<string, unknown>;
  /** Each option's aliases, by the option's own (kebab-case) name. */
  alias: Record<string, string[]>;
  boolean: string[];
  count: string[];
  array: string[];
}

/** getOptions() is public yargs API that @types/yargs does not declare. */
export function optionKinds(parser: unknown): OptionKinds {
  return (parser as { getOptions(): OptionKinds }).getOptions();
}

export function camel(kebabName: string): string {
  return kebabName.replace(/-([a-z])/g, (_, letter: string) => letter.toUpperCase());
}

/** The command line with its switches' values read, and the switches it turned off (they beat the environment). */
export interface SwitchesRead {
  argv: string[];
  off: Set<string>;
}

/**
 * yargs reads `--dry-run=yes` (any value but "true") as false, so that "dry run" ran for real: a switch given a
 * value takes the environment's words instead (1/0, true/false, yes/no, on/off), -v a count of 0-2, and any
 * other value is refused, as is a switch both on and off. A value after combined short flags (`-vR=1`) is the
 * last one's. What follows `--` is left as it is.
 */
export function switchValuesRead(argv: readonly string[], kinds: OptionKinds): SwitchesRead {
  const end = argv.indexOf('--');
  const off = new Set<string>();
  const on = new Set<string>();
  const optionOf = (spelt: string) => {
    for (const name of new Set([spelt, kebab(spelt)])) {
      const option =
        Object.entries(kinds.alias).find(([own, aliases]) => own === name || aliases.includes(name))?.[0] ??
        (Object.hasOwn(kinds.key, name) ? name : undefined);
      if (option !== undefined) return option;
    }
    return undefined;
  };
  const kind = (option: string): 'switch' | 'count' | undefined => {
    const is = (list: readonly string[]) => list.includes(option) || list.includes(camel(option));
    return is(kinds.boolean) ? 'switch' : is(kinds.count) ? 'count' : undefined;
  };
  const turned = (option: string, state: boolean, argument: string) => {
    (state ? on : off).add(camel(option));
    if (on.has(camel(option)) && off.has(camel(option)))
      throw new UsageError(`--${option} is both on and off in this line (${JSON.stringify(argument)})`);
  };
  const readSwitch = (spelt: string, value: string | undefined, argument: string): string[] | undefined => {
    const option = optionOf(spelt);
    if (option === undefined || kind(option) === undefined) return undefined;
    if (value === undefined) {
      if (kind(option) === 'switch') turned(option, true, argument);
      return [`--${option}`];
    }
    if (kind(option) === 'count') {
      if (!/^[0-2]$/.test(value))
        throw new UsageError(`${JSON.stringify(argument)}: expected 0, 1 or 2 (as many as -v flags)`);
      if (value === '0') off.add(camel(option));
      return Array.from({ length: Number(value) }, () => `--${option}`);
    }
    if (ENV_TRUE.test(value)) {
      turned(option, true, argument);
      return [`--${option}`];
    }
    if (value !== '' && ENV_FALSE.test(value)) {
      turned(option, false, argument);
      return [];
    }
    throw new UsageError(`--${option} is a switch: ${JSON.stringify(argument)} is neither on (1, yes) nor off (0, no)`);
  };
  const readArgument = (argument: string): string[] => {
    const long = /^-{2,}([^=]*?)(?:=([\s\S]*))?$/.exec(argument);
    if (long !== null) {
      const words = argument.startsWith('---') ? undefined : readSwitch(long[1]!, long[2], argument);
      if (words !== undefined) return words;
      // yargs takes `--DRY-RUN=no` or `---dry-run=no` for the switch, with the value "no" as true.
      const lookalike = optionOf(long[1]!.toLowerCase().replace(/^-+/, ''));
      if (lookalike !== undefined && kind(lookalike) !== undefined)
        throw new UsageError(`Unknown argument: ${argument.split('=')[0]} (the option is --${lookalike})`);
      return [argument];
    }
    const short = /^-([A-Za-z]+)(?:=([\s\S]*))?$/.exec(argument);
    if (short === null) return [argument];
    const letters = [...short[1]!];
    // Combined short flags (-vR): each letter on its own, the value (if any) the last one's.
    const each = letters.map((letter, index) =>
      readSwitch(letter, index === letters.length - 1 ? short[2] : undefined, argument),
    );
    return each.every((words) => words !== undefined) ? (each.flat() as string[]) : [argument];
  };
  const words = argv.flatMap((argument, index) => (end !== -1 && index >= end ? [argument] : readArgument(argument)));
  return { argv: words, off };
}

export const ENV_TRUE = /^(1|true|yes|on)$/i;
export const ENV_FALSE = /^(0|false|no|off)?$/i;
