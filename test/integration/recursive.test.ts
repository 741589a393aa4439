import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { readRecords } from '../../src/observe/state-dir.js';
import { TREE_LISTING_REUSE_MS } from '../../src/replication/run-tree.js';
import { Testbed } from '../testbed/testbed.js';
import { assertExit, pull, rx, sleep, sshHandshakes } from './helpers.js';

const MEMBERS = ['', '/db', '/web', '/web/data dir'];

describe('recursive replication (-R) on real zfs-fuse hosts', () => {
  let tb: Testbed;
  before(async () => {
    tb = await Testbed.up(['alpha', 'beta']);
  });
  after(async () => {
    await tb?.down();
  });

  /** One test's tree: `source` on alpha, `replica` its place on beta. */
  interface Tree {
    source: string;
    replica: string;
  }

  /** alpha's tree tank/`id`/vm: each member with @w1, then a recursive @r1, then db's own @db-only-1. */
  async function sourceTree(id: string, members = MEMBERS): Promise<Tree> {
    const tree = { source: `tank/${id}/vm`, replica: `tank/${id}/b/vm` };
    for (const member of members) await tb.zfs('alpha', 'create', '-p', `${tree.source}${member}`);
    for (const member of members) await tb.writeAndSnapshot('alpha', `${tree.source}${member}`, 'w1');
    await tb.zfs('alpha', 'snapshot', '-r', `${tree.source}@r1`);
    // Per-child history: db has snapshots of its own that no other member has.
    await tb.writeAndSnapshot('alpha', `${tree.source}/db`, 'db-only-1');
    return tree;
  }

  const pullTree = ({ source, replica }: Tree, extra: string[] = []) =>
    pull(tb, 'beta', 'alpha', source, replica, 'beta', ['-R', ...extra]);

  /** sourceTree, already replicated to beta by one -R pull. */
  async function replicatedTree(id: string, members = MEMBERS): Promise<Tree> {
    const tree = await sourceTree(id, members);
    assertExit(await pullTree(tree), 0, 'set-up: initial -R pull');
    return tree;
  }

  async function assertReplicated({ source: SOURCE, replica: REPLICA }: Tree, member: string): Promise<void> {
    const source = await tb.snapshots('alpha', `${SOURCE}${member}`);
    const replica = await tb.snapshots('beta', `${REPLICA}${member}`);
    assert.deepEqual([...replica.keys()], [...source.keys()], `snapshots of ${REPLICA}${member}`);
    for (const [name, { guid }] of source) assert.equal(replica.get(name)?.guid, guid, `guid of ${member}@${name}`);
    const newest = [...source.keys()].at(-1)!;
    assert.ok(await tb.hasHold('alpha', `${SOURCE}${member}@${newest}`, 'beta'), `alpha hold on ${member}@${newest}`);
    assert.ok(await tb.hasHold('beta', `${REPLICA}${member}@${newest}`, 'beta'), `beta hold on ${member}@${newest}`);
  }

  test(
    'an initial -R pull creates the parents and replicates every member from its own newest snapshot',
    { timeout: 180_000 },
    async () => {
      const tree = await sourceTree('initial');
      const { source: SOURCE, replica: REPLICA } = tree;
      const dry = await pullTree(tree, ['--dry-run']);
      assertExit(dry, 0);
      assert.deepEqual(
        dry.stdout.match(/would create parent dataset .*/g),
        ['would create parent dataset tank/initial/b (zfs create -p)'],
        'members arrive from their own streams',
      );
      assert.match(
        dry.stdout,
        rx`alpha:${SOURCE}/web/data dir -> ${REPLICA}/web/data dir:\nwould receive a full stream of alpha:${SOURCE}/web/data dir@w1 into the new dataset`,
      );
      const run = await pullTree(tree);
      assertExit(run, 0);
      assert.equal(run.stdout + run.stderr, '', 'silent on success');
      for (const member of MEMBERS) await assertReplicated(tree, member);
      assert.equal(await tb.contentDigest('beta', `${REPLICA}/db`), await tb.contentDigest('alpha', `${SOURCE}/db`));
      assert.equal(
        (await tb.zfs('beta', 'get', '-H', '-o', 'value', 'readonly', `${REPLICA}/web/data dir`)).trim(),
        'on',
      );
    },
  );

  test(
    'later runs: each member catches up from its own base; a new child without snapshots is a warning, not a failure',
    { timeout: 180_000 },
    async () => {
      const tree = await replicatedTree('later');
      const { source: SOURCE, replica: REPLICA } = tree;
      await tb.zfs('alpha', 'create', `${SOURCE}/new`);
      await tb.writeAndSnapshot('alpha', `${SOURCE}/web`, 'web-only-1');
      const warned = await pullTree(tree);
      assertExit(warned, 0);
      assert.match(warned.stderr, rx`${REPLICA}/new: not replicated yet: its source has no snapshot`);
      await assertReplicated(tree, '/web');

      await tb.zfs('alpha', 'snapshot', '-r', `${SOURCE}@r2`);
      await tb.writeAndSnapshot('alpha', `${SOURCE}/db`, 'db-only-2');
      const started = performance.now();
      const run = await pullTree(tree, ['-vv']);
      const tookMs = performance.now() - started;
      assertExit(run, 0);
      assert.doesNotMatch(run.stderr, /warn|error/i);
      for (const member of [...MEMBERS, '/new']) await assertReplicated(tree, member);
      // Members planned within TREE_LISTING_REUSE_MS of the tree listing are planned from it (the unit tests cover
      // those planned later, by a fake clock). Only /new, which had no replica yet, is locked after this host's
      // listing, so it lists itself again.
      if (tookMs < TREE_LISTING_REUSE_MS) {
        assert.deepEqual(
          run.stderr.match(/alpha\$ zfs get -Hp (-r|-d 1) .*/g)?.map((line) => line.split(' ').at(-1)),
          [SOURCE, `${SOURCE}/new`],
          run.stderr,
        );
      }

      const noop = await pullTree(tree, ['-vv']);
      assertExit(noop, 0);
      const listings = noop.stderr.match(/\$ zfs get -Hp (-r|-d 1) .*/g) ?? [];
      assert.deepEqual(
        listings.map((line) => line.split(' ').at(-1)),
        [SOURCE, REPLICA],
        'a no-op run lists each tree once, nothing per member',
      );
      assert.ok(
        listings.every((line) => line.includes(' -r ')),
        listings.join('\n'),
      );
    },
  );

  test(
    "--dry-run lists every member's plan and changes nothing; --exclude leaves a subtree out",
    { timeout: 180_000 },
    async () => {
      const tree = await replicatedTree('exclude');
      const { source: SOURCE, replica: REPLICA } = tree;
      await tb.zfs('alpha', 'snapshot', '-r', `${SOURCE}@r3`);
      const dry = await pullTree(tree, ['--dry-run', '--exclude', `${SOURCE}/web`]);
      assertExit(dry, 0);
      assert.match(
        dry.stdout,
        rx`alpha:${SOURCE}/db -> ${REPLICA}/db:\nwould send alpha:${SOURCE}/db@db-only-1\.\.@r3 into ${REPLICA}/db`,
      );
      assert.doesNotMatch(dry.stdout, rx`${SOURCE}/web`);
      assert.equal((await tb.snapshots('beta', `${REPLICA}/db`)).has('r3'), false, 'dry-run changed nothing');

      assertExit(await pullTree(tree, ['--exclude', `${SOURCE}/web`]), 0);
      await assertReplicated(tree, '/db');
      assert.equal((await tb.snapshots('beta', `${REPLICA}/web`)).has('r3'), false, 'excluded');
      assert.equal(
        (await tb.snapshots('beta', `${REPLICA}/web/data dir`)).has('r3'),
        false,
        'excluded with its parent',
      );
    },
  );

  test(
    'a diverged member is a conflict (exit 4) naming it, while every other member is still replicated',
    { timeout: 180_000 },
    async () => {
      const tree = await replicatedTree('diverged', [...MEMBERS, '/new']);
      const { source: SOURCE, replica: REPLICA } = tree;
      await tb.zfs('beta', 'snapshot', `${REPLICA}/web@made-on-backup`);
      await tb.zfs('alpha', 'snapshot', '-r', `${SOURCE}@r4`);
      const run = await pullTree(tree);
      assertExit(run, 4);
      assert.match(run.stderr, rx`${REPLICA}/web: local dataset ${REPLICA}/web has diverged .* \(EDIVERGED\)\n`);
      assert.match(run.stderr, rx`1 of 5 datasets not replicated: ${REPLICA}/web \(conflict EDIVERGED\)`);
      for (const member of ['', '/db', '/web/data dir', '/new']) await assertReplicated(tree, member);
      assert.equal((await tb.snapshots('beta', `${REPLICA}/web`)).has('r4'), false);

      assertExit(await pullTree(tree, ['--rollback']), 0, 'the way out the message names');
      await assertReplicated(tree, '/web');
    },
  );

  test(
    'a member locked by another job is skipped for this run, and a member it would have created blocks its children',
    { timeout: 180_000 },
    async () => {
      const tree = await replicatedTree('locked', [...MEMBERS, '/new']);
      const { source: SOURCE, replica: REPLICA } = tree;
      await tb.zfs('alpha', 'create', '-p', `${SOURCE}/held/child`);
      await tb.zfs('alpha', 'snapshot', '-r', `${SOURCE}@r5`);
      const lockFile = `/run/lock/zfs_replicate/${encodeURIComponent(`${REPLICA}/held`)}.lock`;
      const holder = tb.on('beta', ['sh', '-c', `mkdir -p /run/lock/zfs_replicate && exec flock ${lockFile} sleep 8`]);
      await sleep(1000);
      const run = await pullTree(tree, ['--lock-warn', '0s']);
      await holder;
      assertExit(run, 1);
      assert.match(run.stderr, rx`another run .*replicating into ${REPLICA}/held`);
      assert.match(
        run.stderr,
        rx`1 of 7 datasets not replicated: ${REPLICA}/held/child \(skipped: its parent ${REPLICA}/held was not replicated\)`,
      );
      assert.equal((await tb.snapshots('beta', `${REPLICA}/held`)).size, 0, 'the locked member was left alone');
      await assertReplicated(tree, '/db');

      assertExit(await pullTree(tree), 0, 'next run, lock free');
      for (const member of ['/held', '/held/child']) await assertReplicated(tree, member);
    },
  );

  test(
    'a member destroyed at the source keeps its replica: reported, never expired or destroyed',
    { timeout: 180_000 },
    async () => {
      const tree = await replicatedTree('destroyed', [...MEMBERS, '/new']);
      const { source: SOURCE, replica: REPLICA } = tree;
      await tb.zfs('alpha', 'release', '-r', 'beta', `${SOURCE}/new@r1`);
      await tb.destroyTree('alpha', `${SOURCE}/new`);
      const before = await tb.snapshots('beta', `${REPLICA}/new`);
      const run = await pullTree(tree, ['-v', '--keep', '1s']);
      assertExit(run, 0);
      assert.match(run.stderr, rx`${REPLICA}/new has no counterpart under alpha:${SOURCE} .*left as it is`);
      assert.deepEqual(await tb.snapshots('beta', `${REPLICA}/new`), before);
    },
  );

  test(
    'with -j 4 a wide tree replicates every member over one ssh connection, each with its own record',
    { timeout: 300_000 },
    async () => {
      // sourceTree gives /db snapshots of its own.
      const members = [
        '',
        '/db',
        ...Array.from({ length: 7 }, (_, index) => `/c${index}`),
        '/db/g0',
        '/db/g1',
        '/c5/g0',
      ];
      const tree = await sourceTree('wide', members);
      for (const round of ['initial', 'incremental']) {
        if (round === 'incremental') {
          for (const member of members) await tb.writeAndSnapshot('alpha', `${tree.source}${member}`, 'w2');
          await tb.zfs('alpha', 'snapshot', '-r', `${tree.source}@r2`);
        }
        const handshakes = sshHandshakes('alpha');
        const startedAt = Date.now() / 1000 - 1;
        assertExit(await pullTree(tree, ['-j', '4']), 0, round);
        assert.equal(sshHandshakes('alpha') - handshakes, 1, `${round}: one ssh connection for the whole tree`);
        for (const member of members) await assertReplicated(tree, member);
        const records = readRecords(Testbed.stateDir('beta')).records.filter(
          (record) =>
            record.kind === 'dataset' && members.some((member) => record.localDataset === `${tree.replica}${member}`),
        );
        assert.equal(records.length, members.length, `${round}: one record per member`);
        for (const record of records) {
          assert.equal(record.lastRun.exitCode, 0, `${round}: ${record.localDataset}`);
          assert.ok(record.lastRun.startedAt >= startedAt, `${round}: ${record.localDataset} recorded by this run`);
        }
      }
    },
  );

  test(
    'a root that is only a container (no snapshots of its own) is replicated through its children, quietly',
    { timeout: 180_000 },
    async () => {
      await tb.zfs('alpha', 'create', '-p', 'tank/ct/a');
      await tb.writeAndSnapshot('alpha', 'tank/ct/a', 's1');
      for (const round of [1, 2]) {
        const run = await pull(tb, 'beta', 'alpha', 'tank/ct', 'tank/b/ct', 'beta', ['-R']);
        assertExit(run, 0, `round ${round}`);
        assert.equal(run.stdout + run.stderr, '', `round ${round}: silent`);
      }
      const replica = await tb.snapshots('beta', 'tank/b/ct/a');
      assert.equal(replica.get('s1')?.guid, (await tb.snapshots('alpha', 'tank/ct/a')).get('s1')?.guid);
      assert.equal((await tb.snapshots('beta', 'tank/b/ct')).size, 0, 'the container exists, with no snapshots');
    },
  );
});
