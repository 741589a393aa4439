import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { shellJoin } from '../../src/exec/quote.js';
import { PROJECT_ROOT, Testbed } from '../testbed/testbed.js';
import { assertExit, assertHeldOnlyOn, poolSnapshot, pull, sleep, snapshotSeries } from './helpers.js';

const SERVE = join(PROJECT_ROOT, 'bin/zfs_replicate-serve');
/** One line (execa drops the final newline). */
const REFUSAL_LINE = /^zfs_replicate-serve: refused: [^\n]+$/;
const MINUTE = 60_000;

/**
 * beta pulls from alpha, and alpha lets beta's key run only zfs_replicate-serve on tank/src: every command of
 * the real CLI goes through the wrapper over real ssh (zfs-fuse: the `zfs get` listings, holds by release,
 * zstd compression through the pipefail template).
 */
describe("zfs_replicate-serve as the forced command of beta's key on alpha", () => {
  let tb: Testbed;
  const canary = `/tmp/zsv-canary-${process.pid}`;

  before(
    async () => {
      tb = await Testbed.up(['alpha', 'beta']);
      await tb.zfs('alpha', 'create', '-p', 'tank/src/data');
      await tb.zfs('alpha', 'create', '-p', 'tank/outside');
      await snapshotSeries(tb, 'alpha', 'tank/outside', ['o1']);
      const betaKey = (await tb.sh('beta', 'cat /root/.ssh/id_ed25519.pub')).trim();
      const betaAddress = (await tb.sh('alpha', 'awk \'$2 == "beta" { print $1 }\' /etc/hosts')).trim();
      const restricted = `restrict,from="${betaAddress}",command="${SERVE} tank/src" ${betaKey}`;
      await tb.sh(
        'alpha',
        `cd /root/.ssh && { grep -vxF -- ${shellJoin([betaKey])} authorized_keys; printf '%s\\n' ${shellJoin([restricted])}; } >authorized_keys.new && chmod 600 authorized_keys.new && mv authorized_keys.new authorized_keys`,
      );
      const keys = await tb.sh('alpha', 'cat /root/.ssh/authorized_keys');
      assert.equal(keys.split('\n').filter((line) => line.endsWith('root@beta')).length, 1);
      assert.ok(keys.includes(restricted));
    },
    { timeout: 5 * MINUTE },
  );

  after(
    async () => {
      await tb?.down();
    },
    { timeout: 2 * MINUTE },
  );

  async function assertSameGuids(source: string, replica: string): Promise<void> {
    const sent = await tb.snapshots('alpha', source);
    const received = await tb.snapshots('beta', replica);
    assert.deepEqual([...received.keys()], [...sent.keys()], `snapshots of ${replica}`);
    for (const [name, { guid }] of sent) assert.equal(received.get(name)?.guid, guid, `guid of ${source}@${name}`);
  }

  test('the key is restricted: a plain command from beta is refused with one line', { timeout: MINUTE }, async () => {
    const outcome = await tb.on('beta', ['ssh', 'alpha', 'zfs list']);
    assert.equal(outcome.exitCode, 126);
    assert.match(outcome.stderr, REFUSAL_LINE);
  });

  test(
    'full, then incremental, through the wrapper: same guids, holds only on the newest on both sides',
    { timeout: 5 * MINUTE },
    async () => {
      await snapshotSeries(tb, 'alpha', 'tank/src/data', ['s1', 's2', 's3']);
      const first = await pull(tb, 'beta', 'alpha', 'tank/src/data', 'tank/dst/data', 'beta');
      assertExit(first, 0, 'full');
      assert.equal(first.stdout + first.stderr, '', 'silent on success');
      await snapshotSeries(tb, 'alpha', 'tank/src/data', ['s4', 's5']);
      const second = await pull(tb, 'beta', 'alpha', 'tank/src/data', 'tank/dst/data', 'beta', ['-v']);
      assertExit(second, 0, 'incremental');
      assert.match(
        second.stderr,
        /receiving @s3\.\.@s5 from alpha:tank\/src\/data .*\(compression: zstd/,
        'the compressed send template went through the wrapper',
      );
      await assertSameGuids('tank/src/data', 'tank/dst/data');
      assert.equal(await tb.contentDigest('beta', 'tank/dst/data'), await tb.contentDigest('alpha', 'tank/src/data'));
      await assertHeldOnlyOn(tb, 'alpha', 'tank/src/data', 'beta', 's5');
      await assertHeldOnlyOn(tb, 'beta', 'tank/dst/data', 'beta', 's5');
    },
  );

  test(
    'a hostile tag (spaces, quotes, $(...)) is held and released through the wrapper as one argument',
    { timeout: 5 * MINUTE },
    async () => {
      const tag = `t $(touch ${canary}-a); touch ${canary}-b; 'q" \`touch ${canary}-c\``;
      assertExit(await pull(tb, 'beta', 'alpha', 'tank/src/data', 'tank/hostile', tag), 0);
      await tb.writeAndSnapshot('alpha', 'tank/src/data', 's6');
      assertExit(await pull(tb, 'beta', 'alpha', 'tank/src/data', 'tank/hostile', tag), 0);
      assert.ok(await tb.hasHold('alpha', 'tank/src/data@s6', tag));
      assert.ok(!(await tb.hasHold('alpha', 'tank/src/data@s5', tag)), 'released from the old base');
      for (const suffix of ['-a', '-b', '-c'])
        assert.ok(!existsSync(canary + suffix), `${canary + suffix} exists: shell injection`);
    },
  );

  test('-R: every member of a tree arrives from its own stream', { timeout: 5 * MINUTE }, async () => {
    for (const member of ['', '/db', '/web', '/web/data dir'])
      await tb.zfs('alpha', 'create', '-p', `tank/src/tree${member}`);
    await tb.zfs('alpha', 'snapshot', '-r', 'tank/src/tree@r1');
    await tb.writeAndSnapshot('alpha', 'tank/src/tree/db', 'db-only');
    const run = await pull(tb, 'beta', 'alpha', 'tank/src/tree', 'tank/b/tree', 'beta', ['-R']);
    assertExit(run, 0);
    assert.equal(run.stdout + run.stderr, '');
    for (const member of ['', '/db', '/web', '/web/data dir']) {
      await assertSameGuids(`tank/src/tree${member}`, `tank/b/tree${member}`);
      const newest = [...(await tb.snapshots('alpha', `tank/src/tree${member}`)).keys()].at(-1)!;
      assert.ok(
        await tb.hasHold('alpha', `tank/src/tree${member}@${newest}`, 'beta'),
        `alpha hold on ${member}@${newest}`,
      );
    }
  });

  test(
    'expiry with a short --keep releases the remote holds through the wrapper',
    { timeout: 5 * MINUTE },
    async () => {
      await tb.zfs('alpha', 'create', 'tank/src/exp');
      await snapshotSeries(tb, 'alpha', 'tank/src/exp', ['e1', 'e2', 'e3']);
      assertExit(await pull(tb, 'beta', 'alpha', 'tank/src/exp', 'tank/exp', 'beta'), 0);
      await tb.zfs('alpha', 'hold', 'beta', 'tank/src/exp@e1'); // a twin whose hold expiry must release remotely
      await sleep(4000);
      await snapshotSeries(tb, 'alpha', 'tank/src/exp', ['e4']);
      const run = await pull(tb, 'beta', 'alpha', 'tank/src/exp', 'tank/exp', 'beta', ['--keep', '3s', '-v']);
      assertExit(run, 0);
      assert.match(run.stderr, /info: expired tank\/exp@e1/);
      assert.doesNotMatch(run.stderr, /error|warning/);
      assert.deepEqual([...(await tb.snapshots('beta', 'tank/exp')).keys()], ['e4']);
      for (const name of ['e1', 'e2', 'e3'])
        assert.ok(!(await tb.hasHold('alpha', `tank/src/exp@${name}`, 'beta')), `alpha @${name} still held`);
      assert.ok(await tb.hasHold('alpha', 'tank/src/exp@e4', 'beta'));
    },
  );

  test(
    "a dataset outside the prefix: the CLI fails and shows the wrapper's refusal line",
    { timeout: 2 * MINUTE },
    async () => {
      const before = await poolSnapshot(tb, 'alpha');
      const run = await pull(tb, 'beta', 'alpha', 'tank/outside', 'tank/out', 'beta');
      assert.notEqual(run.exitCode, 0);
      const lines = run.stderr.split('\n').filter((line) => line.includes('zfs_replicate-serve'));
      assert.equal(lines.length, 1, run.stderr);
      assert.match(
        lines[0]!,
        /zfs_replicate-serve: refused: tank\/outside is outside the allowed datasets \(tank\/src\) \(ECOMMAND\)$/,
      );
      assert.equal(await poolSnapshot(tb, 'alpha'), before);
    },
  );

  test(
    'refusal corpus over real ssh: exit 126, one stderr line, nothing changed on alpha',
    { timeout: 5 * MINUTE },
    async () => {
      const corpus = [
        'zfs destroy tank/src/data@s1',
        'zfs destroy -r tank/src',
        'zfs destroy tank/src',
        shellJoin(['zfs', 'destroy', 'tank/src/data#daily']),
        'zfs rollback -r tank/src/data@s1',
        'zfs recv -F tank/src/data',
        'zfs set readonly=on tank/src/data',
        'zfs create tank/src/new',
        'zfs rename tank/src/data tank/src/moved',
        'zfs snapshot tank/src/data@new',
        'zfs hold beta tank/outside@o1',
        'zfs send tank/outside@o1',
        'zfs send -R tank/src/data@s1',
        'zfs hold -r tank/src/data@s1',
        `touch ${canary}`,
        `zfs list; touch ${canary}`,
        `zfs list && touch ${canary}`,
        `zfs list $(touch ${canary})`,
        `zfs list \`touch ${canary}\``,
        'zfs send tank/src/data@s1 | sh',
        `zfs send tank/src/data@s1 > ${canary}`,
        shellJoin(['sh', '-c', `touch ${canary}`]),
        'zpool destroy tank',
      ];
      const before = await poolSnapshot(tb, 'alpha');
      for (const command of corpus) {
        const outcome = await tb.on('beta', ['ssh', 'alpha', command], { timeoutMs: MINUTE });
        assert.equal(outcome.exitCode, 126, `${command}: exit ${outcome.exitCode}: ${outcome.stderr}`);
        assert.match(outcome.stderr, REFUSAL_LINE, command);
        assert.equal(outcome.stdout, '', command);
      }
      // No command: what `ssh alpha` alone would open (restrict gives no terminal; the wrapper refuses anyway).
      const login = await tb.on('beta', ['sh', '-c', 'ssh -T alpha </dev/null'], { timeoutMs: MINUTE });
      assert.equal(login.exitCode, 126);
      assert.match(
        login.stderr,
        /^zfs_replicate-serve: refused: no command: interactive logins are not allowed for this key$/,
      );
      assert.equal(await poolSnapshot(tb, 'alpha'), before);
      assert.ok(!existsSync(canary), 'the canary was created: a command ran');
    },
  );
});
