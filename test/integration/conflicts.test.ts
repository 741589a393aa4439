import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Testbed } from '../testbed/testbed.js';
import { assertExit, poolSnapshot, pull, snapshotSeries } from './helpers.js';

const CONFLICT = 4;

describe('conflicts: exit 4, one line naming the way out, nothing changed', () => {
  let tb: Testbed;
  before(async () => {
    tb = await Testbed.up(['alpha', 'beta']);
    await tb.zfs('alpha', 'create', 'tank/src');
    await snapshotSeries(tb, 'alpha', 'tank/src', ['s1', 's2']);
    assertExit(await pull(tb, 'beta', 'alpha', 'tank/src', 'tank/replica', 'beta'), 0, 'setup');
  });
  after(async () => {
    await tb?.down();
  });

  /** Runs a pull that must end in a conflict and leave both pools exactly as they were. */
  async function expectConflict(remote: string, local: string, message: RegExp, extra: string[] = []): Promise<void> {
    const before = [await poolSnapshot(tb, 'alpha'), await poolSnapshot(tb, 'beta')];
    const run = await pull(tb, 'beta', 'alpha', remote, local, 'beta', extra);
    assertExit(run, CONFLICT);
    assert.match(run.stderr, message);
    assert.equal(run.stderr.trim().split('\n').length, 1, `one line: ${run.stderr}`);
    assert.deepEqual([await poolSnapshot(tb, 'alpha'), await poolSnapshot(tb, 'beta')], before, 'nothing may change');
  }

  async function makeWritable(dataset: string): Promise<string> {
    await tb.zfs('beta', 'set', 'readonly=off', dataset);
    if ((await tb.zfs('beta', 'get', '-H', '-o', 'value', 'mounted', dataset)).trim() !== 'yes')
      await tb.zfs('beta', 'mount', dataset);
    return tb.mountpoint('beta', dataset);
  }

  test('remote dataset missing', async () => {
    await expectConflict(
      'tank/nope',
      'tank/replica2',
      /remote dataset alpha:tank\/nope does not exist: check -h and -r/,
    );
  });

  test('remote dataset without snapshots', async () => {
    await tb.zfs('alpha', 'create', 'tank/empty');
    await expectConflict('tank/empty', 'tank/replica-empty', /alpha:tank\/empty has no snapshots/);
  });

  test('local dataset exists but is not a replica (no snapshots): never a full receive over it', async () => {
    await tb.zfs('beta', 'create', 'tank/plain');
    await expectConflict(
      'tank/src',
      'tank/plain',
      /tank\/plain exists but has no snapshots, so it is not a replica of alpha:tank\/src/,
    );
  });

  test('no common snapshot (by guid), even where snapshot names match', async () => {
    await tb.zfs('beta', 'create', 'tank/other');
    await tb.writeAndSnapshot('beta', 'tank/other', 's1');
    await tb.writeAndSnapshot('beta', 'tank/other', 's2');
    await expectConflict('tank/src', 'tank/other', /tank\/other shares no snapshot \(by guid\) with alpha:tank\/src/);
  });

  test('diverged: a local snapshot the remote never had is named; --rollback destroys it and continues', async () => {
    await tb.writeAndSnapshot('alpha', 'tank/src', 's3');
    const mountpoint = await makeWritable('tank/replica');
    await tb.sh('beta', `echo local > '${mountpoint}/local-file'`);
    await tb.zfs('beta', 'snapshot', 'tank/replica@local-only');
    await expectConflict(
      'tank/src',
      'tank/replica',
      /has diverged from alpha:tank\/src: @local-only is newer than the common snapshot @s2 .*--rollback/,
    );

    const run = await pull(tb, 'beta', 'alpha', 'tank/src', 'tank/replica', 'beta', ['--rollback']);
    assertExit(run, 0);
    assert.match(run.stderr, /rolled tank\/replica back to @s2, destroying @local-only \(--rollback\)/);
    assert.deepEqual([...(await tb.snapshots('beta', 'tank/replica')).keys()], ['s1', 's2', 's3']);
    // zfs-fuse shows readonly as "off temporary" while mounted, so test what matters: writes are refused.
    const write = await tb.on('beta', ['touch', `${await tb.mountpoint('beta', 'tank/replica')}/after-rollback`]);
    assert.notEqual(write.exitCode, 0, 'the replica is writable again after --rollback');
    assert.match(write.stderr, /Read-only file system/);
  });

  test('--rollback refuses to destroy a local-only snapshot that carries a hold', async () => {
    await makeWritable('tank/replica');
    await tb.zfs('beta', 'snapshot', 'tank/replica@held-local');
    await tb.zfs('beta', 'hold', 'downstream', 'tank/replica@held-local');
    await expectConflict(
      'tank/src',
      'tank/replica',
      /cannot roll back tank\/replica to @s3: @held-local carries a hold/,
      ['--rollback'],
    );
    await tb.zfs('beta', 'release', 'downstream', 'tank/replica@held-local');
    await tb.zfs('beta', 'destroy', 'tank/replica@held-local');
  });

  test('modified replica: the refused incremental is a conflict; --rollback discards the change and continues', async () => {
    const mountpoint = await makeWritable('tank/replica');
    await tb.sh('beta', `echo drift > '${mountpoint}/drift'`);
    await tb.writeAndSnapshot('alpha', 'tank/src', 's4');
    await expectConflict(
      'tank/src',
      'tank/replica',
      /tank\/replica was modified since its newest snapshot.*re-run with --rollback/,
    );

    assertExit(await pull(tb, 'beta', 'alpha', 'tank/src', 'tank/replica', 'beta', ['--rollback']), 0);
    assert.deepEqual([...(await tb.snapshots('beta', 'tank/replica')).keys()], ['s1', 's2', 's3', 's4']);
    assert.equal(await tb.contentDigest('beta', 'tank/replica'), await tb.contentDigest('alpha', 'tank/src'));
  });
});
