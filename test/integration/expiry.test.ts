import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Testbed } from '../testbed/testbed.js';
import { assertExit, pull, sleep, snapshotSeries } from './helpers.js';

describe('expiry with --keep on real zfs-fuse hosts', () => {
  let tb: Testbed;
  const keep = ['--keep', '3s'];
  before(async () => {
    tb = await Testbed.up(['alpha', 'beta']);
    await tb.zfs('alpha', 'create', 'tank/src');
    await snapshotSeries(tb, 'alpha', 'tank/src', ['e1', 'e2', 'e3']);
    assertExit(await pull(tb, 'beta', 'alpha', 'tank/src', 'tank/dst', 'beta'), 0, 'initial');
  });
  after(async () => {
    await tb?.down();
  });

  const localNames = async () => [...(await tb.snapshots('beta', 'tank/dst')).keys()];

  test('--dry-run lists what would expire and why each survivor survives; nothing is destroyed', async () => {
    await sleep(4000);
    await snapshotSeries(tb, 'alpha', 'tank/src', ['e4']);
    const run = await pull(tb, 'beta', 'alpha', 'tank/src', 'tank/dst', 'beta', [...keep, '--dry-run']);
    assertExit(run, 0);
    assert.match(run.stdout, /would expire @e1: \d+ seconds old, older than 3s/);
    assert.match(run.stdout, /would expire @e3: /, 'the old base expires once @e4 is the new base');
    assert.match(run.stdout, /keeps @e4: the newest common snapshot/);
    assert.deepEqual(await localNames(), ['e1', 'e2', 'e3']);
  });

  test('old snapshots go, a snapshot held by another tag survives (info, not an error), holds end up only on the base', async () => {
    await tb.zfs('beta', 'hold', 'other-tool', 'tank/dst@e2');
    await tb.zfs('alpha', 'hold', 'beta', 'tank/src@e1'); // a hold the ancestor script left behind
    const run = await pull(tb, 'beta', 'alpha', 'tank/src', 'tank/dst', 'beta', [...keep, '-v']);
    assertExit(run, 0);
    assert.match(run.stderr, /info: expired tank\/dst@e1/);
    assert.match(run.stderr, /info: kept tank\/dst@e2 past keep: another hold protects it/);
    assert.doesNotMatch(run.stderr, /error|warning/);
    assert.deepEqual(await localNames(), ['e2', 'e4']);
    for (const name of ['e1', 'e2', 'e3'])
      assert.ok(!(await tb.hasHold('alpha', `tank/src@${name}`, 'beta')), `alpha @${name} still held`);
    assert.ok(await tb.hasHold('alpha', 'tank/src@e4', 'beta'));
    assert.ok(await tb.hasHold('beta', 'tank/dst@e4', 'beta'));
  });

  test('expiry runs on a run with nothing new, and the base stays although older than keep', async () => {
    await sleep(4000);
    await tb.zfs('beta', 'release', 'other-tool', 'tank/dst@e2');
    const run = await pull(tb, 'beta', 'alpha', 'tank/src', 'tank/dst', 'beta', keep);
    assertExit(run, 0);
    assert.equal(run.stderr, '');
    assert.deepEqual(await localNames(), ['e4'], '@e4 is older than keep but is the base');
  });

  test('remote unreachable during expiry: nothing is destroyed locally', async () => {
    await snapshotSeries(tb, 'alpha', 'tank/src', ['e5']);
    assertExit(await pull(tb, 'beta', 'alpha', 'tank/src', 'tank/dst', 'beta'), 0);
    await tb.zfs('alpha', 'hold', 'beta', 'tank/src@e4'); // a twin that needs its hold released first
    await sleep(4000);
    // A big new snapshot behind a slow link, so the transfer is under way when the link goes down.
    await tb.writeAndSnapshot('alpha', 'tank/src', 'e6', 60);
    await tb.rate('alpha', '20mbit');
    try {
      const running = pull(tb, 'beta', 'alpha', 'tank/src', 'tank/dst', 'beta', [
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
      assert.match(run.stderr, /transfer failed: send on alpha/);
      assert.match(run.stderr, /expiry skipped, nothing destroyed: could not release hold "beta" on alpha:tank\/src/);
      assert.deepEqual(await localNames(), ['e4', 'e5']);
    } finally {
      await tb.link('alpha', 'up');
      await tb.rate('alpha', 'off');
    }
    const recovered = await pull(tb, 'beta', 'alpha', 'tank/src', 'tank/dst', 'beta', keep);
    assertExit(recovered, 0);
    assert.deepEqual(await localNames(), ['e6']);
    assert.ok(!(await tb.hasHold('alpha', 'tank/src@e4', 'beta')));
  });
});
