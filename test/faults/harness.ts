import { type ChildProcess, spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { shellJoin } from '../../src/exec/quote.js';
import type { Snapshot } from '../../src/zfs/types.js';
import { CLI, CRON_PATH, type CommandOutcome, PROJECT_ROOT, TESTBED_SCRIPT, Testbed } from '../testbed/testbed.js';

/** One replication relationship: `localHost` pulls `remoteHost:remoteDataset` into `localDataset` with `tag`. */
export interface Pair {
  remoteHost: string;
  remoteDataset: string;
  localHost: string;
  localDataset: string;
  tag: string;
  /** The --keep duration every run of this pair gets, and the same in seconds for the invariants. */
  keep: string;
  keepSeconds: number;
}

/** A snapshot as the tool itself lists it. */
export type SnapshotInfo = Snapshot;

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

export function durationSeconds(duration: string): number {
  const match = /^(\d+)([smhdw])$/.exec(duration);
  if (!match) throw new Error(`bad duration ${duration}`);
  const unit = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 }[match[2] as 's' | 'm' | 'h' | 'd' | 'w'];
  return Number(match[1]) * unit;
}

/** A small seeded generator (mulberry32), so a failing random schedule can be replayed from its seed. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** A dataset's snapshots by createtxg, or undefined when the dataset does not exist. */
export async function listSnapshots(tb: Testbed, host: string, dataset: string): Promise<SnapshotInfo[] | undefined> {
  const listing = await tb.listing(host, dataset);
  return listing.exists ? listing.snapshots : undefined;
}

/** The dataset's own guid (a replica destroyed and received again in full gets a new one). */
export async function datasetGuid(tb: Testbed, host: string, dataset: string): Promise<string | undefined> {
  return (await tb.listing(host, dataset)).guid;
}

/**
 * Which of `names` (snapshots of `dataset`) carry `tag`, learnt the only way zfs-fuse allows (it has no
 * `zfs holds`): a hold attempt that answers "tag already exists", undone at once when it succeeds. One shell
 * on the host for all of them.
 */
export async function heldBy(
  tb: Testbed,
  host: string,
  dataset: string,
  names: readonly string[],
  tag: string,
): Promise<Set<string>> {
  const held = new Set<string>();
  if (names.length === 0) return held;
  const script = [
    'tag=$1; shift',
    'for s in "$@"; do',
    '  if out=$(zfs hold "$tag" "$s" 2>&1); then',
    '    zfs release "$tag" "$s" >/dev/null 2>&1 || echo "error $s: cannot undo the test hold"',
    '    echo "free $s"',
    '  elif [[ $out == *"tag already exists"* ]]; then echo "held $s"',
    '  else echo "error $s: $out"; fi',
    'done',
  ].join('\n');
  const outcome = await tb.on(host, [
    'bash',
    '-c',
    script,
    'heldBy',
    tag,
    ...names.map((name) => `${dataset}@${name}`),
  ]);
  for (const line of outcome.stdout.split('\n')) {
    if (line.startsWith('held ')) held.add(line.slice(`held ${dataset}@`.length));
    else if (line.startsWith('error ')) throw new Error(`on ${host}: hold test: ${line}`);
  }
  return held;
}

export function lockPath(localDataset: string): string {
  return `/run/lock/zfs_replicate/${encodeURIComponent(localDataset)}.lock`;
}

/** Whether a run (or its orphaned transfer processes) still holds the dataset's lock; waits up to `waitSeconds`. */
export async function lockTaken(tb: Testbed, host: string, localDataset: string, waitSeconds = 0): Promise<boolean> {
  const outcome = await tb.on(host, [
    'bash',
    '-c',
    '[ ! -e "$1" ] || flock -w "$2" "$1" true',
    'lockTaken',
    lockPath(localDataset),
    String(waitSeconds),
  ]);
  return outcome.exitCode !== 0;
}

/** The pid of the run holding the lock, once a run that started at or after `sinceMs` has written it. */
export async function lockHolderPid(
  tb: Testbed,
  host: string,
  localDataset: string,
  sinceMs: number,
  timeoutMs = 20_000,
): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const outcome = await tb.on(host, ['cat', lockPath(localDataset)]);
    if (outcome.exitCode === 0) {
      try {
        const holder = JSON.parse(outcome.stdout) as { pid: number; since: number };
        if (holder.since >= sinceMs) return holder.pid;
      } catch {
        // being written
      }
    }
    await sleep(50);
  }
  throw new Error(`no run took the lock of ${host}:${localDataset}`);
}

/** A CLI run whose stderr can be watched line by line while it runs (to hit a window: a hold, a release, ...). */
export interface RunningCli {
  readonly done: Promise<CommandOutcome>;
  readonly lines: readonly string[];
  /** Resolves with the first line (seen so far or later) that matches; rejects if the run ends first. */
  waitForLine(match: RegExp | ((line: string) => boolean), timeoutMs?: number): Promise<string>;
}

function testbedVariables(): Record<string, string> {
  return Object.fromEntries(
    Object.entries(process.env).filter(
      (entry): entry is [string, string] => entry[0].startsWith('ZR_TESTBED_') && entry[1] !== undefined,
    ),
  );
}

/**
 * Starts zfs_replicate on `host` the way cron does (PATH=/usr/bin:/bin), optionally behind `wrapper` (e.g.
 * `env LD_PRELOAD=... FAKETIME=...`). The whole process group is SIGKILLed after `timeoutMs`.
 */
export function startCli(
  host: string,
  args: readonly string[],
  options: { wrapper?: readonly string[]; timeoutMs?: number } = {},
): RunningCli {
  const argv = [TESTBED_SCRIPT, 'on', host, '--', ...(options.wrapper ?? []), 'node', CLI, ...args];
  const child: ChildProcess = spawn('bash', argv, {
    cwd: PROJECT_ROOT,
    env: {
      ...testbedVariables(),
      PATH: CRON_PATH,
      HOME: '/root',
      LANG: 'C',
      ZFS_REPLICATE_STATE_DIR: Testbed.stateDir(host),
    },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const waiters = new Set<{ test: (line: string) => boolean; resolve: (line: string) => void }>();
  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    stdout += chunk;
  });
  const reader = createInterface({ input: child.stderr! });
  reader.on('line', (line) => {
    stderr += `${line}\n`;
    lines.push(line);
    for (const waiter of waiters) {
      if (waiter.test(line)) {
        waiters.delete(waiter);
        waiter.resolve(line);
      }
    }
  });
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // gone already
    }
  }, options.timeoutMs ?? 180_000);
  const done = new Promise<CommandOutcome>((resolve) => {
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      reader.close();
      const exitCode = code ?? (signal ? 128 + (signal === 'SIGKILL' ? 9 : 15) : -1);
      resolve({
        exitCode,
        stdout,
        stderr: timedOut ? `${stderr}[test harness: killed after ${options.timeoutMs ?? 180_000} ms]\n` : stderr,
      });
    });
  });
  let ended = false;
  void done.then(() => {
    ended = true;
  });
  return {
    done,
    lines,
    waitForLine(match, timeoutMs = 60_000) {
      const test = typeof match === 'function' ? match : (line: string) => match.test(line);
      const seen = lines.find(test);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise<string>((resolve, reject) => {
        const waiter = { test, resolve };
        waiters.add(waiter);
        const fail = (why: string) => {
          if (!waiters.delete(waiter)) return;
          reject(new Error(`${why} without a line matching ${String(match)}; stderr:\n${stderr}`));
        };
        const timer = setTimeout(() => fail(`waited ${timeoutMs} ms`), timeoutMs);
        void done.then(() => {
          clearTimeout(timer);
          setImmediate(() => fail('the run ended'));
        });
        if (ended) fail('the run ended');
      });
    },
  };
}

/** The standard arguments of one run of `pair`, plus `extra`. */
export function pairArgs(pair: Pair, extra: readonly string[] = []): string[] {
  return [
    '-h',
    pair.remoteHost,
    '-r',
    pair.remoteDataset,
    '-l',
    pair.localDataset,
    '-t',
    pair.tag,
    '--keep',
    pair.keep,
    '--ssh-option',
    'ServerAliveInterval=1',
    '--ssh-option',
    'ServerAliveCountMax=3',
    '--ssh-option',
    'ConnectTimeout=3',
    ...extra,
  ];
}

/** Everything a run could change on a host's pool: datasets, snapshots with guids and hold counts. */
export async function poolState(tb: Testbed, host: string): Promise<string> {
  const outcome = await tb.on(host, ['zfs', 'get', '-Hp', '-r', '-o', 'name,property,value', 'guid,userrefs', 'tank']);
  return outcome.stdout;
}

/** Writes `kilobytes` of random data into a new file of the dataset and takes snapshot @name. */
export async function writeAndSnapshot(
  tb: Testbed,
  host: string,
  dataset: string,
  name: string,
  kilobytes: number,
): Promise<void> {
  const mountpoint = await tb.mountpoint(host, dataset);
  const file = `${mountpoint}/file-${name.replace(/[^A-Za-z0-9]/g, '_')}`;
  await tb.sh(
    host,
    `head -c ${kilobytes * 1024} /dev/urandom >${shellJoin([file])} && zfs snapshot ${shellJoin([`${dataset}@${name}`])}`,
  );
}

export const FAKETIME_LIBRARY = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';
