import { errorMessage } from '../errors/errors.js';
import { type CliSettings, type NamedReplica, namedReplica, parseArgs } from './args.js';
import { type ObserverCommand, observerCommand } from './observe-args.js';

/** What an invocation asks for, read before the bulk of the program loads (see entry.ts). */
export type CommandLine =
  | { kind: 'observer'; command: ObserverCommand }
  | { kind: 'help'; text: string }
  | { kind: 'version' }
  | { kind: 'usage-error'; message: string; replica?: NamedReplica }
  | { kind: 'run'; settings: CliSettings };

export function readCommandLine(argv: readonly string[], environment: NodeJS.ProcessEnv): CommandLine {
  const command = observerCommand(argv);
  if (command !== undefined) return { kind: 'observer', command };
  try {
    const parsed = parseArgs(argv, environment);
    if ('help' in parsed) return { kind: 'help', text: parsed.help };
    if ('version' in parsed) return { kind: 'version' };
    return { kind: 'run', settings: parsed };
  } catch (error) {
    const replica = namedReplica(argv, environment);
    return { kind: 'usage-error', message: errorMessage(error), ...(replica && { replica }) };
  }
}
