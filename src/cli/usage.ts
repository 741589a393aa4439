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
