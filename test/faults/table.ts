import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { type CommandOutcome, TESTBED_DIR, type Testbed } from '../testbed/testbed.js';
import {
  FAKETIME_LIBRARY,
  type Pair,
  type RunningCli,
  listSnapshots,
  lockHolderPid,
  pairArgs,
  poolState,
  sleep,
  startCli,
  writeAndSnapshot,
} from './harness.js';
import type { PairState } from './invariants.js';

/** What a fault row gets: the test bed, the pair under test, a seeded random source and a log. */
export interface FaultContext {
  tb: Testbed;
  pair: Pair;
  /** The pair just before the fault (after `arrange`). */
  before: PairState;
  rng: () => number;
  log: (line: string) => void;
  /** Starts one run of the pair with -vv (every command it runs is a line to trigger on), plus `extra`. */
  start(extra?: readonly string[], options?: { wrapper?: readonly string[] }): RunningCli;
  /** guids the fault destroyed on the source itself. */
  sourceRemoved: Set<string>;
  /** Row-specific findings (a message that does not say what it should, a pool that changed). */
  violations: string[];
  /** Scratch space between arrange, fault and recover. */
  notes: Map<string, string>;
  /** Whether the pair's remote dataset is an origin the row may write to (not a replica further down a chain). */
  originRemote: boolean;
}

/** Where a row can run in the soak: on any pair, only on pairs whose remote is an origin, or not at all. */
export type SoakUse = 'any' | 'origin' | 'never';

export interface FaultRow {
  name: string;
  soak: SoakUse;
  /** --keep of the pair in the fault suite (default 1d). */
  keep?: string;
  /** Per-test timeout in the suite (default 90 s). */
  timeoutMs?: number;
  /** Prepares the fault on the synced pair (new snapshots, a slow link...). */
  arrange?(ctx: Omit<FaultContext, 'before'>): Promise<void>;
  /** Does the fault, with the run(s) it disturbs; resolves to those runs' outcomes. */
  fault(ctx: FaultContext): Promise<CommandOutcome[]>;
  /** Exit codes of the faulted run(s) that tell the truth. */
  acceptable: readonly number[];
  /** Undoes the fault's environment (after link up, rate off and shim off, which always happen). */
  recover?(ctx: FaultContext): Promise<void>;
  /** The fault-free run's extra arguments (e.g. --rollback) and exit code (default 0). */
  cleanArgs?: readonly string[];
  cleanExit?: number;
  /** The fault removes the source dataset for good. */
  sourceGone?: boolean;
}

// ---- building blocks ----

const STREAM_KB = 6 * 1024;
/** 6 MB behind 8 mbit/s: about 6 s of stream, time enough to act in the middle of it. */
const SLOW_RATE = '8mbit';

let counter = 0;
const uniqueName = (prefix: string) => `${prefix}${Date.now().toString(36)}${(counter++).toString(36)}`;

async function newSnapshot(ctx: Omit<FaultContext, 'before'>, kilobytes = 64, prefix = 'n'): Promise<string> {
  const name = uniqueName(prefix);
  await writeAndSnapshot(ctx.tb, ctx.pair.remoteHost, ctx.pair.remoteDataset, name, kilobytes);
  return name;
}

/** Two new snapshots, the newer one noted as the victim that a fault takes away between listing and send. */
async function newSnapshotAndVictim(ctx: Omit<FaultContext, 'before'>): Promise<void> {
  await newSnapshot(ctx);
  ctx.notes.set('victim', await newSnapshot(ctx));
}

/** A big new snapshot and a slow link out of the remote: a stream that takes seconds. */
async function slowStreamAhead(ctx: Omit<FaultContext, 'before'>, kilobytes = STREAM_KB): Promise<void> {
  ctx.notes.set('big', await newSnapshot(ctx, kilobytes, 'big'));
  await ctx.tb.rate(ctx.pair.remoteHost, SLOW_RATE);
}

/** Something new to pull: a small snapshot on an origin (a replica further down a chain already has news). */
async function somethingNew(ctx: Omit<FaultContext, 'before'>): Promise<void> {
  if (ctx.originRemote) ctx.notes.set('new', await newSnapshot(ctx));
}

type Window = 'before' | 'stream' | 'after' | 'holds' | 'expiry';
const WINDOW_LABEL: Record<Window, string> = {
  before: 'before the stream',
  stream: 'during the stream',
  after: 'after the stream',
  holds: 'during hold moves',
  expiry: 'during expiry',
};

/** Waits until the running CLI is in `window` (from its -vv lines). */
async function reach(window: Window, ctx: FaultContext, run: RunningCli): Promise<void> {
  const remote = ctx.pair.remoteHost;
  switch (window) {
    case 'before':
      return;
    case 'stream':
      await run.waitForLine(/ receiving /);
      await sleep(1500);
      return;
    case 'after':
      await run.waitForLine(/ received .* in [\d.]+ s/);
      return;
    case 'holds':
      await run.waitForLine((line) => line.includes(`${remote}$ zfs hold `));
      return;
    case 'expiry': {
      // Expiry starts after the hold move's last local release: its first remote release is for a twin.
      let holdsMoved = false;
      await run.waitForLine((line) => {
        if (line.includes('local$ zfs release ')) holdsMoved = true;
        return (holdsMoved && line.includes(`${remote}$ zfs release `)) || line.includes('local$ zfs destroy ');
      });
      return;
    }
  }
}

async function flap(tb: Testbed, host: string, times = 3, ms = 700): Promise<void> {
  for (let flip = 0; flip < times; flip++) {
    await tb.link(host, 'down');
    await sleep(ms);
    await tb.link(host, 'up');
    await sleep(ms);
  }
}

function linkRow(window: Window, mode: 'cut' | 'flapping'): FaultRow {
  const certainFailure = mode === 'cut' && (window === 'before' || window === 'stream');
  return {
    name: `link ${mode} ${WINDOW_LABEL[window]}`,
    soak: window === 'stream' ? 'origin' : window === 'expiry' ? 'never' : 'any',
    ...(window === 'expiry' ? { keep: '5s' } : {}),
    async arrange(ctx) {
      if (window === 'stream') return slowStreamAhead(ctx);
      if (window === 'expiry') {
        // Snapshots that are older than keep when the faulted run expires them.
        await newSnapshot(ctx);
        await newSnapshot(ctx);
        const synced = await startCli(ctx.pair.localHost, pairArgs(ctx.pair)).done;
        if (synced.exitCode !== 0) throw new Error(`arrange: sync before expiry failed: ${synced.stderr}`);
        await sleep(6000);
      }
      return somethingNew(ctx);
    },
    acceptable: certainFailure ? [1] : [0, 1],
    async fault(ctx) {
      const host = ctx.pair.remoteHost;
      if (window === 'before') {
        if (mode === 'cut') {
          await ctx.tb.link(host, 'down');
          return [await ctx.start().done];
        }
        await ctx.tb.link(host, 'down');
        const run = ctx.start();
        await sleep(500);
        await ctx.tb.link(host, 'up');
        await flap(ctx.tb, host, 2, 500);
        return [await run.done];
      }
      const run = ctx.start();
      await reach(window, ctx, run);
      if (mode === 'cut') await ctx.tb.link(host, 'down');
      else await flap(ctx.tb, host);
      return [await run.done];
    },
  };
}

/** A row that SIGTERMs or SIGKILLs the run a seeded random delay after it took its lock. */
function signalRow(signal: 'TERM' | 'KILL'): FaultRow {
  return {
    name: `SIG${signal} of zfs_replicate at a random point`,
    soak: 'origin',
    arrange: slowStreamAhead,
    acceptable: signal === 'TERM' ? [0, 5] : [0, 137],
    async fault(ctx) {
      const delayMs = Math.floor(ctx.rng() * 7000);
      const started = Date.now();
      const run = ctx.start();
      const pid = await lockHolderPid(ctx.tb, ctx.pair.localHost, ctx.pair.localDataset, started);
      await sleep(delayMs);
      const sent = await ctx.tb.on(ctx.pair.localHost, ['kill', `-${signal}`, String(pid)]);
      ctx.log(
        `SIG${signal} ${delayMs} ms after the lock was taken (pid ${pid}): ${sent.exitCode === 0 ? 'sent' : 'the run had ended'}`,
      );
      return [await run.done];
    },
  };
}

/** The hostile remote: a stand-in zfs whose listing is wrong; the run must stop with a parse error, changing nothing. */
function hostileRow(mode: 'malformed' | 'duplicate-guid' | 'outside' | 'huge', what: string): FaultRow {
  return {
    name: `hostile remote: ${what}`,
    soak: 'any',
    timeoutMs: 120_000,
    arrange: somethingNew,
    acceptable: [1],
    async fault(ctx) {
      const { tb, pair } = ctx;
      const before = [await poolState(tb, pair.localHost), await poolState(tb, pair.remoteHost)];
      await shim(tb, pair.remoteHost, mode);
      const outcome = await ctx.start().done;
      await shim(tb, pair.remoteHost, 'off');
      if (!/EPARSE|cannot parse/.test(outcome.stderr))
        ctx.violations.push(`message: no parse error reported (stderr: ${outcome.stderr.trim().slice(-400)})`);
      await expectUnchanged(ctx, before);
      return [outcome];
    },
  };
}

async function shim(tb: Testbed, host: string, mode: string): Promise<void> {
  await tb.testbedCommand('shim', host, mode);
}

async function expectUnchanged(ctx: FaultContext, before: string[]): Promise<void> {
  const { tb, pair } = ctx;
  const after = [await poolState(tb, pair.localHost), await poolState(tb, pair.remoteHost)];
  if (after[0] !== before[0]) ctx.violations.push(`changed: the local pool on ${pair.localHost} changed`);
  if (after[1] !== before[1]) ctx.violations.push(`changed: the remote pool on ${pair.remoteHost} changed`);
}

const knownHosts = (host: string) => `${TESTBED_DIR}/hosts/${host}/root/.ssh/known_hosts`;
const sshConfig = (host: string) => `${TESTBED_DIR}/hosts/${host}/root/.ssh/config`;

function hostKeyChangedRow(configTrustsAll: boolean): FaultRow {
  return {
    name: `ssh: the remote host key changed${configTrustsAll ? ', with StrictHostKeyChecking no in ssh_config' : ''}`,
    soak: 'any',
    arrange: somethingNew,
    acceptable: [1],
    async fault(ctx) {
      const { tb, pair } = ctx;
      const before = [await poolState(tb, pair.localHost), await poolState(tb, pair.remoteHost)];
      if (configTrustsAll) writeFileSync(sshConfig(pair.localHost), 'Host *\n  StrictHostKeyChecking no\n');
      await tb.testbedCommand('hostkey', pair.remoteHost, 'new');
      const outcome = await ctx.start().done;
      if (!/host key/i.test(outcome.stderr))
        ctx.violations.push(`message: does not say the host key changed: ${outcome.stderr.trim().slice(-400)}`);
      await expectUnchanged(ctx, before);
      return [outcome];
    },
    async recover(ctx) {
      rmSync(sshConfig(ctx.pair.localHost), { force: true });
      await ctx.tb.testbedCommand('hostkey', ctx.pair.remoteHost, 'restore');
    },
  };
}

/** Whether the newest source snapshot is `name`'s guid (for rows that destroy or rename it on the source). */
async function guidOf(ctx: Omit<FaultContext, 'before'>, name: string): Promise<string> {
  const snapshots = await listSnapshots(ctx.tb, ctx.pair.remoteHost, ctx.pair.remoteDataset);
  const found = snapshots?.find((snapshot) => snapshot.name === name);
  if (!found) throw new Error(`no snapshot @${name} on the source`);
  return found.guid;
}

const skewRow = (direction: '+' | '-'): FaultRow => ({
  name: `clock skew: local clock 2 days ${direction === '+' ? 'ahead' : 'behind'}`,
  soak: 'any',
  async arrange(ctx) {
    if (!ctx.originRemote) return;
    await newSnapshot(ctx);
    await newSnapshot(ctx);
    const synced = await startCli(ctx.pair.localHost, pairArgs(ctx.pair)).done;
    if (synced.exitCode !== 0) throw new Error(`arrange: sync failed: ${synced.stderr}`);
    await newSnapshot(ctx);
  },
  acceptable: [0, 1],
  async fault(ctx) {
    const wrapper = [
      'env',
      `LD_PRELOAD=${FAKETIME_LIBRARY}`,
      `FAKETIME=${direction}2d`,
      'FAKETIME_DONT_FAKE_MONOTONIC=1',
    ];
    return [await ctx.start([], { wrapper }).done];
  },
});

// ---- the table ----

export const FAULTS: readonly FaultRow[] = [
  ...(['before', 'stream', 'after', 'holds', 'expiry'] as const).flatMap((window) => [
    linkRow(window, 'cut'),
    linkRow(window, 'flapping'),
  ]),
  {
    name: 'remote sshd stopped',
    soak: 'any',
    arrange: somethingNew,
    acceptable: [1],
    async fault(ctx) {
      await ctx.tb.testbedCommand('sshd', ctx.pair.remoteHost, 'stop');
      return [await ctx.start().done];
    },
    async recover(ctx) {
      await ctx.tb.testbedCommand('sshd', ctx.pair.remoteHost, 'start');
    },
  },
  ...(['remote', 'local'] as const).map(
    (side): FaultRow => ({
      name: `${side} zfs-fuse restarted ("reboot") during the stream`,
      soak: 'origin',
      timeoutMs: 120_000,
      // The source's send must still be running when its daemon dies: the sending host's pipes, compressor and
      // TCP buffers hold several MB, so a 6 MB stream can have left zfs send entirely by then (seen with zstd).
      arrange: (ctx) => slowStreamAhead(ctx, 4 * STREAM_KB),
      acceptable: [1],
      async fault(ctx) {
        const run = ctx.start();
        await reach('stream', ctx, run);
        await ctx.tb.testbedCommand('zfsd', side === 'remote' ? ctx.pair.remoteHost : ctx.pair.localHost, 'restart');
        return [await run.done];
      },
    }),
  ),
  signalRow('TERM'),
  signalRow('KILL'),
  {
    name: 'two runs racing',
    soak: 'any',
    async arrange(ctx) {
      if (ctx.originRemote) await slowStreamAhead(ctx);
    },
    acceptable: [0, 3],
    async fault(ctx) {
      const first = ctx.start();
      await sleep(300);
      const second = ctx.start();
      const outcomes = await Promise.all([first.done, second.done]);
      if (!outcomes.some((outcome) => outcome.exitCode === 0))
        ctx.violations.push('racing: neither of the two runs succeeded');
      return outcomes;
    },
  },
  {
    name: 'local quota full',
    soak: 'origin',
    async arrange(ctx) {
      ctx.notes.set('big', await newSnapshot(ctx, 3 * 1024, 'big'));
    },
    acceptable: [1],
    async fault(ctx) {
      // A quota below what the replica already uses is refused, and a soak's replica grows round by round:
      // allow what it holds now plus a little, never the 3 MB snapshot on its way.
      const used = Number(await ctx.tb.zfs(ctx.pair.localHost, 'get', '-Hpo', 'value', 'used', ctx.pair.localDataset));
      await ctx.tb.zfs(ctx.pair.localHost, 'set', `quota=${used + 512 * 1024}`, ctx.pair.localDataset);
      return [await ctx.start().done];
    },
    async recover(ctx) {
      await ctx.tb.zfs(ctx.pair.localHost, 'set', 'quota=none', ctx.pair.localDataset);
    },
  },
  {
    name: 'remote snapshot destroyed between listing and send',
    soak: 'origin',
    arrange: newSnapshotAndVictim,
    acceptable: [0, 1],
    async fault(ctx) {
      const victim = ctx.notes.get('victim')!;
      ctx.sourceRemoved.add(await guidOf(ctx, victim));
      await shim(ctx.tb, ctx.pair.remoteHost, `after:destroy ${ctx.pair.remoteDataset}@${victim}`);
      return [await ctx.start().done];
    },
  },
  {
    name: 'remote snapshot renamed between listing and send',
    soak: 'origin',
    arrange: newSnapshotAndVictim,
    acceptable: [0, 1],
    async fault(ctx) {
      const victim = `${ctx.pair.remoteDataset}@${ctx.notes.get('victim')}`;
      await shim(ctx.tb, ctx.pair.remoteHost, `after:rename ${victim} ${victim}-renamed`);
      return [await ctx.start().done];
    },
  },
  {
    name: 'remote dataset renamed between listing and send',
    soak: 'never',
    arrange: somethingNew,
    acceptable: [1, 4],
    async fault(ctx) {
      const dataset = ctx.pair.remoteDataset;
      await shim(ctx.tb, ctx.pair.remoteHost, `after:unmount ${dataset} ; rename ${dataset} ${dataset}-moved`);
      return [await ctx.start().done];
    },
    async recover(ctx) {
      const dataset = ctx.pair.remoteDataset;
      if ((await listSnapshots(ctx.tb, ctx.pair.remoteHost, `${dataset}-moved`)) !== undefined)
        await ctx.tb.zfs(ctx.pair.remoteHost, 'rename', `${dataset}-moved`, dataset);
      await ctx.tb.on(ctx.pair.remoteHost, ['zfs', 'mount', dataset]);
    },
  },
  {
    name: 'remote dataset destroyed',
    soak: 'never',
    acceptable: [4],
    cleanExit: 4,
    sourceGone: true,
    async fault(ctx) {
      const { tb, pair, before } = ctx;
      // An admin who destroys it must release our hold on the base first.
      if (before.base) await tb.zfs(pair.remoteHost, 'release', pair.tag, `${pair.remoteDataset}@${before.base.name}`);
      await tb.zfs(pair.remoteHost, 'unmount', pair.remoteDataset);
      await tb.destroyTree(pair.remoteHost, pair.remoteDataset);
      const localBefore = await poolState(tb, pair.localHost);
      const outcome = await ctx.start().done;
      if (!/does not exist/.test(outcome.stderr))
        ctx.violations.push(`message: does not say the remote dataset is missing: ${outcome.stderr.trim()}`);
      if ((await poolState(tb, pair.localHost)) !== localBefore)
        ctx.violations.push('changed: the local pool changed although the source is gone');
      return [outcome];
    },
  },
  {
    name: 'replica written to',
    soak: 'never',
    arrange: somethingNew,
    acceptable: [4],
    cleanArgs: ['--rollback'],
    async fault(ctx) {
      const { tb, pair } = ctx;
      await tb.zfs(pair.localHost, 'set', 'readonly=off', pair.localDataset);
      await tb.zfs(pair.localHost, 'mount', pair.localDataset);
      const mountpoint = await tb.mountpoint(pair.localHost, pair.localDataset);
      await tb.sh(pair.localHost, `echo local change >'${mountpoint}/written-on-the-replica'`);
      await tb.zfs(pair.localHost, 'unmount', pair.localDataset);
      await tb.zfs(pair.localHost, 'set', 'readonly=on', pair.localDataset);
      const before = [await poolState(tb, pair.localHost), await poolState(tb, pair.remoteHost)];
      const outcome = await ctx.start().done;
      if (!/modified/.test(outcome.stderr))
        ctx.violations.push(`message: does not say the replica was modified: ${outcome.stderr.trim()}`);
      await expectUnchanged(ctx, before);
      return [outcome];
    },
  },
  skewRow('+'),
  skewRow('-'),
  hostileRow('malformed', 'malformed listing lines'),
  hostileRow('duplicate-guid', 'duplicate guids'),
  hostileRow('outside', 'names outside the requested dataset'),
  hostileRow('huge', 'a huge listing (700,000 snapshots, 120 MB)'),
  hostKeyChangedRow(false),
  // An ssh_config that trusts every key (StrictHostKeyChecking no) must not make the run trust a changed one.
  hostKeyChangedRow(true),
  {
    name: 'ssh: unknown host on first contact',
    soak: 'any',
    arrange: somethingNew,
    acceptable: [1],
    async fault(ctx) {
      const { tb, pair } = ctx;
      const file = knownHosts(pair.localHost);
      const original = readFileSync(file, 'utf8');
      ctx.notes.set('known_hosts', original);
      writeFileSync(
        file,
        original
          .split('\n')
          .filter((line) => !line.startsWith(`${pair.remoteHost},`))
          .join('\n'),
      );
      const before = [await poolState(tb, pair.localHost), await poolState(tb, pair.remoteHost)];
      const outcome = await ctx.start().done;
      if (!/ssh-keyscan|known_hosts/.test(outcome.stderr))
        ctx.violations.push(
          `message: does not say how to trust the host (ssh-keyscan, known_hosts): ${outcome.stderr.trim().slice(-400)}`,
        );
      await expectUnchanged(ctx, before);
      return [outcome];
    },
    async recover(ctx) {
      const original = ctx.notes.get('known_hosts');
      if (original !== undefined) writeFileSync(knownHosts(ctx.pair.localHost), original);
    },
  },
];
