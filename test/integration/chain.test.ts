import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Testbed } from '../testbed/testbed.js';
import { assertExit, pull, sleep } from './helpers.js';

describe('chains and fan-out on real zfs-fuse hosts', () => {
  let tb: Testbed;
  before(async () => {
    tb = await Testbed.up(['alpha', 'beta', 'gamma']);
  });
  after(async () => {
    await tb?.down();
  });

  /** zfs-auto-snapshot's stand-in on alpha: keep the newest `count` snapshots, skip held ones. */
  async function alphaExpiresOwn(dataset: string, count: number): Promise<void> {
    const names = [...(await tb.snapshots('alpha', dataset)).keys()];
    for (const name of names.slice(0, Math.max(0, names.length - count)))
      await tb.on('alpha', ['zfs', 'destroy', `${dataset}@${name}`]);
  }

  test(
    "a hop that shares its upstream hop's tag is refused before anything changes (single and -R); its own tag works",
    { timeout: 180_000 },
    async () => {
      await tb.zfs('alpha', 'create', 'tank/same');
      await tb.writeAndSnapshot('alpha', 'tank/same', 's1');
      assertExit(await pull(tb, 'beta', 'alpha', 'tank/same', 'tank/b/same', 'backup'), 0);
      // The replica itself, and (-R) a tree with it as a member, not its root.
      for (const [remote, local, extra] of [
        ['tank/b/same', 'tank/g/same', []],
        ['tank/b', 'tank/g', ['-R']],
      ] as const) {
        const refused = await pull(tb, 'gamma', 'beta', remote, local, 'backup', [...extra]);
        assertExit(refused, 2, `gamma ${remote} ${extra.join(' ')}`);
        assert.match(
          refused.stderr,
          /beta:tank\/b\/same is itself a replica, pulled on beta with the same tag "backup".*give each hop its own tag\. If it was restored from a replica .*\(nothing was changed\)/,
        );
        assert.equal(refused.stderr.trim().split('\n').length, 1, refused.stderr);
      }
      assert.equal((await tb.listing('gamma', 'tank/g')).exists, false, 'no parent created on gamma');
      assert.equal((await tb.snapshots('beta', 'tank/b/same')).get('s1')?.userrefs, 1, "only beta's own hold");
      assertExit(await pull(tb, 'gamma', 'beta', 'tank/b/same', 'tank/g/same', 'gamma'), 0);
    },
  );

  test(
    "beta's tag changed to gamma's is refused before it strips gamma's hold; gamma's base stays",
    { timeout: 180_000 },
    async () => {
      await tb.zfs('alpha', 'create', 'tank/retag');
      await tb.writeAndSnapshot('alpha', 'tank/retag', 's1');
      assertExit(await pull(tb, 'beta', 'alpha', 'tank/retag', 'tank/b/retag', 'b', ['--keep', '0']), 0);
      assertExit(await pull(tb, 'gamma', 'beta', 'tank/b/retag', 'tank/g/retag', 'g', ['--keep', '0']), 0);
      await tb.writeAndSnapshot('alpha', 'tank/retag', 's2');
      assertExit(await pull(tb, 'beta', 'alpha', 'tank/retag', 'tank/b/retag', 'b', ['--keep', '0']), 0);
      await tb.writeAndSnapshot('alpha', 'tank/retag', 's3');
      const retagged = await pull(tb, 'beta', 'alpha', 'tank/retag', 'tank/b/retag', 'g', ['--keep', '0']);
      assertExit(retagged, 2);
      assert.match(retagged.stderr, /tag "g" already holds tank\/b\/retag@s1, and not its twin on the source/);
      // A claim freed with zfs inherit (the README's way to set a replica aside) is no way around it.
      await tb.zfs('beta', 'inherit', 'zfs_replicate:pull', 'tank/b/retag');
      assertExit(await pull(tb, 'beta', 'alpha', 'tank/retag', 'tank/b/retag', 'g', ['--keep', '0']), 2);
      assert.ok(await tb.hasHold('beta', 'tank/b/retag@s1', 'g'), "gamma's base keeps gamma's hold");
      assert.deepEqual(
        [...(await tb.snapshots('beta', 'tank/b/retag')).keys()],
        ['s1', 's2'],
        'nothing received, nothing expired',
      );
      assertExit(await pull(tb, 'gamma', 'beta', 'tank/b/retag', 'tank/g/retag', 'g', ['--keep', '0']), 0);
    },
  );

  test(
    "alpha -> beta -> gamma: many rounds, gamma never resends in full, beta never fails on gamma's holds",
    { timeout: 240_000 },
    async () => {
      await tb.zfs('alpha', 'create', 'tank/vm');
      const guids = new Map<string, string>();
      let betaSkippedGammaHold = false;
      for (let round = 1; round <= 8; round++) {
        const name = `r${round}`;
        await tb.writeAndSnapshot('alpha', 'tank/vm', name);
        guids.set(name, (await tb.snapshots('alpha', 'tank/vm')).get(name)!.guid);
        await alphaExpiresOwn('tank/vm', 3);

        const beta = await pull(tb, 'beta', 'alpha', 'tank/vm', 'tank/b/vm', 'beta', ['--keep', '3s', '-v']);
        assertExit(beta, 0, `round ${round} beta`);
        assert.doesNotMatch(beta.stderr, /error|warning/, `round ${round} beta`);
        if (/another hold protects it/.test(beta.stderr)) betaSkippedGammaHold = true;

        // gamma runs every other round, so its base on beta ages past beta's keep.
        if (round % 2 === 1) {
          const gamma = await pull(tb, 'gamma', 'beta', 'tank/b/vm', 'tank/g/vm', 'gamma', ['--keep', '1h', '-v']);
          assertExit(gamma, 0, `round ${round} gamma`);
          assert.doesNotMatch(gamma.stderr, /error|warning/, `round ${round} gamma`);
          if (round > 1)
            assert.doesNotMatch(gamma.stderr, /receiving full/, `round ${round}: gamma must catch up incrementally`);
        }
        await sleep(1500);
      }
      assert.ok(betaSkippedGammaHold, "beta's expiry met a snapshot held by gamma and skipped it");

      const final = await pull(tb, 'gamma', 'beta', 'tank/b/vm', 'tank/g/vm', 'gamma', ['--keep', '1h', '-v']);
      assertExit(final, 0);
      assert.doesNotMatch(final.stderr, /receiving full/);
      const onGamma = await tb.snapshots('gamma', 'tank/g/vm');
      assert.equal(onGamma.get('r8')?.guid, guids.get('r8'));
      for (const [name, guid] of onGamma) assert.equal(guid.guid, guids.get(name), `gamma @${name} has alpha's guid`);
      // Each hop's hold sits only on its own base.
      assert.ok(await tb.hasHold('beta', 'tank/b/vm@r8', 'gamma'));
      assert.ok(await tb.hasHold('beta', 'tank/b/vm@r8', 'beta'));
      assert.ok(await tb.hasHold('alpha', 'tank/vm@r8', 'beta'));
      for (const name of (await tb.snapshots('beta', 'tank/b/vm')).keys()) {
        if (name !== 'r8')
          assert.ok(!(await tb.hasHold('beta', `tank/b/vm@${name}`, 'gamma')), `leaked gamma hold on beta @${name}`);
      }
    },
  );

  test(
    "fan-out: beta and gamma pull the same dataset with their own tags; each one's holds survive the other's runs",
    { timeout: 180_000 },
    async () => {
      await tb.zfs('alpha', 'create', 'tank/fan');
      const bases = new Map<string, string>();
      for (let round = 1; round <= 4; round++) {
        for (const [host, tag] of [
          ['beta', 'fan-beta'],
          ['gamma', 'fan-gamma'],
        ] as const) {
          const name = `f${round}-${host}`;
          await tb.writeAndSnapshot('alpha', 'tank/fan', name);
          assertExit(
            await pull(tb, host, 'alpha', 'tank/fan', 'tank/fan-copy', tag, ['--keep', '2s']),
            0,
            `${host} round ${round}`,
          );
          bases.set(tag, name);
          for (const [otherTag, base] of bases) {
            assert.ok(
              await tb.hasHold('alpha', `tank/fan@${base}`, otherTag),
              `after ${host}'s run, ${otherTag} still holds @${base}`,
            );
          }
        }
      }
      const onAlpha = [...(await tb.snapshots('alpha', 'tank/fan')).entries()];
      const held = onAlpha.filter(([, snapshot]) => snapshot.userrefs > 0).map(([name]) => name);
      assert.deepEqual(held.sort(), [...bases.values()].sort(), 'alpha holds exactly the two bases');
    },
  );
});
