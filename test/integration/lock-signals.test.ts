import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type CommandOutcome, Testbed } from '../testbed/testbed.js';
import { assertExit, pull, sleep } from './helpers.js';

const LOCKED = 3;
const INTERRUPTED = 5;

describe('locking and signals on real zfs-fuse hosts', () => {
  let tb: Testbed;
  before(async () => {
    tb = await Testbed.up(['alpha', 'beta']);
    await tb.zfs('alpha', 'create', 'tank/src');
    await tb.writeAndSnapshot('alpha', 'tank/src', 'base');
    assertExit(await pull(tb, 'beta', 'alpha', 'tank/src', 'tank/dst', 'beta'), 0, 'initial');
  });
  after(async () => {
    await tb?.down();
  });

  /** A new 40 MB snapshot behind a 40 mbit link: a transfer that takes several seconds. */
  async function slowTransferAhead(name: string): Promise<void> {
    await tb.writeAndSnapshot('alpha', 'tank/src', name, 40);
    await tb.rate('alpha', '40mbit');
  }

  /** pid of the run holding the lock on beta's tank/dst, from the lock file. */
  async function lockHolderPid(): Promise<number> {
    for (let tries = 0; tries < 50; tries++) {
      const outcome = await tb.on('beta', ['cat', '/run/lock/zfs_replicate/tank%2Fdst.lock']);
      if (outcome.exitCode === 0 && outcome.stdout.includes('pid'))
        return (JSON.parse(outcome.stdout) as { pid: number }).pid;
      await sleep(100);
    }
    throw new Error('no lock file');
  }

  async function waitForTransfer(): Promise<void> {
    for (let tries = 0; tries < 100; tries++) {
      if ((await tb.on('beta', ['pgrep', '-f', 'zfs rec[v] .*tank/dst$'])).exitCode === 0) return;
      await sleep(100);
    }
    throw new Error('the transfer never started');
  }

  async function assertBaseHeldOnBothSides(name: string): Promise<void> {
    assert.ok(await tb.hasHold('alpha', `tank/src@${name}`, 'beta'), `alpha @${name} held`);
    assert.ok(await tb.hasHold('beta', `tank/dst@${name}`, 'beta'), `beta @${name} held`);
  }

  async function assertHoldsOnlyOn(name: string): Promise<void> {
    for (const [host, dataset] of [
      ['alpha', 'tank/src'],
      ['beta', 'tank/dst'],
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

  test('two concurrent runs into one dataset: exactly one transfers, the other exits "locked" quietly', async () => {
    await slowTransferAhead('c1');
    try {
      const first = pull(tb, 'beta', 'alpha', 'tank/src', 'tank/dst', 'beta', ['-vv']);
      await waitForTransfer();
      const second = await pull(tb, 'beta', 'alpha', 'tank/src', 'tank/dst', 'beta', ['-vv']);
      assertExit(second, LOCKED);
      assert.doesNotMatch(second.stderr, /zfs send/);
      const quiet = await pull(tb, 'beta', 'alpha', 'tank/src', 'tank/dst', 'beta');
      assertExit(quiet, LOCKED);
      assert.equal(quiet.stderr + quiet.stdout, '', 'quiet under cron while the holder is young');
      const overdue = await pull(tb, 'beta', 'alpha', 'tank/src', 'tank/dst', 'beta', ['--lock-warn', '0s']);
      assertExit(overdue, LOCKED);
      assert.match(
        overdue.stderr,
        /^zfs_replicate\[tank\/dst\]: warning: another run \(pid \d+\) has been replicating into tank\/dst for \d+ seconds?; skipping this run$/,
      );
      const parallel = await pull(tb, 'beta', 'alpha', 'tank/src', 'tank/other-dst', 'other');
      assertExit(parallel, 0, 'a different local dataset is not blocked');
      const done = await first;
      assertExit(done, 0);
      assert.equal(done.stderr.split('\n').filter((line) => line.includes('pipeline:')).length, 1);
    } finally {
      await tb.rate('alpha', 'off');
    }
    await assertHoldsOnlyOn('c1');
  });

  test('SIGTERM mid-transfer: exit 5, the base stays held on both sides, the lock is released', async () => {
    await slowTransferAhead('t1');
    let run: CommandOutcome;
    try {
      const running = pull(tb, 'beta', 'alpha', 'tank/src', 'tank/dst', 'beta');
      await waitForTransfer();
      const pid = await lockHolderPid();
      await tb.on('beta', ['kill', '-TERM', String(pid)]);
      run = await running;
    } finally {
      await tb.rate('alpha', 'off');
    }
    assertExit(run, INTERRUPTED);
    assert.match(run.stderr, /received SIGTERM: stopping the transfer; the common snapshot stays held on both sides/);
    await assertBaseHeldOnBothSides('c1');
    assert.ok(!(await tb.snapshots('beta', 'tank/dst')).has('t1'));
    const next = await pull(tb, 'beta', 'alpha', 'tank/src', 'tank/dst', 'beta');
    assertExit(next, 0, 'the next run is not locked out');
    assert.ok((await tb.snapshots('beta', 'tank/dst')).has('t1'));
    await assertHoldsOnlyOn('t1');
  });

  test('SIGKILL mid-transfer: the next run completes; nothing lost, no leaked hold, no stuck lock', async () => {
    await slowTransferAhead('k1');
    try {
      const running = pull(tb, 'beta', 'alpha', 'tank/src', 'tank/dst', 'beta');
      await waitForTransfer();
      await tb.on('beta', ['kill', '-KILL', String(await lockHolderPid())]);
      assert.equal((await running).exitCode, 137);
    } finally {
      await tb.rate('alpha', 'off');
    }
    // The killed run's transfer processes may still be finishing: they keep the lock until they exit.
    let next: CommandOutcome | undefined;
    for (let tries = 0; tries < 60; tries++) {
      next = await pull(tb, 'beta', 'alpha', 'tank/src', 'tank/dst', 'beta', ['-v']);
      if (next.exitCode !== LOCKED) break;
      assert.match(next.stderr, /has died, but its transfer processes are still running|another run/);
      await sleep(500);
    }
    assertExit(next!, 0, 'next run after SIGKILL');
    const source = await tb.snapshots('alpha', 'tank/src');
    const replica = await tb.snapshots('beta', 'tank/dst');
    for (const [name, { guid }] of source) assert.equal(replica.get(name)?.guid, guid, `@${name}`);
    await assertHoldsOnlyOn('k1');
    assertExit(await pull(tb, 'beta', 'alpha', 'tank/src', 'tank/dst', 'beta'), 0, 'no stuck lock');
  });
});
