import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { readRecord } from '../../src/observe/state-dir.js';
import { CLI, type CommandOutcome, Testbed } from '../testbed/testbed.js';
import { assertExit, pull, pulledReplica, rx, sleep } from './helpers.js';

const LOCKED = 3;
const INTERRUPTED = 5;

describe('locking and signals on real zfs-fuse hosts', () => {
  let tb: Testbed;
  before(async () => {
    tb = await Testbed.up(['alpha', 'beta']);
  });
  after(async () => {
    await tb?.down();
  });

  /** One test's datasets: alpha's `src` and beta's replica `dst` of it. */
  interface Pair {
    src: string;
    dst: string;
  }

  /** Test `id`'s datasets under tank/`id`/, with @base pulled and held on both sides. */
  async function replicaWithBase(id: string): Promise<Pair> {
    const pair = { src: `tank/${id}/src`, dst: `tank/${id}/dst` };
    await pulledReplica(tb, pair.src, pair.dst, ['base']);
    return pair;
  }

  /** A new 40 MB snapshot behind a 40 mbit link: a transfer that takes several seconds. */
  async function slowTransferAhead({ src }: Pair, name: string): Promise<void> {
    await tb.writeAndSnapshot('alpha', src, name, 40);
    await tb.rate('alpha', '40mbit');
  }

  /** pid of the run holding the lock on beta's `dst`, from the lock file. */
  async function lockHolderPid({ dst }: Pair): Promise<number> {
    for (let tries = 0; tries < 50; tries++) {
      const outcome = await tb.on('beta', ['cat', `/run/lock/zfs_replicate/${encodeURIComponent(dst)}.lock`]);
      if (outcome.exitCode === 0 && outcome.stdout.includes('pid'))
        return (JSON.parse(outcome.stdout) as { pid: number }).pid;
      await sleep(100);
    }
    throw new Error('no lock file');
  }

  async function waitForTransfer({ dst }: Pair): Promise<void> {
    for (let tries = 0; tries < 100; tries++) {
      if ((await tb.on('beta', ['pgrep', '-f', `zfs rec[v] .*${dst}$`])).exitCode === 0) return;
      await sleep(100);
    }
    throw new Error('the transfer never started');
  }

  /** A run into test `id`'s new replica, sent SIG`signal` while it receives a slow new snapshot @`name`. */
  async function interruptedRun(
    id: string,
    name: string,
    signal: 'TERM' | 'HUP' | 'KILL',
  ): Promise<{ pair: Pair; run: CommandOutcome }> {
    const pair = await replicaWithBase(id);
    await slowTransferAhead(pair, name);
    try {
      const running = pull(tb, 'beta', 'alpha', pair.src, pair.dst, 'beta');
      await waitForTransfer(pair);
      await tb.on('beta', ['kill', `-${signal}`, String(await lockHolderPid(pair))]);
      return { pair, run: await running };
    } finally {
      await tb.rate('alpha', 'off');
    }
  }

  async function assertBaseHeldOnBothSides({ src, dst }: Pair, name: string): Promise<void> {
    assert.ok(await tb.hasHold('alpha', `${src}@${name}`, 'beta'), `alpha @${name} held`);
    assert.ok(await tb.hasHold('beta', `${dst}@${name}`, 'beta'), `beta @${name} held`);
  }

  async function assertHoldsOnlyOn({ src, dst }: Pair, name: string): Promise<void> {
    for (const [host, dataset] of [
      ['alpha', src],
      ['beta', dst],
    ] as const) {
      for (const snapshot of (await tb.snapshots(host, dataset)).keys()) {
        assert.equal(
          await tb.hasHold(host, `${dataset}@${snapshot}`, 'beta'),
          snapshot === name,
          `${host} @${snapshot}`,
        );
      }
    }
  }

  test(
    'two concurrent runs into one dataset: exactly one transfers, the other exits "locked" quietly',
    { timeout: 180_000 },
    async () => {
      const pair = await replicaWithBase('concurrent');
      const { src, dst } = pair;
      await slowTransferAhead(pair, 'c1');
      try {
        const first = pull(tb, 'beta', 'alpha', src, dst, 'beta', ['-vv']);
        await waitForTransfer(pair);
        const second = await pull(tb, 'beta', 'alpha', src, dst, 'beta', ['-vv']);
        assertExit(second, LOCKED);
        assert.doesNotMatch(second.stderr, /zfs send/);
        const quiet = await pull(tb, 'beta', 'alpha', src, dst, 'beta');
        assertExit(quiet, LOCKED);
        assert.equal(quiet.stderr + quiet.stdout, '', 'quiet under cron while the holder is young');
        const overdue = await pull(tb, 'beta', 'alpha', src, dst, 'beta', ['--lock-warn', '0s']);
        assertExit(overdue, LOCKED);
        assert.match(
          overdue.stderr,
          rx`^zfs_replicate\[${dst}\]: warning: another run \(pid \d+\) has been replicating into ${dst} for \d+ seconds?; skipping this run$`,
        );
        const parallel = await pull(tb, 'beta', 'alpha', src, 'tank/concurrent/other-dst', 'other');
        assertExit(parallel, 0, 'a different local dataset is not blocked');
        const done = await first;
        assertExit(done, 0);
        assert.equal(done.stderr.split('\n').filter((line) => line.includes('pipeline:')).length, 1);
      } finally {
        await tb.rate('alpha', 'off');
      }
      await assertHoldsOnlyOn(pair, 'c1');
    },
  );

  test(
    'SIGTERM mid-transfer: exit 5, the base stays held on both sides, the lock is released',
    { timeout: 180_000 },
    async () => {
      const { pair, run } = await interruptedRun('sigterm', 't1', 'TERM');
      const { src, dst } = pair;
      assertExit(run, INTERRUPTED);
      assert.match(
        run.stderr,
        /received SIGTERM: stopping the run; a common snapshot, once there is one, stays held on both sides/,
      );
      await assertBaseHeldOnBothSides(pair, 'base');
      assert.ok(!(await tb.snapshots('beta', dst)).has('t1'));
      const next = await pull(tb, 'beta', 'alpha', src, dst, 'beta');
      assertExit(next, 0, 'the next run is not locked out');
      assert.ok((await tb.snapshots('beta', dst)).has('t1'));
      await assertHoldsOnlyOn(pair, 't1');
    },
  );

  test(
    'SIGHUP mid-transfer (a closed terminal) stops the run like SIGTERM: exit 5, record written, no process left',
    { timeout: 180_000 },
    async () => {
      const { pair, run } = await interruptedRun('sighup', 'h1', 'HUP');
      assertExit(run, INTERRUPTED);
      assert.match(run.stderr, /received SIGHUP: stopping the run/);
      await assertBaseHeldOnBothSides(pair, 'base');
      const record = readRecord(Testbed.stateDir('beta'), 'dataset', pair.dst);
      assert.equal(record?.lastRun.exitCode, INTERRUPTED, 'the run wrote its record');
      const left = await tb.on('beta', ['pgrep', '-f', `zfs rec[v] .*${pair.dst}$`]);
      assert.equal(left.exitCode, 1, `no receive left: ${left.stdout}`);
      assertExit(await pull(tb, 'beta', 'alpha', pair.src, pair.dst, 'beta'), 0, 'the next run completes');
      await assertHoldsOnlyOn(pair, 'h1');
    },
  );

  test(
    'SIGTERM while the ssh handshake stalls: exit 5 at once, not after the handshake gives up',
    { timeout: 120_000 },
    async () => {
      // An ssh that never gets through, like a source whose sshd accepts and then stalls; `-O exit` finds no master.
      await tb.sh(
        'beta',
        `mkdir -p /tmp/zr-stall && cat >/tmp/zr-stall/ssh <<'SCRIPT'
#!/bin/sh
case "$*" in *"-O "*) exit 255;; esac
exec sleep 59.5
SCRIPT
chmod +x /tmp/zr-stall/ssh`,
      );
      const pair = { src: 'tank/stall/src', dst: 'tank/stall/dst' };
      const running = tb.on(
        'beta',
        [
          'env',
          'PATH=/tmp/zr-stall:/usr/bin:/bin',
          'node',
          CLI,
          '-h',
          'alpha',
          '-r',
          pair.src,
          '-l',
          pair.dst,
          '-t',
          'beta',
          '-k',
          '30',
        ],
        { env: Testbed.cronEnvironment('beta') },
      );
      const pid = await lockHolderPid(pair);
      await sleep(1500); // past the bin's own handlers: main() has taken over the signals
      const signalledAt = Date.now();
      await tb.on('beta', ['kill', '-TERM', String(pid)]);
      const run = await running;
      assertExit(run, INTERRUPTED);
      assert.match(run.stderr, /interrupted: cannot connect to alpha over ssh: ssh was stopped by SIGTERM/);
      assert.ok(Date.now() - signalledAt < 10_000, `exited ${Date.now() - signalledAt} ms after the signal`);
      assert.notEqual((await tb.on('beta', ['pgrep', '-f', 'slee[p] 59.5'])).exitCode, 0, 'the stalled ssh is gone');
    },
  );

  test(
    'SIGKILL mid-transfer: the next run completes; nothing lost, no leaked hold, no stuck lock',
    { timeout: 180_000 },
    async () => {
      const { pair, run } = await interruptedRun('sigkill', 'k1', 'KILL');
      const { src, dst } = pair;
      assert.equal(run.exitCode, 137);
      // The killed run's transfer processes may still be finishing: they keep the lock until they exit.
      let next: CommandOutcome | undefined;
      for (let tries = 0; tries < 60; tries++) {
        next = await pull(tb, 'beta', 'alpha', src, dst, 'beta', ['-v']);
        if (next.exitCode !== LOCKED) break;
        assert.match(next.stderr, /has died, but its transfer processes are still running|another run/);
        await sleep(500);
      }
      assertExit(next!, 0, 'next run after SIGKILL');
      const source = await tb.snapshots('alpha', src);
      const replica = await tb.snapshots('beta', dst);
      for (const [name, { guid }] of source) assert.equal(replica.get(name)?.guid, guid, `@${name}`);
      await assertHoldsOnlyOn(pair, 'k1');
      assertExit(await pull(tb, 'beta', 'alpha', src, dst, 'beta'), 0, 'no stuck lock');
    },
  );
});
