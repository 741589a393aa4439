import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Testbed } from '../testbed/testbed.js';
import { assertExit, poolSnapshot, pull, pulledReplica, rx, sourceWithSnapshots } from './helpers.js';

const CONFLICT = 4;

describe('conflicts: exit 4, one line naming the way out, nothing changed', () => {
  let tb: Testbed;
  before(async () => {
    tb = await Testbed.up(['alpha', 'beta']);
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

  test('remote dataset missing', { timeout: 120_000 }, async () => {
    await expectConflict(
      'tank/nope',
      'tank/replica2',
      /remote dataset alpha:tank\/nope does not exist: check -h and -r/,
    );
  });

  test('remote dataset without snapshots', { timeout: 120_000 }, async () => {
    await tb.zfs('alpha', 'create', 'tank/empty');
    await expectConflict('tank/empty', 'tank/replica-empty', /alpha:tank\/empty has no snapshots/);
  });

  test(
    'local dataset exists but is not a replica (no snapshots): never a full receive over it',
    { timeout: 120_000 },
    async () => {
      const [src, dst] = ['tank/plain/src', 'tank/plain/dst'];
      await sourceWithSnapshots(tb, 'alpha', src, ['s1', 's2']);
      await tb.zfs('beta', 'create', '-p', dst);
      await expectConflict(src, dst, rx`${dst} exists but has no snapshots, so it is not a replica of alpha:${src}`);
    },
  );

  test('no common snapshot (by guid), even where snapshot names match', { timeout: 120_000 }, async () => {
    const [src, dst] = ['tank/unrelated/src', 'tank/unrelated/other'];
    await sourceWithSnapshots(tb, 'alpha', src, ['s1', 's2']);
    await sourceWithSnapshots(tb, 'beta', dst, ['s1', 's2']);
    await expectConflict(src, dst, rx`${dst} shares no snapshot \(by guid\) with alpha:${src}`);
  });

  test(
    'diverged: a local snapshot the remote never had is named; --rollback destroys it and continues',
    { timeout: 120_000 },
    async () => {
      const [src, dst] = ['tank/diverged/src', 'tank/diverged/replica'];
      await pulledReplica(tb, src, dst, ['s1', 's2']);
      await tb.writeAndSnapshot('alpha', src, 's3');
      const mountpoint = await makeWritable(dst);
      await tb.sh('beta', `echo local > '${mountpoint}/local-file'`);
      await tb.zfs('beta', 'snapshot', `${dst}@local-only`);
      await expectConflict(
        src,
        dst,
        rx`has diverged from alpha:${src}: @local-only is newer than the common snapshot @s2 .*--rollback`,
      );

      const run = await pull(tb, 'beta', 'alpha', src, dst, 'beta', ['--rollback']);
      assertExit(run, 0);
      assert.match(run.stderr, rx`rolled ${dst} back to @s2, destroying @local-only \(--rollback\)`);
      assert.deepEqual([...(await tb.snapshots('beta', dst)).keys()], ['s1', 's2', 's3']);
      // zfs-fuse shows readonly as "off temporary" while mounted, so test what matters: writes are refused.
      const write = await tb.on('beta', ['touch', `${await tb.mountpoint('beta', dst)}/after-rollback`]);
      assert.notEqual(write.exitCode, 0, 'the replica is writable again after --rollback');
      assert.match(write.stderr, /Read-only file system/);
    },
  );

  test('--rollback refuses to destroy a local-only snapshot that carries a hold', { timeout: 120_000 }, async () => {
    const [src, dst] = ['tank/held-local/src', 'tank/held-local/replica'];
    await pulledReplica(tb, src, dst, ['s1', 's2', 's3']);
    await makeWritable(dst);
    await tb.zfs('beta', 'snapshot', `${dst}@held-local`);
    await tb.zfs('beta', 'hold', 'downstream', `${dst}@held-local`);
    await expectConflict(src, dst, rx`cannot roll back ${dst} to @s3: @held-local carries a hold`, ['--rollback']);
    await tb.zfs('beta', 'release', 'downstream', `${dst}@held-local`);
    await tb.zfs('beta', 'destroy', `${dst}@held-local`);
  });

  test(
    '--rollback refuses to destroy a local-only snapshot a clone depends on, dry or not',
    { timeout: 120_000 },
    async () => {
      const [src, dst] = ['tank/cloned-local/src', 'tank/cloned-local/replica'];
      await pulledReplica(tb, src, dst, ['s1', 's2']);
      await makeWritable(dst);
      await tb.zfs('beta', 'snapshot', `${dst}@restored`);
      await tb.zfs('beta', 'clone', `${dst}@restored`, 'tank/cloned-local/restore');
      const refusal = rx`cannot roll back ${dst} to @s2: tank/cloned-local/restore depends on @restored, which the rollback would destroy`;
      for (const extra of [['--rollback', '--dry-run'], ['--rollback']]) await expectConflict(src, dst, refusal, extra);
    },
  );

  test(
    'modified replica: the refused incremental is a conflict; --rollback discards the change and continues',
    { timeout: 120_000 },
    async () => {
      const [src, dst] = ['tank/modified/src', 'tank/modified/replica'];
      await pulledReplica(tb, src, dst, ['s1', 's2', 's3']);
      const mountpoint = await makeWritable(dst);
      await tb.sh('beta', `echo drift > '${mountpoint}/drift'`);
      await tb.writeAndSnapshot('alpha', src, 's4');
      await expectConflict(src, dst, rx`${dst} was modified since its newest snapshot.*re-run with --rollback`);

      assertExit(await pull(tb, 'beta', 'alpha', src, dst, 'beta', ['--rollback']), 0);
      assert.deepEqual([...(await tb.snapshots('beta', dst)).keys()], ['s1', 's2', 's3', 's4']);
      assert.equal(await tb.contentDigest('beta', dst), await tb.contentDigest('alpha', src));
    },
  );
});
