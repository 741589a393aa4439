import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { Testbed } from '../testbed/testbed.js';
import {
  assertExit,
  assertHeldOnlyOn,
  poolSnapshot,
  pull,
  pulledReplica,
  rx,
  series,
  snapshotSeries,
  sourceWithSnapshots,
  sshHandshakes,
} from './helpers.js';

describe('replication core on real zfs-fuse hosts', () => {
  let tb: Testbed;
  before(async () => {
    tb = await Testbed.up(['alpha', 'beta']);
  });
  after(async () => {
    await tb?.down();
  });

  test(
    'initial pull creates the missing parents, then a second pull brings the new snapshots',
    { timeout: 120_000 },
    async () => {
      const [src, dst] = ['tank/initial/src/data', 'tank/initial/backup/alpha/data'];
      await sourceWithSnapshots(tb, 'alpha', src, series('s', 5));
      const first = await pull(tb, 'beta', 'alpha', src, dst, 'beta');
      assertExit(first, 0, 'initial');
      assert.equal(first.stdout + first.stderr, '', 'a successful run is silent (cron mails any output)');
      await snapshotSeries(tb, 'alpha', src, ['s6', 's7', 's8']);
      const second = await pull(tb, 'beta', 'alpha', src, dst, 'beta');
      assertExit(second, 0, 'incremental');

      const source = await tb.snapshots('alpha', src);
      const replica = await tb.snapshots('beta', dst);
      assert.deepEqual([...replica.keys()], ['s1', 's2', 's3', 's4', 's5', 's6', 's7', 's8']);
      for (const [name, { guid }] of source) assert.equal(replica.get(name)?.guid, guid, `guid of @${name}`);
      assert.equal(await tb.contentDigest('beta', dst), await tb.contentDigest('alpha', src));
      assert.equal((await tb.zfs('beta', 'get', '-H', '-o', 'value', 'readonly', dst)).trim(), 'on');
      await assertHeldOnlyOn(tb, 'alpha', src, 'beta', 's8');
      await assertHeldOnlyOn(tb, 'beta', dst, 'beta', 's8');
    },
  );

  test(
    'a replica received by hand (or left by a stopped zfs-fuse initial sync) gets its protective properties once',
    { timeout: 120_000 },
    async () => {
      const [src, dst] = ['tank/adopted/src', 'tank/adopted/dst'];
      await sourceWithSnapshots(tb, 'alpha', src, series('s', 2));
      await tb.zfs('beta', 'create', 'tank/adopted');
      await tb.sh('beta', `ssh alpha zfs send ${src}@s1 | zfs recv -u ${dst}`);
      await tb.zfs('beta', 'set', 'canmount=on', dst);
      const properties = async () =>
        (await tb.zfs('beta', 'get', '-H', '-o', 'value', 'readonly,canmount,com.sun:auto-snapshot', dst)).split('\n');
      assert.deepEqual((await properties()).slice(0, 3), ['off', 'on', '-']);
      const first = await pull(tb, 'beta', 'alpha', src, dst, 'beta');
      assertExit(first, 0);
      assert.match(first.stderr, rx`warning: set readonly=on, com.sun:auto-snapshot=false on ${dst}: nobody had`);
      assert.deepEqual((await properties()).slice(0, 3), ['on', 'on', 'false'], 'canmount was set by hand: kept');
      await snapshotSeries(tb, 'alpha', src, ['s3']);
      const second = await pull(tb, 'beta', 'alpha', src, dst, 'beta');
      assertExit(second, 0);
      assert.equal(second.stderr, '', 'once only');
    },
  );

  test(
    'a run with nothing new sends nothing, uses one ssh handshake, and repairs holds removed by hand',
    { timeout: 120_000 },
    async () => {
      const [src, dst] = ['tank/noop/src', 'tank/noop/dst'];
      await pulledReplica(tb, src, dst, series('s', 8));
      await tb.zfs('alpha', 'release', 'beta', `${src}@s8`);
      await tb.zfs('beta', 'release', 'beta', `${dst}@s8`);
      const handshakesBefore = sshHandshakes('alpha');
      const run = await pull(tb, 'beta', 'alpha', src, dst, 'beta', ['-vv']);
      assertExit(run, 0);
      assert.equal(sshHandshakes('alpha') - handshakesBefore, 1, 'one ssh handshake per run');
      assert.doesNotMatch(run.stderr, /zfs send/, 'no send on a no-op run');
      assert.match(run.stderr, rx`repaired: hold "beta" was missing on alpha:${src}@s8`);
      assert.match(run.stderr, rx`repaired: hold "beta" was missing on local:${dst}@s8`);
      await assertHeldOnlyOn(tb, 'alpha', src, 'beta', 's8');
      await assertHeldOnlyOn(tb, 'beta', dst, 'beta', 's8');
    },
  );

  test('a replica 50 snapshots behind catches up in one run with one stream', { timeout: 120_000 }, async () => {
    const [src, dst] = ['tank/behind/src', 'tank/behind/dst'];
    await pulledReplica(tb, src, dst, series('s', 8));
    const names = Array.from({ length: 50 }, (_, index) => `c${String(index).padStart(2, '0')}`);
    for (const name of names) await tb.zfs('alpha', 'snapshot', `${src}@${name}`);
    const run = await pull(tb, 'beta', 'alpha', src, dst, 'beta', ['-vv']);
    assertExit(run, 0);
    const sends = run.stderr.split('\n').filter((line) => line.includes('pipeline:') && line.includes('zfs send'));
    assert.equal(sends.length, 1, sends.join('\n'));
    assert.match(sends[0]!, rx`zfs send -I ${src}@s8 ${src}@c49`);
    const replica = await tb.snapshots('beta', dst);
    for (const name of names) assert.ok(replica.has(name), `@${name} arrived`);
    await assertHeldOnlyOn(tb, 'alpha', src, 'beta', 'c49');
  });

  test('--dry-run prints the plan and changes nothing on either side', { timeout: 120_000 }, async () => {
    const [src, dst] = ['tank/dry/src', 'tank/dry/dst'];
    await pulledReplica(tb, src, dst, ['s1', 's2']);
    await tb.writeAndSnapshot('alpha', src, 'd1');
    const before = [await poolSnapshot(tb, 'alpha'), await poolSnapshot(tb, 'beta')];
    const run = await pull(tb, 'beta', 'alpha', src, dst, 'beta', ['--dry-run']);
    assertExit(run, 0);
    assert.match(
      run.stdout,
      rx`would send alpha:${src}@s2\.\.@d1 into ${dst} as one incremental stream \(1 snapshot: @d1\)`,
    );
    assert.match(run.stdout, /would hold "beta" on @d1 on both sides\n/);
    assert.match(run.stdout, /would release "beta" from @s2 on alpha \(if held by it[^)]*\); from @s2 on local \(/);
    assert.deepEqual([await poolSnapshot(tb, 'alpha'), await poolSnapshot(tb, 'beta')], before);
    // Another tag: a second replica of this source under the same tag would be refused (one tag per replica).
    const initial = await pull(tb, 'beta', 'alpha', src, 'tank/dry/new/parent/copy', 'beta2', ['--dry-run']);
    assertExit(initial, 0);
    assert.match(initial.stdout, /would create parent dataset tank\/dry\/new\/parent/);
    assert.deepEqual([await poolSnapshot(tb, 'alpha'), await poolSnapshot(tb, 'beta')], before);
  });

  test('-h localhost replicates on the same host without ssh', { timeout: 120_000 }, async () => {
    const [src, dst] = ['tank/localhost/src', 'tank/localhost/dst'];
    await pulledReplica(tb, src, dst, ['s1', 's2']);
    const handshakesBefore = sshHandshakes('beta');
    const run = await pull(tb, 'beta', 'localhost', dst, 'tank/localhost/copy', 'copy');
    assertExit(run, 0);
    assert.equal(sshHandshakes('beta'), handshakesBefore);
    const copy = await tb.snapshots('beta', 'tank/localhost/copy');
    assert.equal(copy.get('s2')?.guid, (await tb.snapshots('alpha', src)).get('s2')?.guid);
  });

  test(
    'hostile names: spaces in datasets and snapshots, shell syntax in the tag; no injection on either side',
    { timeout: 120_000 },
    async () => {
      const canary = `/tmp/zr-pwned-${process.pid}`;
      const tag = `t$(touch ${canary}-a); touch ${canary}-b; 'q" \`touch ${canary}-c\``;
      const datasetsOnBeta = async () =>
        (await tb.zfs('beta', 'list', '-H', '-o', 'name', '-r', 'tank')).split('\n').filter(Boolean);
      const datasetsBefore = await datasetsOnBeta();
      await sourceWithSnapshots(tb, 'alpha', 'tank/my data/sp ace', ['snap 1', 'snap:2.b-c_d']);
      const run = await pull(tb, 'beta', 'alpha', 'tank/my data/sp ace', 'tank/back up/x y', tag);
      assertExit(run, 0);
      await tb.writeAndSnapshot('alpha', 'tank/my data/sp ace', 'snap 3');
      assertExit(await pull(tb, 'beta', 'alpha', 'tank/my data/sp ace', 'tank/back up/x y', tag), 0);
      const replica = await tb.snapshots('beta', 'tank/back up/x y');
      assert.deepEqual([...replica.keys()], ['snap 1', 'snap:2.b-c_d', 'snap 3']);
      assert.ok(await tb.hasHold('alpha', 'tank/my data/sp ace@snap 3', tag));
      assert.ok(await tb.hasHold('beta', 'tank/back up/x y@snap 3', tag));
      assert.ok(!(await tb.hasHold('alpha', 'tank/my data/sp ace@snap:2.b-c_d', tag)));
      for (const suffix of ['-a', '-b', '-c'])
        assert.ok(!existsSync(canary + suffix), `${canary + suffix} was created: shell injection`);
      // Exactly the replica and its parent appeared on beta, whatever other tests left there.
      assert.deepEqual((await datasetsOnBeta()).sort(), [...datasetsBefore, 'tank/back up', 'tank/back up/x y'].sort());
    },
  );

  test('names outside ZFS rules are a usage error (exit 2) before anything runs', { timeout: 120_000 }, async () => {
    const before = await poolSnapshot(tb, 'beta');
    for (const local of ['tank/a;rm -rf /', 'tank/$(id)', 'tank//x', 'tank/x@snap', "tank/it's"]) {
      const run = await pull(tb, 'beta', 'alpha', 'tank/src/data', local, 'beta');
      assertExit(run, 2, local);
      assert.match(run.stderr, /^zfs_replicate: error: -l\/--local: dataset name .* \(see --help\)$/);
      assert.ok(!run.stderr.includes('\n'), 'one line, no stack trace');
    }
    assert.equal(await poolSnapshot(tb, 'beta'), before);
  });
});
