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

/** What yargs knows of a parser's options (its public getOptions(), which @types/yargs does not declare). */
export interface OptionKinds {
  key: Record<string, unknown>;
  /** Each option's aliases, by the option's own (kebab-case) name. */
  alias: Record<string, string[]>;
  boolean: string[];
  count: string[];
  array: string[];
}

export function camel(kebabName: string): string {
  return kebabName.replace(/-([a-z])/g, (_, letter: string) => letter.toUpperCase());
}

/**
 * yargs reads `--dry-run=yes` (any value but "true") as false, so that "dry run" ran for real: a switch given a
 * value takes the environment's words instead (1/0, true/false, yes/no, on/off), -v a count of 0-2, and any
 * other value is refused. What follows `--` is left as it is.
 */
export function switchValuesRead(argv: readonly string[], kinds: OptionKinds): string[] {
  const end = argv.indexOf('--');
  return argv.flatMap((argument, index) => {
    const written = /^--?([^=]+)=([\s\S]*)$/.exec(argument);
    if (written === null || (end !== -1 && index > end)) return [argument];
    const [, spelt = '', value = ''] = written;
    const option = Object.entries(kinds.alias).find(([, aliases]) => aliases.includes(spelt))?.[0] ?? spelt;
    const is = (list: readonly string[]) => list.includes(option) || list.includes(camel(option));
    if (is(kinds.boolean)) {
      if (ENV_TRUE.test(value)) return [`--${option}`];
      if (value !== '' && ENV_FALSE.test(value)) return [];
      throw new UsageError(
        `--${option} is a switch: ${JSON.stringify(argument)} is neither on (1, yes) nor off (0, no)`,
      );
    }
    if (is(kinds.count)) {
      if (/^[0-2]$/.test(value)) return Array.from({ length: Number(value) }, () => `--${option}`);
      throw new UsageError(`${JSON.stringify(argument)}: expected 0, 1 or 2 (as many as -v flags)`);
    }
    return [argument];
  });
}

export const ENV_TRUE = /^(1|true|yes|on)$/i;
export const ENV_FALSE = /^(0|false|no|off)?$/i;
