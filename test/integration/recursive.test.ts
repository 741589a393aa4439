import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Testbed } from '../testbed/testbed.js';
import { assertExit, pull, sleep } from './helpers.js';

const SOURCE = 'tank/vm';
const REPLICA = 'tank/b/vm';
const MEMBERS = ['', '/db', '/web', '/web/data dir'];

describe('recursive replication (-R) on real zfs-fuse hosts', () => {
  let tb: Testbed;
  before(async () => {
    tb = await Testbed.up(['alpha', 'beta']);
    for (const member of MEMBERS) await tb.zfs('alpha', 'create', '-p', `${SOURCE}${member}`);
    for (const member of MEMBERS) await tb.writeAndSnapshot('alpha', `${SOURCE}${member}`, 'w1');
    await tb.zfs('alpha', 'snapshot', '-r', `${SOURCE}@r1`);
    // Per-child history: db has snapshots of its own that no other member has.
    await tb.writeAndSnapshot('alpha', `${SOURCE}/db`, 'db-only-1');
  });
  after(async () => {
    await tb?.down();
  });

  const pullTree = (extra: string[] = []) => pull(tb, 'beta', 'alpha', SOURCE, REPLICA, 'beta', ['-R', ...extra]);

  async function assertReplicated(member: string): Promise<void> {
    const source = await tb.snapshots('alpha', `${SOURCE}${member}`);
    const replica = await tb.snapshots('beta', `${REPLICA}${member}`);
    assert.deepEqual([...replica.keys()], [...source.keys()], `snapshots of ${REPLICA}${member}`);
    for (const [name, { guid }] of source) assert.equal(replica.get(name)?.guid, guid, `guid of ${member}@${name}`);
    const newest = [...source.keys()].at(-1)!;
    assert.ok(await tb.hasHold('alpha', `${SOURCE}${member}@${newest}`, 'beta'), `alpha hold on ${member}@${newest}`);
    assert.ok(await tb.hasHold('beta', `${REPLICA}${member}@${newest}`, 'beta'), `beta hold on ${member}@${newest}`);
  }

  test('an initial -R pull creates the parents and replicates every member from its own newest snapshot', async () => {
    const dry = await pullTree(['--dry-run']);
    assertExit(dry, 0);
    assert.deepEqual(
      dry.stdout.match(/would create parent dataset .*/g),
      ['would create parent dataset tank/b (zfs create -p)'],
      'members arrive from their own streams',
    );
    assert.match(
      dry.stdout,
      /alpha:tank\/vm\/web\/data dir -> tank\/b\/vm\/web\/data dir:\nwould receive a full stream of alpha:tank\/vm\/web\/data dir@w1 into the new dataset/,
    );
    const run = await pullTree();
    assertExit(run, 0);
    assert.equal(run.stdout + run.stderr, '', 'silent on success');
    for (const member of MEMBERS) await assertReplicated(member);
    assert.equal(await tb.contentDigest('beta', `${REPLICA}/db`), await tb.contentDigest('alpha', `${SOURCE}/db`));
    assert.equal(
      (await tb.zfs('beta', 'get', '-H', '-o', 'value', 'readonly', `${REPLICA}/web/data dir`)).trim(),
      'on',
    );
  });

  test('later runs: each member catches up from its own base; a new child without snapshots is a warning, not a failure', async () => {
    await tb.zfs('alpha', 'create', `${SOURCE}/new`);
    await tb.writeAndSnapshot('alpha', `${SOURCE}/web`, 'web-only-1');
    const warned = await pullTree();
    assertExit(warned, 0);
    assert.match(warned.stderr, /tank\/b\/vm\/new: not replicated yet: its source has no snapshot/);
    await assertReplicated('/web');

    await tb.zfs('alpha', 'snapshot', '-r', `${SOURCE}@r2`);
    await tb.writeAndSnapshot('alpha', `${SOURCE}/db`, 'db-only-2');
    const run = await pullTree(['-vv']);
    assertExit(run, 0);
    assert.doesNotMatch(run.stderr, /warn|error/i);
    for (const member of [...MEMBERS, '/new']) await assertReplicated(member);
    // The root received first, so the tree listing is no longer trusted: later members are listed again.
    assert.match(run.stderr, /alpha\$ zfs get -Hp -d 1 .* tank\/vm\/db\n/);

    const noop = await pullTree(['-vv']);
    assertExit(noop, 0);
    const listings = noop.stderr.match(/\$ zfs get -Hp .*/g) ?? [];
    assert.deepEqual(
      listings.map((line) => line.split(' ').at(-1)),
      ['tank/vm', 'tank/b/vm'],
      'a no-op run lists each tree once, nothing per member',
    );
    assert.ok(
      listings.every((line) => line.includes(' -r ')),
      listings.join('\n'),
    );
  });

  test("--dry-run lists every member's plan and changes nothing; --exclude leaves a subtree out", async () => {
    await tb.zfs('alpha', 'snapshot', '-r', `${SOURCE}@r3`);
    const dry = await pullTree(['--dry-run', '--exclude', `${SOURCE}/web`]);
    assertExit(dry, 0);
    assert.match(
      dry.stdout,
      /alpha:tank\/vm\/db -> tank\/b\/vm\/db:\nwould send alpha:tank\/vm\/db@db-only-2\.\.@r3 into tank\/b\/vm\/db/,
    );
    assert.doesNotMatch(dry.stdout, /tank\/vm\/web/);
    assert.equal((await tb.snapshots('beta', `${REPLICA}/db`)).has('r3'), false, 'dry-run changed nothing');

    assertExit(await pullTree(['--exclude', `${SOURCE}/web`]), 0);
    await assertReplicated('/db');
    assert.equal((await tb.snapshots('beta', `${REPLICA}/web`)).has('r3'), false, 'excluded');
    assert.equal((await tb.snapshots('beta', `${REPLICA}/web/data dir`)).has('r3'), false, 'excluded with its parent');
  });

  test('a diverged member is a conflict (exit 4) naming it, while every other member is still replicated', async () => {
    await tb.zfs('beta', 'snapshot', `${REPLICA}/web@made-on-backup`);
    await tb.zfs('alpha', 'snapshot', '-r', `${SOURCE}@r4`);
    const run = await pullTree();
    assertExit(run, 4);
    assert.match(run.stderr, /tank\/b\/vm\/web: local dataset tank\/b\/vm\/web has diverged/);
    assert.match(run.stderr, /1 of 5 datasets not replicated: tank\/b\/vm\/web \(conflict EDIVERGED\)/);
    for (const member of ['', '/db', '/web/data dir', '/new']) await assertReplicated(member);
    assert.equal((await tb.snapshots('beta', `${REPLICA}/web`)).has('r4'), false);

    assertExit(await pullTree(['--rollback']), 0, 'the way out the message names');
    await assertReplicated('/web');
  });

  test('a member locked by another job is skipped for this run, and a member it would have created blocks its children', async () => {
    await tb.zfs('alpha', 'create', '-p', `${SOURCE}/held/child`);
    await tb.zfs('alpha', 'snapshot', '-r', `${SOURCE}@r5`);
    const holder = tb.on('beta', [
      'sh',
      '-c',
      'mkdir -p /run/lock/zfs_replicate && exec flock /run/lock/zfs_replicate/tank%2Fb%2Fvm%2Fheld.lock sleep 8',
    ]);
    await sleep(1000);
    const run = await pullTree(['--lock-warn', '0s']);
    await holder;
    assertExit(run, 1);
    assert.match(run.stderr, /another run .*replicating into tank\/b\/vm\/held/);
    assert.match(
      run.stderr,
      /1 of 7 datasets not replicated: tank\/b\/vm\/held\/child \(skipped: its parent tank\/b\/vm\/held was not replicated\)/,
    );
    assert.equal((await tb.snapshots('beta', `${REPLICA}/held`)).size, 0, 'the locked member was left alone');
    await assertReplicated('/db');

    assertExit(await pullTree(), 0, 'next run, lock free');
    for (const member of ['/held', '/held/child']) await assertReplicated(member);
  });

  test('a member destroyed at the source keeps its replica: reported, never expired or destroyed', async () => {
    await tb.zfs('alpha', 'release', '-r', 'beta', `${SOURCE}/new@r5`);
    await tb.destroyTree('alpha', `${SOURCE}/new`);
    const before = await tb.snapshots('beta', `${REPLICA}/new`);
    const run = await pullTree(['-v', '--keep', '1s']);
    assertExit(run, 0);
    assert.match(run.stderr, /tank\/b\/vm\/new has no counterpart under alpha:tank\/vm .*left as it is/);
    assert.deepEqual(await tb.snapshots('beta', `${REPLICA}/new`), before);
  });

  test('a root that is only a container (no snapshots of its own) is replicated through its children, quietly', async () => {
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
  });
});
