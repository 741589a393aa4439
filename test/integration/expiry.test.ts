import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Testbed } from '../testbed/testbed.js';
import { assertExit, pull, pulledReplica, rx, sleep, snapshotSeries } from './helpers.js';

describe('expiry with --keep on real zfs-fuse hosts', () => {
  let tb: Testbed;
  const keep = ['--keep', '3s'];
  before(async () => {
    tb = await Testbed.up(['alpha', 'beta']);
  });
  after(async () => {
    await tb?.down();
  });

  const localNames = async (dst: string) => [...(await tb.snapshots('beta', dst)).keys()];

  /** beta's replica of `src` with @e1..@e3, all older than keep, and a new @e4 on alpha that it has not pulled. */
  async function agedReplicaOneBehind(src: string, dst: string): Promise<void> {
    await pulledReplica(tb, src, dst, ['e1', 'e2', 'e3']);
    await sleep(4000);
    await snapshotSeries(tb, 'alpha', src, ['e4']);
  }

  test(
    '--dry-run lists what would expire and why each survivor survives; nothing is destroyed',
    { timeout: 120_000 },
    async () => {
      const [src, dst] = ['tank/dry/src', 'tank/dry/dst'];
      await agedReplicaOneBehind(src, dst);
      const run = await pull(tb, 'beta', 'alpha', src, dst, 'beta', [...keep, '--dry-run']);
      assertExit(run, 0);
      assert.match(run.stdout, /would expire @e1: \d+ seconds old, older than 3s/);
      assert.match(run.stdout, /would expire @e3: /, 'the old base expires once @e4 is the new base');
      assert.match(run.stdout, /keeps @e4: the newest common snapshot/);
      assert.deepEqual(await localNames(dst), ['e1', 'e2', 'e3']);
    },
  );

  test(
    'old snapshots go, a snapshot held by another tag survives (info, not an error), holds end up only on the base',
    { timeout: 120_000 },
    async () => {
      const [src, dst] = ['tank/expire/src', 'tank/expire/dst'];
      await agedReplicaOneBehind(src, dst);
      await tb.zfs('beta', 'hold', 'other-tool', `${dst}@e2`);
      await tb.zfs('alpha', 'hold', 'beta', `${src}@e1`); // a hold the ancestor script left behind
      const run = await pull(tb, 'beta', 'alpha', src, dst, 'beta', [...keep, '-v']);
      assertExit(run, 0);
      assert.match(run.stderr, rx`info: expired ${dst}@e1`);
      assert.match(run.stderr, rx`info: kept ${dst}@e2 past keep: another hold protects it`);
      assert.doesNotMatch(run.stderr, /error|warning/);
      assert.deepEqual(await localNames(dst), ['e2', 'e4']);
      for (const name of ['e1', 'e2', 'e3'])
        assert.ok(!(await tb.hasHold('alpha', `${src}@${name}`, 'beta')), `alpha @${name} still held`);
      assert.ok(await tb.hasHold('alpha', `${src}@e4`, 'beta'));
      assert.ok(await tb.hasHold('beta', `${dst}@e4`, 'beta'));
    },
  );

  test(
    'a clone of an old snapshot (a restore) keeps that snapshot with an info line; the others still expire',
    { timeout: 120_000 },
    async () => {
      const [src, dst] = ['tank/cloned/src', 'tank/cloned/dst'];
      await agedReplicaOneBehind(src, dst);
      await tb.zfs('beta', 'clone', `${dst}@e2`, 'tank/cloned/restore');
      const dry = await pull(tb, 'beta', 'alpha', src, dst, 'beta', [...keep, '--dry-run']);
      assertExit(dry, 0);
      assert.match(dry.stdout, /would keep @e2 past keep \(\d+ seconds old\): tank\/cloned\/restore depends on it/);
      assert.match(dry.stdout, /would expire @e1: /);
      for (const round of [1, 2]) {
        const run = await pull(tb, 'beta', 'alpha', src, dst, 'beta', [...keep, '-v']);
        assertExit(run, 0);
        assert.match(run.stderr, rx`info: kept ${dst}@e2 past keep: tank/cloned/restore depends on it`);
        assert.doesNotMatch(run.stderr, /error|warning/, `round ${round}`);
        assert.deepEqual(await localNames(dst), ['e2', 'e4'], `round ${round}: @e1 and @e3 expired around @e2`);
      }
      assert.ok(await tb.hasHold('beta', `${dst}@e4`, 'beta'));
    },
  );

  test(
    'expiry runs on a run with nothing new, and the base stays although older than keep',
    { timeout: 120_000 },
    async () => {
      const [src, dst] = ['tank/nothing-new/src', 'tank/nothing-new/dst'];
      await pulledReplica(tb, src, dst, ['e2', 'e4']);
      await sleep(4000);
      const run = await pull(tb, 'beta', 'alpha', src, dst, 'beta', keep);
      assertExit(run, 0);
      assert.equal(run.stderr, '');
      assert.deepEqual(await localNames(dst), ['e4'], '@e4 is older than keep but is the base');
    },
  );

  test('remote unreachable during expiry: nothing is destroyed locally', { timeout: 120_000 }, async () => {
    const [src, dst] = ['tank/unreachable/src', 'tank/unreachable/dst'];
    await pulledReplica(tb, src, dst, ['e4']);
    await snapshotSeries(tb, 'alpha', src, ['e5']);
    assertExit(await pull(tb, 'beta', 'alpha', src, dst, 'beta'), 0);
    await tb.zfs('alpha', 'hold', 'beta', `${src}@e4`); // a twin that needs its hold released first
    await sleep(4000);
    // A big new snapshot behind a slow link, so the transfer is under way when the link goes down.
    await tb.writeAndSnapshot('alpha', src, 'e6', 60);
    await tb.rate('alpha', '20mbit');
    try {
      const running = pull(tb, 'beta', 'alpha', src, dst, 'beta', [
        ...keep,
        '--ssh-option',
        'ServerAliveCountMax=2',
        '--ssh-option',
        'ConnectTimeout=2',
      ]);
      await sleep(2000);
      await tb.link('alpha', 'down');
      const run = await running;
      assertExit(run, 1);
      assert.match(run.stderr, /transfer failed: ssh connection to alpha lost/);
      assert.match(
        run.stderr,
        rx`expiry skipped, nothing destroyed: alpha:${src} could not be listed after the failure`,
      );
      assert.deepEqual(await localNames(dst), ['e4', 'e5']);
    } finally {
      await tb.link('alpha', 'up');
      await tb.rate('alpha', 'off');
    }
    const recovered = await pull(tb, 'beta', 'alpha', src, dst, 'beta', keep);
    assertExit(recovered, 0);
    assert.deepEqual(await localNames(dst), ['e6']);
    assert.ok(!(await tb.hasHold('alpha', `${src}@e4`, 'beta')));
  });
});
