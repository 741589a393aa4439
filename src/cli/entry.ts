#!/usr/bin/env node
import { ExitCode } from '../errors/exit-codes.js';
import type { SshMaster } from '../transport/ssh-master.js';
import { readCommandLine } from './command-line.js';
import { withSbinPath } from './path.js';
import { startInvocation, startedMaster } from './run-start.js';
import { STOP_SIGNALS } from './signals.js';

// A cold run spends about 0.2 s on the ssh handshake and 0.05 s loading the program's bulk (winston, execa,
// the replication code). Only the command line is read first and the lock taken, so the two overlap: the
// connection starts here, and main() picks it up (and ends it).
const argv = process.argv.slice(2);
// (The bundle's banner moves a process whose working directory was removed to /: yargs reads process.cwd()
// as its modules load, and that threw a stack trace before any of this ran.)
// cron's PATH is /usr/bin:/bin, while zfs lives in /sbin or /usr/sbin.
process.env.PATH = withSbinPath(process.env.PATH);

// Until main() takes over signals, one stops the run here: the connection is ended, nothing else was begun.
// In place before the connection starts: a signal with no listener would kill this process and leave it.
let master: SshMaster | undefined;
let stopped: Promise<void> | undefined;
const stopBeforeMain = (signal: NodeJS.Signals) => {
  stopped ??= (async () => {
    process.stderr.write(`zfs_replicate: received ${signal} before the run began; nothing was changed\n`);
    await master?.close();
    process.exitCode = ExitCode.Interrupted;
  })();
};
for (const signal of STOP_SIGNALS) process.on(signal, stopBeforeMain);
const invocation = startInvocation(readCommandLine(argv, process.env));
master = startedMaster(invocation);
try {
  const { main } = await import('./main.js');
  if (stopped) await stopped;
  else {
    const running = main(argv, invocation);
    // main() puts its own handlers in place before its first await; only then do these go, so a signal that
    // came meanwhile still finds a listener (with none, Node drops a signal it has already caught).
    for (const signal of STOP_SIGNALS) process.off(signal, stopBeforeMain);
    process.exitCode = await running;
  }
} catch (error) {
  // main() never throws: only a broken install gets here (dist/chunks/main-*.mjs missing or unreadable).
  process.stderr.write(`zfs_replicate: error: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = ExitCode.Failure;
  await master?.close();
}
