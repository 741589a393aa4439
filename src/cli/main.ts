import { readFileSync } from 'node:fs';
import { FailureError, LockedError, ReplicateError, errorMessage } from '../errors/errors.js';
import { ExitCode } from '../errors/exit-codes.js';
import { type Endpoint, localEndpoint } from '../exec/endpoint.js';
import { shellJoin } from '../exec/quote.js';
import { CommandRunner } from '../exec/runner.js';
import { acquireLocks } from '../lock/lock.js';
import { type Logger, createLogger, oneLine } from '../log/logger.js';
import { defaultStateDir } from '../observe/state-dir.js';
import { summaryLine, totalEntry } from '../observe/summary.js';
import { judgeClocks } from '../replication/clock.js';
import { readReplicaAhead, readSourceAhead } from '../replication/read-ahead.js';
import { runOnce } from '../replication/run-once.js';
import { type MemberName, runTree } from '../replication/run-tree.js';
import { type ProgressOutput, progressMode } from '../transport/progress.js';
import { SshEndpoint } from '../transport/ssh.js';
import { PipelineStreamRunner } from '../transport/stream.js';
import { ZfsHost } from '../zfs/host.js';
import { LOCAL_PROBE_SCRIPT, probeHost } from '../zfs/probe.js';
import type { CliSettings } from './args.js';
import { runObserver } from './observe.js';
import { RunRecorder } from './recorder.js';
import { recordRefusedLine } from './refused-line.js';
import { type Invocation, type RunStart, startedMaster } from './run-start.js';
import { STOP_SIGNALS } from './signals.js';

/**
 * A reader that went away (`zfs_replicate --dry-run | head -1`) is no failure of the run: what it would have
 * read is dropped, and the run ends as it would have, cleanup included, instead of dying of EPIPE.
 */
let outputGone = false;
for (const stream of [process.stdout, process.stderr]) {
  stream.on('error', () => {
    outputGone = true;
  });
}

function print(line: string): void {
  if (!outputGone) process.stdout.write(`${line}\n`);
}

/**
 * Runs one invocation and returns its exit code; never throws. A run comes with its lock taken (or refused) and
 * its ssh connection under way (see entry.ts): this releases and ends them.
 */
export async function main(argv: readonly string[], invocation: Invocation): Promise<number> {
  switch (invocation.kind) {
    case 'observer':
      return runObserver(invocation.command, argv.slice(1), print);
    case 'help':
      process.stdout.write(`${invocation.text}\n`);
      return ExitCode.Ok;
    case 'version':
      process.stdout.write(`${packageVersion()}\n`);
      return ExitCode.Ok;
    case 'usage-error': {
      process.stderr.write(`zfs_replicate: error: ${invocation.message} (see --help)\n`);
      const problem = invocation.replica && recordRefusedLine(invocation.replica, invocation.message, process.env);
      if (problem !== undefined) process.stderr.write(`zfs_replicate: warning: ${problem}\n`);
      return ExitCode.Usage;
    }
  }
  const { settings, start } = invocation;
  const master = startedMaster(invocation);
  const ssh = master && new SshEndpoint(master);
  const log = createLogger({
    verbosity: settings.verbosity,
    format: settings.logFormat,
    file: settings.logFile,
    syslogSocket: settings.syslog ? settings.syslogSocket : undefined,
    context: settings.localDataset,
  });
  const recorder = new RunRecorder({
    ...settings,
    stateDir: settings.stateDir ?? defaultStateDir(process.env, false),
  });
  try {
    const startedAt = Date.now() / 1000;
    const code = await runLocked(settings, start, ssh, log, recorder);
    const problem = recorder.write();
    if (problem !== undefined) log.warn(problem);
    if (!settings.dryRun) logSummary(recorder, settings, log, Date.now() / 1000 - startedAt);
    return code;
  } finally {
    await ssh?.close();
    await log.close();
  }
}

/**
 * One line per replica (and a total for a tree) as an info line: shown with -v, and kept by --log-file and
 * --syslog. On a terminal it is shown without -v too; under cron a successful run stays silent.
 */
function logSummary(recorder: RunRecorder, settings: CliSettings, log: Logger, seconds: number): void {
  const entries = settings.recursive
    ? [...recorder.entries, totalEntry(recorder.entries, seconds)]
    : recorder.entries.map((entry) => ({ ...entry, label: undefined }));
  const alsoOnTerminal = settings.verbosity === 'warn' && process.stderr.isTTY === true;
  for (const line of entries.map(summaryLine)) {
    log.info(line);
    if (alsoOnTerminal && !outputGone)
      process.stderr.write(`zfs_replicate[${oneLine(settings.localDataset)}]: ${line}\n`);
  }
}

async function runLocked(
  settings: CliSettings,
  start: RunStart,
  ssh: SshEndpoint | undefined,
  log: Logger,
  recorder: RunRecorder,
): Promise<ExitCode> {
  const startedAt = Date.now() / 1000;
  /** The run's own end: the replica's record, or with -R the tree's (its members report as they end). */
  const recordRun = (result: Parameters<RunRecorder['replica']>[3], members?: string[]) => {
    if (settings.recursive) recorder.tree(startedAt, result, members);
    else recorder.replica(settings.localDataset, settings.remoteDataset, startedAt, result);
  };
  if ('refusal' in start) {
    const error = start.refusal;
    recordRun({ error });
    if (error instanceof LockedError) return reportLocked(error, settings, log);
    return reportFailure(error, log);
  }
  const { lock, lockDir } = start;

  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    log.warn(`received ${signal}: stopping the run; a common snapshot, once there is one, stays held on both sides`);
    controller.abort();
    start.master?.stopHandshake();
  };
  for (const signal of STOP_SIGNALS) process.on(signal, onSignal);
  const runner = new CommandRunner(controller.signal);
  runner.observe((endpoint, argv) => log.debug(`${endpoint.label}$ ${shellJoin(argv)}`));
  const remoteEndpoint: Endpoint = ssh ?? { ...localEndpoint, label: settings.host };
  try {
    // The local probe needs no ssh: it runs while the connection is set up.
    const localProbing = probeHost(runner, localEndpoint, LOCAL_PROBE_SCRIPT).then((probe) => {
      readReplicaAhead(new ZfsHost(runner, localEndpoint, probe.features), settings.localDataset, settings.recursive);
      return probe;
    });
    const [remoteProbe, localProbe] = await Promise.all([
      (async () => {
        await ssh?.open();
        const guess = new ZfsHost(runner, remoteEndpoint, (await localProbing).features);
        readSourceAhead(guess, settings.remoteDataset, settings.recursive);
        const askedAt = Date.now();
        const probe = await probeHost(runner, remoteEndpoint);
        // The source read its clock somewhere in the round trip: the midpoint is the best guess of when.
        return { ...probe, readAt: (askedAt + Date.now()) / 2000 };
      })(),
      localProbing,
    ]);
    const remoteFeatures = remoteProbe.features;
    const localFeatures = localProbe.features;
    const clocks = judgeClocks(
      remoteProbe.clockSeconds,
      remoteProbe.readAt,
      settings.maxClockSkewSeconds,
      settings.host,
    );
    if (clocks.expiryWithheld !== undefined) log.warn(clocks.expiryWithheld);
    if (clocks.sourceClockUnknown !== undefined) log.warn(clocks.sourceClockUnknown);
    recorder.clocksJudged({
      offsetSeconds: Math.round(clocks.sourceClockOffsetSeconds),
      expiryWithheld: clocks.expiryWithheld !== undefined,
    });
    log.debug(
      `remote zfs: ${remoteFeatures.zfsVersion ?? 'zfs-fuse/legacy'}, tools: ${[...remoteFeatures.tools].join(' ') || 'none'}`,
    );
    log.debug(
      `local zfs: ${localFeatures.zfsVersion ?? 'zfs-fuse/legacy'}, tools: ${[...localFeatures.tools].join(' ') || 'none'}`,
    );
    const runSettings = {
      keepLabel: settings.keepLabel,
      remoteDataset: settings.remoteDataset,
      localDataset: settings.localDataset,
      tag: settings.tag,
      keepSeconds: settings.keepSeconds,
      rollback: settings.rollback,
      dryRun: settings.dryRun,
      raw: settings.raw,
    };
    const remote = new ZfsHost(runner, remoteEndpoint, remoteFeatures);
    const local = new ZfsHost(runner, localEndpoint, localFeatures);
    const streams = new PipelineStreamRunner(remote, local, {
      compress: settings.compress,
      mbufferBytes: settings.mbufferBytes,
      bwlimit: settings.bwlimit,
      progress: progressOutput(settings),
    });
    if (streams.warning !== undefined) log.warn(streams.warning);
    const context = {
      remote,
      local,
      streams,
      log,
      print,
      cancelSignal: controller.signal,
      now: () => new Date(),
      lockFd: lock.fd,
      ...clocks,
    };
    if (settings.recursive) {
      // Each member is locked for its turn too, so a single-dataset job on one of them never races this run.
      const lockMembers = (datasets: readonly string[]) => {
        const attempts = acquireLocks(lockDir, datasets, () => new Date());
        return new Map(datasets.map((dataset, index) => [dataset, attempts[index]!]));
      };
      const memberLocked = (member: MemberName, error: LockedError) => {
        recorder.replica(member.localDataset, member.remoteDataset, Date.now() / 1000, { error });
        reportLocked(error, settings, log);
      };
      const tree = await runTree(
        { ...runSettings, exclude: settings.exclude, jobs: settings.jobs },
        {
          ...context,
          lockMembers,
          memberLocked,
          treeShape: (shape) => recorder.treeShape(shape),
          memberDone: (member, result, memberStarted) =>
            recorder.replica(member.localDataset, member.remoteDataset, memberStarted, {
              ...result,
              interrupted: controller.signal.aborted,
            }),
        },
      );
      // A stop leaves members unstarted: the tree's record says it was stopped, as its exit code does.
      if (controller.signal.aborted)
        throw new FailureError(
          'EINTERRUPTED',
          'stopped by a signal; members not started by then wait for the next run',
        );
      recordRun(
        { outcome: tree },
        tree.members.map((member) => member.localDataset),
      );
    } else {
      recordRun({ outcome: await runOnce(runSettings, context) });
    }
    // A single replica's run that got to its end did all of its work, whatever signal came meanwhile.
    return ExitCode.Ok;
  } catch (error) {
    recordRun({ error, interrupted: controller.signal.aborted });
    if (controller.signal.aborted) {
      log.error(`interrupted: ${errorMessage(error)}`);
      return ExitCode.Interrupted;
    }
    return reportFailure(error, log);
  } finally {
    for (const signal of STOP_SIGNALS) process.off(signal, onSignal);
    // Written while the lock is held: a later run's record can never be overwritten by this older one.
    recorder.write();
    lock.release();
  }
}

/** Progress lines on stderr, where progressMode() says so. */
function progressOutput(settings: CliSettings): ProgressOutput | undefined {
  const mode = progressMode(settings.progress, process.stderr.isTTY === true, settings.verbosity === 'error');
  if (mode === undefined) return undefined;
  return {
    mode,
    columns: process.stderr.columns,
    write: (text) => {
      if (!outputGone) process.stderr.write(text);
    },
  };
}

/** A long transfer still running is normal under cron: stay quiet unless it has run suspiciously long. */
function reportLocked(error: LockedError, settings: CliSettings, log: Logger): ExitCode {
  const overdue = error.heldForMs === undefined || error.heldForMs > settings.lockWarnSeconds * 1000;
  if (overdue) log.warn(error.message);
  else log.info(error.message);
  return error.exitCode;
}

function reportFailure(error: unknown, log: Logger): ExitCode {
  if (error instanceof ReplicateError) {
    // One object: a message with a `%s` in it would be read as a format string, and the code dropped.
    log.error({ message: error.message, code: error.code });
    return error.exitCode;
  }
  // Not one of ours: a bug. One line for cron, the stack for whoever runs -vv.
  log.error(`unexpected internal error: ${errorMessage(error)}`);
  if (error instanceof Error && error.stack) log.debug(error.stack);
  return ExitCode.Failure;
}

/** The bundle's chunk (dist/chunks/main-*.mjs) and the compiled tree (dist/src/cli/main.js) sit at different depths. */
function packageVersion(): string {
  for (let directory = new URL('.', import.meta.url); ; directory = new URL('..', directory)) {
    try {
      return (JSON.parse(readFileSync(new URL('package.json', directory), 'utf8')) as { version: string }).version;
    } catch (error) {
      if (directory.pathname === '/') throw error;
    }
  }
}
