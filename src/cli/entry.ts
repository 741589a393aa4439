#!/usr/bin/env node
import { SshMaster } from '../transport/ssh-master.js';
import { readCommandLine, sshSettings } from './command-line.js';
import { withSbinPath } from './path.js';

// A cold run spends about 0.2 s on the ssh handshake and 0.05 s loading the program's bulk (winston, execa,
// the replication code). Only the command line is read first, so the two overlap: the connection starts here,
// and main() picks it up (and ends it, whatever happens).
const argv = process.argv.slice(2);
// cron's PATH is /usr/bin:/bin, while zfs lives in /sbin or /usr/sbin.
process.env.PATH = withSbinPath(process.env.PATH);
const commandLine = readCommandLine(argv, process.env);
const ssh = commandLine.kind === 'run' ? sshSettings(commandLine.settings) : undefined;
const master = ssh && new SshMaster(ssh);
try {
  const { main } = await import('./main.js');
  process.exitCode = await main(argv, commandLine, master);
} catch (error) {
  // main() never throws: only a broken install gets here (dist/chunks/main-*.mjs missing or unreadable).
  process.stderr.write(`zfs_replicate: error: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
  await master?.close();
}
