/**
 * Where a command runs. The runner and the pipeline only ever ask an endpoint to turn a local argv into the
 * argv that executes it there, so "local" and "over ssh" share every other line of code.
 */
export interface Endpoint {
  /** Short name for messages: "local" or the remote host name. */
  readonly label: string;
  readonly isRemote: boolean;
  /** The program and arguments that run `argv` on this endpoint. */
  wrap(argv: readonly string[]): { file: string; args: string[] };
  /** The program and arguments that run a POSIX shell script there (built with shellJoin from argvs). */
  wrapScript(script: string): { file: string; args: string[] };
  /**
   * For a command there that exited 255 (ssh's own failure code): one line on why the connection went, from
   * what the transport and the command said; undefined when neither said anything (the remote command died
   * of a signal, e.g. SIGPIPE after a later stage had gone).
   */
  connectionLost?(commandStderr: string): string | undefined;
}

export const localEndpoint: Endpoint = {
  label: 'local',
  isRemote: false,
  wrap(argv) {
    const [file, ...args] = argv;
    if (file === undefined) throw new Error('empty command');
    return { file, args };
  },
  wrapScript(script) {
    return { file: 'sh', args: ['-c', script] };
  },
};
