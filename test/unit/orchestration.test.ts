import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import {
  CommandError,
  ConflictError,
  FailureError,
  LockedError,
  type ReplicateError,
  UsageError,
} from '../../src/errors/errors.js';
import { createLogger } from '../../src/log/logger.js';
import { bookmarkPrefix } from '../../src/replication/bookmarks.js';
import { CLAIM_PROPERTY, claimOf } from '../../src/replication/claim.js';
import { judgeClocks, sourceNowSeconds } from '../../src/replication/clock.js';
import { type HoldMove, moveHolds, moveHoldsTogether } from '../../src/replication/holds.js';
import { runOnce } from '../../src/replication/run-once.js';
import { HOLD_GATHERING_MS, TREE_LISTING_REUSE_MS, runTree } from '../../src/replication/run-tree.js';
import type { ReplicationContext, ReplicationSettings, RunOutcome } from '../../src/replication/types.js';
import {
  FUSE_FEATURES,
  FakeStreams,
  FakeZfsHost,
  OPENZFS_FEATURES,
  recordingLogger,
  streamError,
} from '../fakes/fake-zfs.js';

// The root-free tier of the orchestration: runOnce, runTree, moving holds, expiry and bookmarks against
// in-memory hosts. The zfs-fuse and OpenZFS tiers remain the proof on real ZFS; this tier catches a broken
// order of operations in seconds.

const DAY = 86_400;
const NOW = 1_800_000_000;
const TAG = 'offsite';

function setup(features = FUSE_FEATURES) {
  const journal: string[] = [];
  const remote = new FakeZfsHost('alpha', features, journal).create('tank').create('tank/src');
  const local = new FakeZfsHost('local', features, journal).create('backup');
  const streams = new FakeStreams(remote, local);
  const log = recordingLogger();
  const printed: string[] = [];
  const context: ReplicationContext = {
    remote,
    local,
    streams,
    log,
    print: (line) => printed.push(line),
    cancelSignal: new AbortController().signal,
    now: () => new Date(NOW * 1000),
  };
  const settings: ReplicationSettings = {
    remoteDataset: 'tank/src',
    localDataset: 'backup/copy/src',
    tag: TAG,
    keepSeconds: 30 * DAY,
    keepLabel: '30 days',
    rollback: false,
    dryRun: false,
    raw: true,
  };
  return { remote, local, streams, log, printed, context, settings };
}

/** Snapshots s1..sN on the remote, one a day, the newest `newestAgeDays` old. */
function series(remote: FakeZfsHost, count: number, newestAgeDays = 0, dataset = 'tank/src') {
  for (let index = 1; index <= count; index++) {
    remote.snapshot(dataset, `s${index}`, NOW - (count - index + newestAgeDays) * DAY);
  }
}

/** Tagged snapshots on a host, by name. */
function tagged(host: FakeZfsHost, dataset: string): string[] {
  return host.snapshotNames(dataset).filter((name) => host.tagsOf(dataset, name).includes(TAG));
}

/**
 * The promise: once a pair has a held common snapshot, at every instant some snapshot with the same guid
 * carries the tag on both sides. Checked after every single change either host makes.
 */
function watchCommonHeld(remote: FakeZfsHost, local: FakeZfsHost, remoteDataset: string, localDataset: string) {
  const violations: string[] = [];
  const check = () => {
    const heldGuids = (host: FakeZfsHost, dataset: string) =>
      new Set(
        (host.datasets.get(dataset)?.snapshots ?? [])
          .filter((snapshot) => snapshot.holds.includes(TAG))
          .map((snapshot) => snapshot.guid),
      );
    const remoteHeld = heldGuids(remote, remoteDataset);
    const both = [...heldGuids(local, localDataset)].some((guid) => remoteHeld.has(guid));
    if (!both) violations.push(`${[...remote.events, ...local.events].at(-1)}`);
  };
  // Chained, so that several pairs (a tree's members) can be watched at once.
  for (const host of [remote, local]) {
    const earlier = host.onChange;
    host.onChange = () => {
      earlier?.();
      check();
    };
  }
  return violations;
}

describe('runOnce', () => {
  test('an initial run creates the parents, receives everything and holds only the newest on both sides', async () => {
    const { remote, local, streams, context, settings } = setup();
    series(remote, 3);
    const outcome = await runOnce(settings, context);
    assert.equal(outcome.received, true);
    assert.equal(outcome.receivedSnapshots, 3, 'what the run did, for its record');
    assert.equal(outcome.tagAt, 's3');
    assert.equal(outcome.newest?.name, 's3');
    assert.deepEqual(local.snapshotNames('backup/copy/src'), ['s1', 's2', 's3']);
    assert.ok(local.events.includes('local: create backup/copy'), 'the parent is created');
    assert.deepEqual(
      streams.sent.map((argv) => argv.slice(2)),
      [['tank/src@s1'], ['-I', 'tank/src@s1', 'tank/src@s3']],
    );
    assert.deepEqual(tagged(remote, 'tank/src'), ['s3']);
    assert.deepEqual(tagged(local, 'backup/copy/src'), ['s3']);
  });

  test('an incremental run holds the new base on both sides before releasing the old one', async () => {
    const { remote, local, context, settings } = setup();
    series(remote, 2);
    await runOnce(settings, context);
    remote.snapshot('tank/src', 's3', NOW);
    remote.snapshot('tank/src', 's4', NOW);
    const violations = watchCommonHeld(remote, local, 'tank/src', 'backup/copy/src');
    await runOnce(settings, context);
    assert.deepEqual(violations, [], 'a moment without a held common snapshot');
    assert.deepEqual(tagged(remote, 'tank/src'), ['s4']);
    assert.deepEqual(tagged(local, 'backup/copy/src'), ['s4']);
    const order = remote.journal;
    const newHeld = order.indexOf('local: hold offsite backup/copy/src@s4');
    assert.ok(newHeld >= 0 && order.indexOf('alpha: release offsite tank/src@s2') > newHeld, order.join('\n'));
  });

  test('a no-op run sends nothing and repairs a hold removed by hand, with a warning', async () => {
    const { remote, local, streams, log, context, settings } = setup();
    series(remote, 2);
    await runOnce(settings, context);
    await local.release(TAG, 'backup/copy/src', 's2');
    const sent = streams.sent.length;
    const { received } = await runOnce(settings, context);
    assert.equal(received, false);
    assert.equal(streams.sent.length, sent);
    assert.deepEqual(tagged(local, 'backup/copy/src'), ['s2']);
    assert.ok(log.lines.some((line) => /^warn: repaired: hold "offsite" was missing/.test(line)));
  });

  test('holds move on both sides at once, and no release starts before both holds are in place', async () => {
    const { remote, local, log } = setup();
    local.create('backup/copy');
    const events: string[] = [];
    const sides = [
      { zfs: remote, dataset: 'tank/src' },
      { zfs: local, dataset: 'backup/copy' },
    ].map(({ zfs, dataset }) => {
      zfs.snapshot(dataset, 's1', NOW - DAY);
      zfs.snapshot(dataset, 's2', NOW);
      const hold = zfs.hold.bind(zfs);
      const release = zfs.release.bind(zfs);
      zfs.hold = async (...args) => {
        events.push(`${zfs.label} hold starts`);
        // The remote's round trip is the slow one.
        if (zfs === remote) await new Promise((resolve) => setTimeout(resolve, 30));
        const result = await hold(...args);
        events.push(`${zfs.label} hold ends`);
        return result;
      };
      zfs.release = async (...args) => {
        events.push(`${zfs.label} release`);
        return release(...args);
      };
      return { zfs, dataset };
    });
    for (const { zfs, dataset } of sides) await zfs.hold(TAG, dataset, 's1');
    events.length = 0;
    const held = await Promise.all(sides.map(async ({ zfs, dataset }) => (await zfs.state(dataset)).snapshots));
    await moveHolds({
      tag: TAG,
      sides: sides.map(({ zfs, dataset }, index) => ({
        zfs,
        dataset,
        keep: held[index]!.at(-1)!,
        snapshots: held[index]!,
      })),
      expectNew: true,
      log,
    });
    assert.deepEqual(events, [
      'alpha hold starts',
      'local hold starts',
      'local hold ends',
      'alpha hold ends',
      'alpha release',
      'local release',
    ]);
    for (const { zfs, dataset } of sides) assert.deepEqual(tagged(zfs, dataset), ['s2']);
  });

  test('expiry destroys old snapshots after releasing their remote twins, never the base however old', async () => {
    const { remote, local, context, settings } = setup();
    series(remote, 5, 40);
    await runOnce({ ...settings, keepSeconds: 100 * DAY }, context);
    await remote.hold('downstream', 'tank/src', 's2');
    // Old snapshots that still carry our tag on the remote (as a crashed run could leave them).
    await remote.hold(TAG, 'tank/src', 's1');
    const violations = watchCommonHeld(remote, local, 'tank/src', 'backup/copy/src');
    const outcome = await runOnce(settings, context);
    assert.equal(outcome.expiredSnapshots, 4, 'the four destroyed, for the record');
    assert.equal(outcome.receivedSnapshots, 0);
    assert.deepEqual(violations, []);
    assert.deepEqual(local.snapshotNames('backup/copy/src'), ['s5'], 'the base survives, 40 days old');
    assert.deepEqual(remote.snapshotNames('tank/src'), ['s1', 's2', 's3', 's4', 's5'], 'the source is never pruned');
    assert.deepEqual(remote.tagsOf('tank/src', 's2'), ['downstream'], "another tag's hold stays");
    assert.deepEqual(tagged(remote, 'tank/src'), ['s5']);
  });

  test('an initial sync holds its first snapshot at the source before sending it, and a stop after the stream holds it on both sides', async () => {
    for (const count of [1, 3]) {
      const { remote, local, streams, context, settings } = setup();
      series(remote, count);
      const controller = new AbortController();
      // The stop comes as the first stream has landed (a SIGTERM while zfs recv ends).
      const stopping = {
        ...context,
        cancelSignal: controller.signal,
        streams: {
          summary: streams.summary,
          run: async (...args: Parameters<FakeStreams['run']>) => {
            await streams.run(...args);
            controller.abort();
            throw new Error('transfer interrupted');
          },
        },
      };
      await assert.rejects(runOnce(settings, stopping), /interrupted/);
      const journal = remote.journal;
      const held = journal.indexOf(`alpha: hold ${TAG} tank/src@s1`);
      assert.ok(held >= 0 && held < journal.indexOf('local: create backup/copy'), journal.join('\n'));
      assert.deepEqual(tagged(remote, 'tank/src'), ['s1'], `${count} snapshots`);
      assert.deepEqual(tagged(local, 'backup/copy/src'), ['s1'], `${count} snapshots`);
    }
  });

  test("a replica's protective properties that nobody set are set once, dry-run says so; set values are kept", async () => {
    const { remote, local, log, printed, context, settings } = setup();
    series(remote, 2);
    await runOnce(settings, context);
    // As a zfs-fuse initial sync stopped right after its full receive leaves it: no properties, no claim.
    const properties = local.datasets.get('backup/copy/src')!.properties;
    properties.clear();
    properties.set('canmount', 'on');
    await runOnce({ ...settings, dryRun: true }, context);
    assert.ok(
      printed.includes('would set readonly=on, com.sun:auto-snapshot=false on backup/copy/src (not set yet)'),
      printed.join('\n'),
    );
    assert.equal(properties.get('readonly'), undefined, 'the dry run set nothing');
    await runOnce(settings, context);
    assert.equal(properties.get('readonly'), 'on');
    assert.equal(properties.get('com.sun:auto-snapshot'), 'false');
    assert.equal(properties.get('canmount'), 'on', 'a value someone set is kept');
    assert.equal(log.lines.filter((line) => /^warn: set readonly=on/.test(line)).length, 1);
    remote.snapshot('tank/src', 's3', NOW);
    await runOnce(settings, context);
    assert.equal(log.lines.filter((line) => /^warn: set readonly=on/.test(line)).length, 1, 'once only');
  });

  test('an initial sync whose full stream fails with nothing kept leaves no hold at the source', async () => {
    const { remote, local, streams, context, settings } = setup();
    series(remote, 2);
    const failing = {
      ...context,
      streams: {
        summary: streams.summary,
        run: async () => {
          throw streamError('send', 'Connection reset by peer');
        },
      },
    };
    await assert.rejects(runOnce(settings, failing), /Connection reset/);
    assert.deepEqual(tagged(remote, 'tank/src'), []);
    assert.ok(remote.events.includes(`alpha: hold ${TAG} tank/src@s1`), 'it was held while it travelled');
    assert.equal(local.datasets.has('backup/copy/src'), false);
  });

  test("an incremental's newest snapshot is held at the source before it travels: the source's pruning cannot take it mid-stream", async () => {
    const { remote, local, streams, context, settings } = setup();
    series(remote, 1);
    await runOnce(settings, context);
    remote.snapshot('tank/src', 's2', NOW);
    remote.snapshot('tank/src', 's3', NOW);
    let pruned: Map<string, unknown> | undefined;
    const pruning = {
      ...context,
      streams: {
        summary: streams.summary,
        // The source's own retention (or, in a chain, the upstream hop's expiry) runs while the stream flows.
        run: async (...args: Parameters<FakeStreams['run']>) => {
          pruned = await remote.destroySnapshots('tank/src', ['s2', 's3']);
          return streams.run(...args);
        },
      },
    };
    const violations = watchCommonHeld(remote, local, 'tank/src', 'backup/copy/src');
    await runOnce(settings, pruning);
    assert.deepEqual(violations, []);
    assert.equal(pruned?.get('s3') && (pruned.get('s3') as { outcome: string }).outcome, 'held');
    assert.deepEqual(tagged(remote, 'tank/src'), ['s3']);
    assert.deepEqual(tagged(local, 'backup/copy/src'), ['s3']);
    remote.snapshot('tank/src', 's4', NOW);
    await runOnce(settings, context);
    assert.deepEqual(tagged(local, 'backup/copy/src'), ['s4'], 'the next run goes on incrementally');
  });

  test("an incremental that fails with nothing arrived takes its hold off the source's newest snapshot again", async () => {
    for (const features of [FUSE_FEATURES, OPENZFS_FEATURES]) {
      const { remote, streams, context, settings } = setup(features);
      series(remote, 1);
      await runOnce(settings, context);
      remote.snapshot('tank/src', 's2', NOW);
      streams.failAfterSnapshots = 0;
      await assert.rejects(runOnce(settings, context), /transfer failed: send/);
      assert.ok(remote.events.includes(`alpha: hold ${TAG} tank/src@s2`), 'it was held while it travelled');
      assert.deepEqual(tagged(remote, 'tank/src'), ['s1'], features.zfsVersion ?? 'zfs-fuse');
    }
  });

  test('a run interrupted while its holds moved neither bookmarks nor expires', async () => {
    const { remote, local, context, settings } = setup(OPENZFS_FEATURES);
    series(remote, 3);
    await runOnce(settings, context);
    remote.snapshot('tank/src', 's4', NOW);
    const controller = new AbortController();
    const interrupted = {
      ...context,
      cancelSignal: controller.signal,
      holdMover: async (move: HoldMove) => {
        await moveHolds(move);
        controller.abort();
      },
    };
    const shortKeep = { ...settings, keepSeconds: DAY / 2 };
    await assert.rejects(runOnce(shortKeep, interrupted), /stopped after moving the holds \(no bookmark, no expiry\)/);
    assert.deepEqual(local.snapshotNames('backup/copy/src'), ['s1', 's2', 's3', 's4']);
    assert.ok(!remote.events.some((event) => event.includes('bookmark tank/src@s4')), remote.events.join('\n'));
    await runOnce(shortKeep, context);
    assert.deepEqual(local.snapshotNames('backup/copy/src'), ['s3', 's4'], 'the same run, uninterrupted, expires');
  });

  test('a stop during expiry ends it between two snapshots, and the run ends as stopped', async () => {
    const { remote, local, context, settings } = setup();
    series(remote, 6, 40);
    await runOnce({ ...settings, keepSeconds: 100 * DAY }, context);
    const controller = new AbortController();
    // An operator's Ctrl-C on a wrong --keep, as the first snapshot goes.
    local.onChange = () => {
      if (local.events.at(-1)?.includes(': destroy ')) controller.abort();
    };
    await assert.rejects(
      runOnce({ ...settings, keepSeconds: DAY }, { ...context, cancelSignal: controller.signal }),
      (error: unknown) =>
        error instanceof FailureError &&
        error.code === 'EINTERRUPTED' &&
        /stopped during expiry \(1 expired, 4 left for the next run\)/.test(error.message),
    );
    assert.deepEqual(local.snapshotNames('backup/copy/src'), ['s2', 's3', 's4', 's5', 's6']);
  });

  test('expiry keeps a local snapshot held by another tag and says so', async () => {
    const { remote, local, log, context, settings } = setup();
    series(remote, 3, 40);
    await runOnce({ ...settings, keepSeconds: 100 * DAY }, context);
    await local.hold('gamma', 'backup/copy/src', 's1');
    await runOnce(settings, context);
    assert.deepEqual(local.snapshotNames('backup/copy/src'), ['s1', 's3']);
    assert.ok(log.lines.some((line) => /kept backup\/copy\/src@s1 past keep: another hold protects it/.test(line)));
  });

  test('expiry keeps a snapshot a clone depends on, names the clone, and expires the others', async () => {
    const { remote, local, log, context, settings } = setup();
    series(remote, 5, 40);
    await runOnce({ ...settings, keepSeconds: 100 * DAY }, context);
    local.clone('backup/copy/src', 's2', 'backup/restore');
    const outcome = await runOnce(settings, context);
    assert.deepEqual(local.snapshotNames('backup/copy/src'), ['s2', 's5']);
    assert.equal(outcome.expiredSnapshots, 3);
    assert.ok(
      log.lines.some((line) => /kept backup\/copy\/src@s2 past keep: backup\/restore depends on it/.test(line)),
      log.lines.join('\n'),
    );
  });

  test('after a transfer lost with the connection, expiry destroys nothing, even snapshots with no twin left', async () => {
    const { remote, local, log, streams, context, settings } = setup();
    series(remote, 3, 40);
    await runOnce({ ...settings, keepSeconds: 100 * DAY }, context);
    // The source pruned its own old snapshots: the replica's are past keep and have no twin to release.
    await remote.destroySnapshots('tank/src', ['s1', 's2']);
    remote.snapshot('tank/src', 's4', NOW);
    const cut = {
      ...context,
      streams: {
        summary: streams.summary,
        run: async () => {
          for (const operation of ['state', 'hold', 'release']) remote.failing.add(operation);
          throw streamError('send', 'Connection reset by peer');
        },
      },
    };
    await assert.rejects(runOnce({ ...settings, keepSeconds: DAY }, cut), /Connection reset/);
    assert.deepEqual(local.snapshotNames('backup/copy/src'), ['s1', 's2', 's3']);
    assert.ok(
      log.lines.some((line) =>
        /^error: expiry skipped, nothing destroyed: alpha:tank\/src could not be listed/.test(line),
      ),
      log.lines.join('\n'),
    );
    remote.failing.clear();
    await runOnce({ ...settings, keepSeconds: DAY }, context);
    assert.deepEqual(local.snapshotNames('backup/copy/src'), ['s4'], 'the next run expires them');
  });

  test('when the remote cannot release its hold, expiry destroys nothing and the run fails', async () => {
    const { remote, local, context, settings } = setup(OPENZFS_FEATURES);
    series(remote, 3, 40);
    await runOnce({ ...settings, keepSeconds: 100 * DAY }, context);
    await remote.hold('downstream', 'tank/src', 's1');
    remote.failing.add('release');
    await assert.rejects(runOnce(settings, context), (error: unknown) => {
      assert.ok(error instanceof FailureError);
      assert.equal(error.code, 'EEXPIRY');
      return true;
    });
    assert.deepEqual(local.snapshotNames('backup/copy/src'), ['s1', 's2', 's3']);
  });

  test('after a cut transfer the tag moves to the newest snapshot that arrived, which expiry keeps however old', async () => {
    const { remote, local, streams, context, settings } = setup();
    series(remote, 2, 40);
    await runOnce({ ...settings, keepSeconds: 100 * DAY }, context);
    // Received snapshots keep the sender's creation time: these arrive already older than keep.
    remote.snapshot('tank/src', 's3', NOW - 35 * DAY);
    remote.snapshot('tank/src', 's4', NOW - 34 * DAY);
    streams.failAfterSnapshots = 1;
    const violations = watchCommonHeld(remote, local, 'tank/src', 'backup/copy/src');
    await assert.rejects(runOnce(settings, context), /transfer failed: send/);
    assert.deepEqual(violations, []);
    assert.ok(local.snapshotNames('backup/copy/src').includes('s3'), 'the newest common snapshot is never expired');
    assert.deepEqual(tagged(local, 'backup/copy/src'), ['s3']);
    assert.deepEqual(tagged(remote, 'tank/src'), ['s3']);
    await runOnce(settings, context);
    assert.deepEqual(local.snapshotNames('backup/copy/src'), ['s4']);
  });

  test('an initial sync whose incremental rest is cut leaves the tag on the newest snapshot that arrived, only there', async () => {
    // Cut before any snapshot of the rest (the first one is the common one), or after one.
    for (const [arrived, held] of [
      [0, ['s1']],
      [1, ['s1', 's2']],
    ] as const) {
      const { remote, local, streams, context, settings } = setup();
      series(remote, 4);
      const cut = streams.run.bind(streams);
      let calls = 0;
      streams.run = async (send, recv, options) => {
        calls++;
        if (calls === 2) streams.failAfterSnapshots = arrived;
        return cut(send, recv, options);
      };
      await assert.rejects(runOnce(settings, context), /transfer failed/);
      assert.deepEqual(local.snapshotNames('backup/copy/src'), held);
      assert.deepEqual(tagged(local, 'backup/copy/src'), [held.at(-1)]);
      assert.deepEqual(tagged(remote, 'tank/src'), [held.at(-1)], `cut after ${arrived}`);
    }
  });

  test('when the source loses our base, the newest common snapshot is held on both sides before the conflict', async () => {
    const { remote, local, context, settings } = setup();
    series(remote, 5);
    await runOnce(settings, context);
    // An admin releases our tag at the source and destroys the base; newer snapshots follow.
    await remote.release(TAG, 'tank/src', 's5');
    await remote.destroySnapshots('tank/src', ['s5']);
    remote.snapshot('tank/src', 's6', NOW);
    await assert.rejects(runOnce(settings, context), { code: 'EDIVERGED' });
    assert.deepEqual(tagged(remote, 'tank/src'), ['s4']);
    assert.ok(tagged(local, 'backup/copy/src').includes('s4'));
    // --rollback is the way out: our own tag on the local-only @s5 does not block it.
    await runOnce({ ...settings, rollback: true }, context);
    assert.deepEqual(local.snapshotNames('backup/copy/src'), ['s1', 's2', 's3', 's4', 's6']);
    assert.deepEqual(tagged(local, 'backup/copy/src'), ['s6']);
    assert.deepEqual(tagged(remote, 'tank/src'), ['s6']);
  });

  test('--rollback is refused when a local-only snapshot carries another tag, and nothing is destroyed', async () => {
    const { remote, local, context, settings } = setup();
    series(remote, 2);
    await runOnce(settings, context);
    local.snapshot('backup/copy/src', 'local-only', NOW);
    await local.hold('downstream', 'backup/copy/src', 'local-only');
    remote.snapshot('tank/src', 's3', NOW);
    await assert.rejects(runOnce({ ...settings, rollback: true }, context), (error: unknown) => {
      assert.ok(error instanceof ConflictError);
      assert.equal(error.code, 'EHELD');
      assert.match(error.message, /@local-only carries a hold of another tag/);
      return true;
    });
    assert.deepEqual(local.snapshotNames('backup/copy/src'), ['s1', 's2', 'local-only']);
    assert.deepEqual(tagged(remote, 'tank/src'), ['s2'], "the source's newest is not left pinned while it waits");
  });

  test('--rollback over a snapshot a clone depends on is a conflict, found before anything changes, dry or not', async () => {
    const { remote, local, context, settings } = setup();
    series(remote, 2);
    await runOnce(settings, context);
    local.snapshot('backup/copy/src', 'local-only', NOW);
    await local.hold(TAG, 'backup/copy/src', 'local-only');
    local.clone('backup/copy/src', 'local-only', 'backup/restore');
    remote.snapshot('tank/src', 's3', NOW);
    const before = [remote.events.length, local.events.length];
    for (const dryRun of [true, false]) {
      await assert.rejects(runOnce({ ...settings, rollback: true, dryRun }, context), (error: unknown) => {
        assert.ok(error instanceof ConflictError);
        assert.equal(error.code, 'ECLONED');
        assert.match(error.message, /backup\/restore depends on @local-only, which the rollback would destroy/);
        return true;
      });
    }
    assert.deepEqual([remote.events.length, local.events.length], before);
    assert.deepEqual(tagged(local, 'backup/copy/src'), ['s2', 'local-only']);
  });

  test('a replica emptied by zfs promote of a clone (a restore) says where its snapshots went and the way back', async () => {
    const { remote, local, context, settings } = setup();
    series(remote, 2);
    await runOnce(settings, context);
    // zfs clone backup/copy/src@s2 backup/restore; zfs promote backup/restore
    local.create('backup/restore');
    local.datasets.get('backup/restore')!.snapshots = local.datasets.get('backup/copy/src')!.snapshots;
    local.datasets.get('backup/copy/src')!.snapshots = [];
    await local.setProperty('backup/copy/src', 'origin', 'backup/restore@s2');
    await assert.rejects(runOnce(settings, context), (error: unknown) => {
      assert.ok(error instanceof ConflictError);
      assert.equal(error.code, 'ENOTREPLICA');
      assert.match(
        error.message,
        /zfs promote gave its history to backup\/restore .*; zfs promote backup\/copy\/src takes it back/,
      );
      return true;
    });
    // With a local-only snapshot left on it (a clone of that was promoted), it is ENOCOMMON: the same way back.
    local.snapshot('backup/copy/src', 'local2', NOW);
    await assert.rejects(runOnce(settings, context), (error: unknown) => {
      assert.ok(error instanceof ConflictError);
      assert.equal(error.code, 'ENOCOMMON');
      assert.match(error.message, /zfs promote backup\/copy\/src takes it back/);
      return true;
    });
    // The source lost those snapshots too: taking the history back would not help, and it is not said.
    remote.datasets.get('tank/src')!.snapshots = [];
    remote.snapshot('tank/src', 's9', NOW);
    await assert.rejects(runOnce(settings, context), (error: unknown) => {
      assert.ok(error instanceof ConflictError);
      assert.equal(error.code, 'ENOCOMMON');
      assert.doesNotMatch(error.message, /zfs promote/);
      return true;
    });
  });

  test('a diverged replica is a conflict, and nothing changes on either side', async () => {
    const { remote, local, context, settings } = setup();
    series(remote, 2);
    await runOnce(settings, context);
    local.snapshot('backup/copy/src', 'local-only', NOW);
    remote.snapshot('tank/src', 's3', NOW);
    const before = [remote.events.length, local.events.length];
    await assert.rejects(runOnce(settings, context), (error: unknown) => {
      assert.ok(error instanceof ConflictError);
      assert.equal(error.code, 'EDIVERGED');
      return true;
    });
    assert.deepEqual([remote.events.length, local.events.length], before);
  });

  test('a modified replica is EMODIFIED; --rollback then continues and restores readonly', async () => {
    const { remote, local, context, settings } = setup();
    series(remote, 2);
    await runOnce(settings, context);
    local.dataset('backup/copy/src').modified = true;
    remote.snapshot('tank/src', 's3', NOW);
    await assert.rejects(runOnce(settings, context), { code: 'EMODIFIED' });
    await runOnce({ ...settings, rollback: true }, context);
    assert.deepEqual(local.snapshotNames('backup/copy/src'), ['s1', 's2', 's3']);
    assert.ok(local.events.includes('local: set readonly=on backup/copy/src'));
  });

  test("a replica's first run that meets EMODIFIED holds the common snapshot on both sides meanwhile", async () => {
    const { remote, local, log, context, settings } = setup();
    series(remote, 2);
    // Received by hand (or by the ancestor): nothing holds it, and it was written to since.
    local.receive('backup/copy/src', remote.dataset('tank/src').snapshots, 'filesystem');
    local.dataset('backup/copy/src').modified = true;
    remote.snapshot('tank/src', 's3', NOW);
    await assert.rejects(runOnce(settings, context), { code: 'EMODIFIED' });
    assert.deepEqual(tagged(remote, 'tank/src'), ['s2']);
    assert.deepEqual(tagged(local, 'backup/copy/src'), ['s2']);
    assert.ok(log.lines.some((line) => /^warn: held the newest common snapshot @s2/.test(line)));
    await runOnce({ ...settings, rollback: true }, context);
    assert.deepEqual(tagged(remote, 'tank/src'), ['s3']);
  });

  test("a conflict's hold refused on the source still holds the replica's side, and the conflict stays exit 4", async () => {
    const { remote, local, log, context, settings } = setup();
    series(remote, 2);
    local.receive('backup/copy/src', remote.dataset('tank/src').snapshots, 'filesystem');
    local.snapshot('backup/copy/src', 'mine', NOW);
    remote.failing.add('hold');
    await assert.rejects(runOnce(settings, context), { code: 'EDIVERGED' });
    assert.deepEqual(tagged(local, 'backup/copy/src'), ['s2']);
    assert.ok(log.lines.some((line) => /^warn: could not hold the newest common snapshot @s2/.test(line)));
  });

  test('--rollback left in a crontab line rolls back only what was written since the base (OpenZFS: written)', async () => {
    const { remote, local, log, context, settings } = setup(OPENZFS_FEATURES);
    series(remote, 2);
    await runOnce(settings, context);
    remote.snapshot('tank/src', 's3', NOW);
    await runOnce({ ...settings, rollback: true }, context);
    assert.ok(!local.events.some((event) => event.includes('rollback')), local.events.join('\n'));
    assert.ok(!log.lines.some((line) => line.startsWith('warn:')), log.lines.join('\n'));
    local.dataset('backup/copy/src').modified = true;
    remote.snapshot('tank/src', 's4', NOW);
    await runOnce({ ...settings, rollback: true }, context);
    assert.ok(local.events.includes('local: rollback backup/copy/src@s3'));
    assert.ok(log.lines.some((line) => /^warn: rolled .* back to @s3, discarding 4096 bytes written since/.test(line)));
    assert.deepEqual(local.snapshotNames('backup/copy/src'), ['s1', 's2', 's3', 's4']);
  });

  test('a dry-run changes nothing and reports the sends, the holds and the expiry', async () => {
    const { remote, local, streams, printed, context, settings } = setup();
    series(remote, 3, 40);
    await runOnce({ ...settings, dryRun: true }, context);
    assert.equal(streams.sent.length, 0);
    assert.deepEqual([...remote.events, ...local.events], []);
    assert.ok(printed.includes('would create parent dataset backup/copy (zfs create -p)'), printed.join('\n'));
    assert.ok(printed.some((line) => line.startsWith('would receive a full stream of alpha:tank/src@s3')));
    assert.ok(printed.some((line) => /^keeps @s3: the newest common snapshot/.test(line)));
    // An initial sync of several snapshots holds the first while the rest travels, then releases it.
    const several = setup();
    series(several.remote, 3);
    await runOnce({ ...several.settings, dryRun: true }, several.context);
    const release = `would release "${TAG}" from @s1 on both sides (held while the rest of the initial sync travels)`;
    assert.ok(several.printed.includes(release), several.printed.join('\n'));
    await runOnce(several.settings, several.context);
    assert.ok(several.remote.events.includes(`alpha: release ${TAG} tank/src@s1`));
    assert.ok(several.local.events.includes(`local: release ${TAG} backup/copy/src@s1`));
  });
});

describe('never harm the source or another replica', () => {
  test('a remote that is the local dataset itself (an alias of this host) is refused by guid; nothing changes', async () => {
    const { remote, context, settings } = setup();
    series(remote, 3, 40);
    const sameHost = { ...context, local: remote };
    await assert.rejects(
      runOnce({ ...settings, localDataset: 'tank/src', keepSeconds: DAY }, sameHost),
      (error: unknown) => error instanceof UsageError && /are the same dataset/.test(error.message),
    );
    assert.deepEqual(remote.events, []);
    assert.deepEqual(remote.snapshotNames('tank/src'), ['s1', 's2', 's3']);
    // A replica of its own that the job names as its source: the same dataset still, not "a replica upstream".
    remote.datasets.get('tank/src')!.properties.set(CLAIM_PROPERTY, claimOf('77', TAG, 'tank/src'));
    await assert.rejects(
      runOnce({ ...settings, localDataset: 'tank/src' }, sameHost),
      (error: unknown) => error instanceof UsageError && /are the same dataset/.test(error.message),
    );
  });

  test('a source restored from this replica (zfs send -R: its claim came along) is refused, naming the way out', async () => {
    const { remote, local, context, settings } = setup();
    series(remote, 2);
    await runOnce(settings, context);
    // The source is rebuilt from the backup with zfs send -R: it now carries the replica's own claim.
    const replicaClaim = local.datasets.get('backup/copy/src')!.properties.get(CLAIM_PROPERTY)!;
    await remote.setProperty('tank/src', CLAIM_PROPERTY, replicaClaim);
    remote.snapshot('tank/src', 's3', NOW);
    await assert.rejects(runOnce(settings, context), (error: unknown) => {
      assert.ok(error instanceof UsageError);
      assert.match(
        error.message,
        /^alpha:tank\/src carries the claim of this replica, backup\/copy\/src, with tag "offsite": it was restored from it .*; run zfs inherit -r zfs_replicate:pull tank\/src on alpha,/,
      );
      return true;
    });
    assert.deepEqual(local.snapshotNames('backup/copy/src'), ['s1', 's2']);
    // Once the source is freed of it, the job goes on.
    remote.datasets.get('tank/src')!.properties.delete(CLAIM_PROPERTY);
    await runOnce(settings, context);
    assert.deepEqual(local.snapshotNames('backup/copy/src'), ['s1', 's2', 's3']);
  });

  for (const features of [FUSE_FEATURES, OPENZFS_FEATURES])
    test(`a source restored from this replica by a plain send (a new dataset, none of our holds) goes on incrementally, repairing its hold (${features.openzfs ? 'OpenZFS' : 'zfs-fuse'})`, async () => {
      const { remote, local, log, context, settings } = setup(features);
      series(remote, 2);
      await runOnce(settings, context);
      // The README's restore: the source is destroyed, then received again from the backup.
      remote.datasets.delete('tank/src');
      remote.receive('tank/src', local.dataset('backup/copy/src').snapshots, 'filesystem');
      remote.snapshot('tank/src', 's3', NOW);
      await runOnce(settings, context);
      assert.deepEqual(local.snapshotNames('backup/copy/src'), ['s1', 's2', 's3']);
      assert.deepEqual([remote.tagsOf('tank/src', 's3'), local.tagsOf('backup/copy/src', 's3')], [[TAG], [TAG]]);
      assert.deepEqual(local.tagsOf('backup/copy/src', 's2'), []);
      assert.ok(log.lines.some((line) => /^warn: alpha:tank\/src is another dataset than the one/.test(line)));
      // The claim now names the new source: the next run is an ordinary one.
      log.lines.length = 0;
      await runOnce(settings, context);
      assert.deepEqual(
        log.lines.filter((line) => line.startsWith('warn')),
        [],
      );
    });

  test("a receiving run asks the source for one hold: the new base's, before its stream", async () => {
    const { remote, context, settings } = setup();
    series(remote, 2);
    await runOnce(settings, context);
    remote.snapshot('tank/src', 's3', NOW);
    const asked: string[] = [];
    const hold = remote.hold.bind(remote);
    remote.hold = (tag, dataset, snapshot) => {
      asked.push(snapshot);
      return hold(tag, dataset, snapshot);
    };
    await runOnce(settings, context);
    assert.deepEqual(asked, ['s3']);
    assert.deepEqual(remote.tagsOf('tank/src', 's3'), [TAG]);
  });

  for (const restored of [true, false])
    test(`a base the source does not hold (${restored ? 'a source restored from its backup' : 'its hold released by hand'}) is held there before the stream: a failed transfer leaves it held`, async () => {
      const { remote, local, streams, log, context, settings } = setup();
      series(remote, 2);
      await runOnce(settings, context);
      if (restored) {
        remote.datasets.delete('tank/src');
        remote.receive('tank/src', local.dataset('backup/copy/src').snapshots, 'filesystem');
      } else await remote.release(TAG, 'tank/src', 's2');
      remote.snapshot('tank/src', 's3', NOW);
      streams.failAfterSnapshots = 0;
      await assert.rejects(runOnce(settings, context), /transfer failed/);
      assert.deepEqual([tagged(remote, 'tank/src'), tagged(local, 'backup/copy/src')], [['s2'], ['s2']]);
      assert.equal(log.lines.filter((line) => /repaired: hold/.test(line)).length, restored ? 0 : 1);
      // The next run moves the tag on and leaves no hold behind.
      streams.failAfterSnapshots = undefined;
      await runOnce(settings, context);
      assert.deepEqual([tagged(remote, 'tank/src'), tagged(local, 'backup/copy/src')], [['s3'], ['s3']]);
    });

  test('adopting an up-to-date replica received by hand adds its holds without calling them repairs', async () => {
    const { remote, local, log, context, settings } = setup();
    series(remote, 2);
    local.create('backup/copy');
    local.receive('backup/copy/src', remote.dataset('tank/src').snapshots, 'filesystem');
    await runOnce(settings, context);
    assert.deepEqual([remote.tagsOf('tank/src', 's2'), local.tagsOf('backup/copy/src', 's2')], [[TAG], [TAG]]);
    assert.deepEqual(
      log.lines.filter((line) => /repaired/.test(line)),
      [],
    );
  });

  test('a source that is a replica of this very replica (a direction reversed, the old line left) is refused, --rollback too', async () => {
    const { remote, local, context, settings } = setup();
    series(remote, 2);
    await runOnce(settings, context);
    // The reverse job on alpha pulled the backup into tank/src; the backup became the primary and moved on.
    const primaryGuid = local.datasets.get('backup/copy/src')!.guid;
    await remote.setProperty('tank/src', CLAIM_PROPERTY, claimOf(primaryGuid, 'reverse', 'tank/src'));
    local.snapshot('backup/copy/src', 'new1', NOW);
    const changesBefore = [remote.events.length, local.events.length];
    for (const rollback of [false, true])
      await assert.rejects(
        runOnce({ ...settings, rollback }, context),
        (error: unknown) =>
          error instanceof UsageError &&
          /^alpha:tank\/src was replicated from backup\/copy\/src .*remove the old line that pulls into tank\/src .*run zfs inherit -r zfs_replicate:pull tank\/src on alpha, and set its readonly, canmount and com\.sun:auto-snapshot back .*remove this line instead \(see README, Reversing the direction; nothing was changed\)$/.test(
            error.message,
          ),
      );
    assert.deepEqual([remote.events.length, local.events.length], changesBefore);
    assert.deepEqual(local.snapshotNames('backup/copy/src'), ['s1', 's2', 'new1']);
  });

  test('a source that is itself a replica pulled with our tag is refused; with another tag it is not', async () => {
    const { remote, local, log, context, settings } = setup();
    series(remote, 2);
    const upstreamClaim = (tag: string) => claimOf('777', tag, 'tank/src');
    await remote.setProperty('tank/src', CLAIM_PROPERTY, upstreamClaim('offsite'));
    const changesBefore = remote.events.length;
    await assert.rejects(
      runOnce(settings, context),
      (error: unknown) =>
        error instanceof UsageError &&
        /alpha:tank\/src is itself a replica, pulled on alpha with the same tag "offsite"/.test(error.message),
    );
    assert.deepEqual([remote.events.length, local.events], [changesBefore, []]);
    // A claim the source merely inherits names another dataset: not a hop of ours.
    await remote.setProperty('tank/src', CLAIM_PROPERTY, claimOf('777', 'offsite', 'tank'));
    await runOnce(settings, context);
    await remote.setProperty('tank/src', CLAIM_PROPERTY, upstreamClaim('upstream'));
    remote.snapshot('tank/src', 's3', NOW);
    await runOnce(settings, context);
    assert.deepEqual(local.snapshotNames('backup/copy/src'), ['s1', 's2', 's3']);
    // A source's zfs_replicate-serve from before the check refuses the question: the run goes on without it.
    const stderr = 'zfs_replicate-serve: refused: not a command this key may run: zfs get ...';
    remote.propertyOf = async () => {
      throw new CommandError({ command: 'zfs get', where: 'alpha', exitStatus: 126, stderr });
    };
    remote.snapshot('tank/src', 's4', NOW);
    await runOnce(settings, context);
    assert.deepEqual(local.snapshotNames('backup/copy/src'), ['s1', 's2', 's3', 's4']);
    // A source outside the wrapper's prefixes is the run's own error, not an older wrapper.
    const outside = 'zfs_replicate-serve: refused: tank/src is outside the allowed datasets (tank/vm)';
    remote.propertyOf = async () => {
      throw new CommandError({ command: 'zfs get', where: 'alpha', exitStatus: 126, stderr: outside });
    };
    await assert.rejects(runOnce(settings, context), /outside the allowed datasets/);
    assert.equal(
      log.lines.filter((line) => /predates the question/.test(line)).length,
      1,
      'only for the older wrapper',
    );
  });

  test("a tag changed to a downstream host's is refused before it releases that host's holds", async () => {
    for (const features of [FUSE_FEATURES, OPENZFS_FEATURES]) {
      const { remote, local, context, settings } = setup(features);
      series(remote, 3);
      await runOnce(settings, context);
      // gamma pulls from this replica with its own tag; its base here is @s2, older than this job's @s3.
      const replica = local.datasets.get('backup/copy/src')!;
      replica.snapshots.find((snapshot) => snapshot.name === 's2')!.holds.push('gamma');
      remote.snapshot('tank/src', 's4', NOW);
      const before = local.snapshotNames('backup/copy/src');
      const gammaHolds = () => replica.snapshots.filter((snapshot) => snapshot.holds.includes('gamma'));
      for (const dryRun of [true, false]) {
        const changed = runOnce({ ...settings, tag: 'gamma', keepSeconds: 0, dryRun }, context);
        if (dryRun && !features.holdsCommand) await changed;
        else
          await assert.rejects(
            changed,
            /tag "gamma" already holds backup\/copy\/src@s2, and not its twin on the source/,
          );
      }
      // A claim freed with zfs inherit (or a replica received by hand) is asked the same.
      replica.properties.delete(CLAIM_PROPERTY);
      await assert.rejects(runOnce({ ...settings, tag: 'gamma', keepSeconds: 0 }, context), /already holds/);
      assert.deepEqual(local.snapshotNames('backup/copy/src'), before, 'nothing received, nothing expired');
      assert.deepEqual(
        gammaHolds().map((snapshot) => snapshot.name),
        ['s2'],
        "gamma's hold stays; the probe's own are gone",
      );
    }
  });

  test("a tag's own holds on both sides are this job's: the ancestor's replica, a tag changed back, a freed claim", async () => {
    for (const features of [FUSE_FEATURES, OPENZFS_FEATURES]) {
      const { remote, local, context, settings } = setup(features);
      series(remote, 2);
      await runOnce(settings, context);
      await runOnce({ ...settings, tag: 'other' }, context);
      remote.snapshot('tank/src', 's3', NOW);
      // Back to the first tag: its holds from before sit on both sides of @s2.
      await runOnce(settings, context);
      assert.deepEqual(tagged(local, 'backup/copy/src'), ['s3']);
      local.datasets.get('backup/copy/src')!.properties.delete(CLAIM_PROPERTY);
      remote.snapshot('tank/src', 's4', NOW);
      await runOnce(settings, context);
      assert.deepEqual(tagged(remote, 'tank/src'), ['s4'], features.zfsVersion ?? 'zfs-fuse');
    }
  });

  test("a changed tag is said once: the old tag's holds are left to the operator", async () => {
    const { remote, local, log, context, settings } = setup();
    series(remote, 2);
    await runOnce(settings, context);
    const warnings = () => log.lines.filter((line) => line.startsWith('warn:'));
    // The first run under the new tag has nothing new: its hold is no "repair" either.
    await runOnce({ ...settings, tag: 'renamed' }, context);
    for (const round of [1, 2]) {
      remote.snapshot('tank/src', `n${round}`, NOW);
      await runOnce({ ...settings, tag: 'renamed' }, context);
    }
    assert.equal(warnings().length, 1, warnings().join('\n'));
    assert.match(warnings()[0]!, /backup\/copy\/src was replicated from alpha:tank\/src with another tag until now/);
    assert.deepEqual(remote.tagsOf('tank/src', 's2'), [TAG], 'the old hold is not ours to release');
    assert.deepEqual(local.tagsOf('backup/copy/src', 'n2'), ['renamed']);
  });

  test("a source snapshot whose name would be too long under the replica's is refused, dry or not, before anything changes", async () => {
    const { remote, local, context, settings } = setup();
    const long = 'x'.repeat(255 - 'backup/copy/src@'.length + 1);
    remote.snapshot('tank/src', long, NOW);
    for (const dryRun of [true, false]) {
      await assert.rejects(
        runOnce({ ...settings, dryRun }, context),
        (error: unknown) =>
          error instanceof UsageError && /backup\/copy\/src@x+ would be longer than the 255 bytes/.test(error.message),
      );
    }
    assert.deepEqual([...remote.events, ...local.events], []);
  });

  test('a local pool that is not there (a backup disk not imported) stops the run, dry or not, naming it', async () => {
    const { remote, local, context, settings } = setup();
    series(remote, 2);
    for (const dryRun of [true, false]) {
      await assert.rejects(
        runOnce({ ...settings, localDataset: 'offsite/copy/src', dryRun }, context),
        (error: unknown) =>
          error instanceof FailureError &&
          /^the local pool offsite does not exist \(not imported\? zpool import offsite\)/.test(error.message),
      );
    }
    assert.deepEqual(local.events, []);
  });

  test('a second replica of the same source with the same tag is refused, naming the first; another tag is fine', async () => {
    const { remote, local, context, settings } = setup();
    series(remote, 2);
    await runOnce(settings, context);
    remote.snapshot('tank/src', 's3', NOW);
    await assert.rejects(
      runOnce({ ...settings, localDataset: 'backup/second' }, context),
      (error: unknown) =>
        error instanceof UsageError &&
        /backup\/copy\/src already replicates alpha:tank\/src with tag "offsite"/.test(error.message),
    );
    assert.equal(local.datasets.has('backup/second'), false);
    assert.deepEqual(tagged(remote, 'tank/src'), ['s2']);
    await runOnce({ ...settings, localDataset: 'backup/second', tag: 'second' }, context);
    assert.deepEqual(local.snapshotNames('backup/second'), ['s1', 's2', 's3']);
    assert.deepEqual(tagged(remote, 'tank/src'), ['s2'], "the first replica's hold stays where it was");
  });

  test('a replica renamed while its old job still runs is a rival for that job; a copy of a replica is not', async () => {
    const { remote, local, context, settings } = setup();
    series(remote, 2);
    await runOnce(settings, context);
    local.create('backup/copy/src/child');
    // zfs rename backup/copy/src backup/moved (with its child, which inherits the claim)
    for (const [from, to] of [
      ['backup/copy/src', 'backup/moved'],
      ['backup/copy/src/child', 'backup/moved/child'],
    ] as const) {
      local.datasets.set(to, local.datasets.get(from)!);
      local.datasets.delete(from);
    }
    local.datasets.get('backup/moved/child')!.properties.delete(CLAIM_PROPERTY);
    const inherited = local.userProperty.bind(local);
    local.userProperty = async (property, root) => {
      const values = await inherited(property, root);
      const parent = values.get('backup/moved');
      if (property === CLAIM_PROPERTY && parent !== undefined) values.set('backup/moved/child', parent);
      return values;
    };
    remote.snapshot('tank/src', 's3', NOW);
    await assert.rejects(runOnce(settings, context), (error: unknown) => {
      assert.ok(error instanceof UsageError);
      assert.match(
        error.message,
        /^backup\/moved \(renamed from backup\/copy\/src\) already replicates alpha:tank\/src with tag "offsite" .*; if you renamed it, point this job at it \(-l backup\/moved\); if you set it aside on purpose, free it \(zfs inherit -r zfs_replicate:pull backup\/moved\)/,
      );
      return true;
    });
    assert.equal(local.datasets.has('backup/copy/src'), false, 'no second replica');
    assert.deepEqual(tagged(remote, 'tank/src'), ['s2']);
    // The job pointed at the new name goes on, and its claim now names it.
    await runOnce({ ...settings, localDataset: 'backup/moved' }, context);
    assert.deepEqual(local.snapshotNames('backup/moved'), ['s1', 's2', 's3']);
    // The old line, left in the crontab, is told that it is one: not to rename the replica back.
    await assert.rejects(runOnce(settings, context), (error: unknown) => {
      assert.ok(error instanceof UsageError);
      assert.match(
        error.message,
        /^backup\/moved already replicates .*; if this job's replica was moved to backup\/moved \(zfs rename\), this is an old line of it: change its -l or remove it;/,
      );
      return true;
    });
    // A copy of the replica (zfs send -R | zfs recv elsewhere) carries the same claim: no rival of the original.
    local.create('backup/copy-of-moved');
    const claim = local.datasets.get('backup/moved')!.properties.get(CLAIM_PROPERTY)!;
    await local.setProperty('backup/copy-of-moved', CLAIM_PROPERTY, claim);
    remote.snapshot('tank/src', 's4', NOW);
    await runOnce({ ...settings, localDataset: 'backup/moved' }, context);
    assert.deepEqual(tagged(remote, 'tank/src'), ['s4']);
  });

  test("ages are judged by the source's clock, and past the tolerance nothing is expired", async () => {
    const { remote, local, log, context, settings } = setup();
    series(remote, 3);
    // This host's clock runs 60 days ahead of the source's.
    const ahead = { ...context, now: () => new Date((NOW + 60 * DAY) * 1000) };
    const judged = judgeClocks(NOW, NOW + 60 * DAY, 300, 'alpha');
    assert.match(
      judged.expiryWithheld ?? '',
      /the clock of alpha is 2 months behind this host's \(more than --max-clock-skew 5 minutes\)/,
    );
    await runOnce(settings, { ...ahead, ...judged });
    assert.deepEqual(local.snapshotNames('backup/copy/src'), ['s1', 's2', 's3'], 'the initial window is not skewed');
    remote.snapshot('tank/src', 's4', NOW);
    await runOnce({ ...settings, keepSeconds: 1 }, { ...ahead, ...judged });
    assert.deepEqual(local.snapshotNames('backup/copy/src'), ['s1', 's2', 's3', 's4'], 'nothing expired');
    assert.ok(!log.lines.some((line) => /expired/.test(line)));
    assert.deepEqual(judgeClocks(NOW + 100, NOW, 300, 'alpha'), { sourceClockOffsetSeconds: 100.5 });
    // A source whose clock cannot be read is judged by ours, and that is said: the skew check is off.
    const unread = judgeClocks(undefined, NOW, 300, 'alpha');
    assert.equal(unread.sourceClockOffsetSeconds, 0);
    assert.match(unread.sourceClockUnknown ?? '', /^cannot read the clock of alpha .*--max-clock-skew is not checked$/);
  });

  test('a source clock that agrees with ours shifts ages by at most half a second, whatever its fraction', () => {
    for (const fraction of [0, 0.25, 0.5, 0.75, 0.999]) {
      // `date +%s` printed NOW while the source's clock, like ours, read NOW + fraction.
      const { sourceClockOffsetSeconds } = judgeClocks(NOW, NOW + fraction, 300, 'alpha');
      assert.ok(Math.abs(sourceClockOffsetSeconds) <= 0.5, `fraction ${fraction}: offset ${sourceClockOffsetSeconds}`);
      const later = NOW + 10 + fraction;
      const now = sourceNowSeconds({ now: () => new Date(later * 1000), sourceClockOffsetSeconds });
      assert.ok(now >= Math.floor(later - 0.5) && now <= Math.floor(later + 0.5), `fraction ${fraction}: now ${now}`);
      assert.equal(judgeClocks(NOW, NOW + fraction, 0, 'alpha').expiryWithheld, undefined, '--max-clock-skew 0');
    }
    assert.match(judgeClocks(NOW + 3, NOW, 0, 'alpha').expiryWithheld ?? '', /is 4 seconds ahead of this host's/);
  });
});

describe('bookmarks (OpenZFS)', () => {
  test('the base is bookmarked per tag, the old bookmark goes, and a destroyed base is bridged by it', async () => {
    const { remote, local, streams, context, settings } = setup(OPENZFS_FEATURES);
    series(remote, 2);
    await runOnce(settings, context);
    const prefix = bookmarkPrefix(TAG);
    assert.deepEqual(
      remote.dataset('tank/src').bookmarks.map((bookmark) => bookmark.name),
      [`${prefix}${remote.dataset('tank/src').snapshots[1]?.createtxg}`],
    );
    // An admin releases our tag and destroys the base on the source; newer snapshots arrive.
    await remote.release(TAG, 'tank/src', 's2');
    await remote.destroySnapshots('tank/src', ['s2']);
    remote.snapshot('tank/src', 's3', NOW);
    remote.snapshot('tank/src', 's4', NOW);
    await runOnce(settings, context);
    assert.deepEqual(local.snapshotNames('backup/copy/src'), ['s1', 's2', 's3', 's4']);
    assert.deepEqual(streams.sent.at(-2)?.slice(-3), ['-i', `tank/src#${prefix}2`, 'tank/src@s3']);
    assert.equal(remote.dataset('tank/src').bookmarks.length, 1, 'one bookmark per tag');
  });

  test('a base the source keeps only as a bookmark, nothing newer: up to date, and --rollback destroys nothing', async () => {
    const { remote, local, streams, log, printed, context, settings } = setup(OPENZFS_FEATURES);
    remote.snapshot('tank/src', 's1', NOW - 2 * DAY);
    remote.snapshot('tank/src', 's2', NOW - DAY);
    await runOnce(settings, context);
    // An admin releases our tag and destroys the base on the source, before the source snapshots again.
    await remote.release(TAG, 'tank/src', 's2');
    await remote.destroySnapshots('tank/src', ['s2']);
    await runOnce({ ...settings, dryRun: true, rollback: true }, context);
    assert.match(printed.join('\n'), /up to date: alpha:tank\/src keeps the common snapshot @s2 only as the bookmark/);
    assert.match(printed.join('\n'), /would hold "offsite" on backup\/copy\/src@s2 \(.*a bookmark takes no hold\)/);
    assert.doesNotMatch(printed.join('\n'), /roll .* back|would destroy|on alpha:tank\/src@/);
    for (const rollback of [false, true]) {
      const outcome = await runOnce({ ...settings, rollback }, context);
      assert.equal(outcome.receivedSnapshots, 0);
      assert.deepEqual(local.snapshotNames('backup/copy/src'), ['s1', 's2'], 'the only copy of @s2 stays');
      assert.deepEqual(tagged(local, 'backup/copy/src'), ['s2']);
    }
    assert.ok(log.lines.some((line) => /^info: .*keeps the common snapshot @s2 only as the bookmark/.test(line)));
    // A snapshot of the replica's own after that base is diverged; --rollback takes it, and only it.
    local.snapshot('backup/copy/src', 'mine', NOW);
    await assert.rejects(runOnce(settings, context), { code: 'EDIVERGED' });
    await runOnce({ ...settings, rollback: true }, context);
    assert.deepEqual(local.snapshotNames('backup/copy/src'), ['s1', 's2']);
    assert.deepEqual(tagged(local, 'backup/copy/src'), ['s2']);
    // The source's next snapshot comes from the bookmark, and the tag is on a snapshot there again.
    remote.snapshot('tank/src', 's3', NOW);
    streams.failAfterSnapshots = 0;
    await assert.rejects(runOnce(settings, context), /transfer failed/);
    assert.deepEqual(tagged(local, 'backup/copy/src'), ['s2'], 'a cut stream leaves the tag on the base');
    await runOnce(settings, context);
    assert.deepEqual(streams.sent.at(-1)?.slice(-3), ['-i', `tank/src#${bookmarkPrefix(TAG)}2`, 'tank/src@s3']);
    assert.deepEqual(tagged(remote, 'tank/src'), ['s3']);
    assert.deepEqual(tagged(local, 'backup/copy/src'), ['s3']);
  });

  test('a base kept only as a bookmark, and no older common snapshot: up to date, not ENOCOMMON', async () => {
    const { remote, local, context, settings } = setup(OPENZFS_FEATURES);
    remote.snapshot('tank/src', 's1', NOW - 40 * DAY);
    remote.snapshot('tank/src', 's2', NOW - DAY);
    await runOnce(settings, context);
    assert.deepEqual(local.snapshotNames('backup/copy/src'), ['s2'], 's1 is outside keep: never sent');
    await remote.release(TAG, 'tank/src', 's2');
    await remote.destroySnapshots('tank/src', ['s2']);
    const outcome = await runOnce(settings, context);
    assert.equal(outcome.receivedSnapshots, 0);
    assert.deepEqual(local.snapshotNames('backup/copy/src'), ['s2']);
  });
});

describe("holds moved together (a tree gathers its members' moves)", () => {
  /** Datasets tank/NAME and backup/NAME with s1 (held with TAG on both sides, the old base) and s2 (new). */
  async function pairs(names: readonly string[], features = FUSE_FEATURES) {
    const bed = setup(features);
    const { remote, local } = bed;
    for (const name of names) {
      remote.create(`tank/${name}`);
      remote.snapshot(`tank/${name}`, 's1', NOW - DAY);
      remote.snapshot(`tank/${name}`, 's2', NOW);
      local.receive(`backup/${name}`, remote.dataset(`tank/${name}`).snapshots, 'filesystem');
      await remote.hold(TAG, `tank/${name}`, 's1');
      await local.hold(TAG, `backup/${name}`, 's1');
    }
    const moveOf = async (name: string, keepName = 's2', expectNew = true): Promise<HoldMove> => {
      const side = async (zfs: FakeZfsHost, dataset: string) => {
        const { snapshots } = await zfs.state(dataset);
        return { zfs, dataset, keep: snapshots.find((snapshot) => snapshot.name === keepName)!, snapshots };
      };
      return {
        tag: TAG,
        sides: [await side(remote, `tank/${name}`), await side(local, `backup/${name}`)],
        expectNew,
        log: bed.log,
      };
    };
    // At every change on either host, every pair must have a common snapshot held on both sides.
    const violations: string[] = [];
    const check = () => {
      for (const name of names) {
        const held = (host: FakeZfsHost, dataset: string) =>
          host
            .dataset(dataset)
            .snapshots.filter((snapshot) => snapshot.holds.includes(TAG))
            .map((s) => s.guid);
        const remoteHeld = held(remote, `tank/${name}`);
        if (!held(local, `backup/${name}`).some((guid) => remoteHeld.includes(guid))) {
          violations.push(`${name} after ${remote.journal.at(-1)}`);
        }
      }
    };
    remote.onChange = check;
    local.onChange = check;
    return { ...bed, moveOf, violations };
  }

  const statuses = (outcomes: readonly PromiseSettledResult<void>[]) => outcomes.map((outcome) => outcome.status);

  test('three moves take one hold and one release per host, with a held common snapshot at every instant', async () => {
    const { remote, local, moveOf, violations } = await pairs(['a', 'b', 'c']);
    const moves = await Promise.all(['a', 'b', 'c'].map((name) => moveOf(name)));
    assert.deepEqual(statuses(await moveHoldsTogether(moves)), ['fulfilled', 'fulfilled', 'fulfilled']);
    assert.deepEqual(violations, []);
    assert.deepEqual(remote.gatheredCommands, ['hold 3', 'release 3']);
    assert.deepEqual(local.gatheredCommands, ['hold 3', 'release 3']);
    for (const name of ['a', 'b', 'c']) {
      assert.deepEqual(tagged(remote, `tank/${name}`), ['s2']);
      assert.deepEqual(tagged(local, `backup/${name}`), ['s2']);
    }
  });

  test('a move whose new base vanished at the source fails alone and releases nothing; the others move', async () => {
    const { remote, local, moveOf, violations } = await pairs(['a', 'b', 'c']);
    const moves = await Promise.all(['a', 'b', 'c'].map((name) => moveOf(name)));
    await remote.destroySnapshots('tank/b', ['s2']);
    const outcomes = await moveHoldsTogether(moves);
    assert.deepEqual(statuses(outcomes), ['fulfilled', 'rejected', 'fulfilled']);
    assert.match(String((outcomes[1] as PromiseRejectedResult).reason), /tank\/b@s2/);
    assert.deepEqual(violations, []);
    assert.deepEqual(remote.gatheredCommands, ['hold 3', 'release 2'], 'the failed gathered hold, then one by one');
    assert.deepEqual(tagged(remote, 'tank/b'), ['s1']);
    assert.ok(tagged(local, 'backup/b').includes('s1'), 'the old base keeps its hold on both sides');
    for (const name of ['a', 'c']) assert.deepEqual(tagged(remote, `tank/${name}`), ['s2']);
  });

  test("on zfs-fuse a snapshot with another tag's hold is asked alone after the gathered release fails", async () => {
    const { local, moveOf } = await pairs(['a', 'b']);
    await local.hold('downstream', 'backup/a', 's1');
    local.snapshot('backup/b', 'kept-by-c', NOW);
    await local.hold('downstream', 'backup/b', 'kept-by-c');
    const outcomes = await moveHoldsTogether(await Promise.all(['a', 'b'].map((name) => moveOf(name))));
    assert.deepEqual(statuses(outcomes), ['fulfilled', 'fulfilled']);
    assert.deepEqual(local.gatheredCommands, ['hold 2', 'release 3']);
    assert.deepEqual(local.tagsOf('backup/a', 's1'), ['downstream']);
    assert.deepEqual(local.tagsOf('backup/b', 'kept-by-c'), ['downstream']);
    assert.deepEqual(tagged(local, 'backup/b'), ['s2']);
  });

  test('where zfs holds exists, one call per host tells which snapshots carry the tag', async () => {
    const { remote, local, moveOf } = await pairs(['a', 'b', 'c'], OPENZFS_FEATURES);
    await remote.hold('downstream', 'tank/c', 's1');
    const asked: string[] = [];
    for (const host of [remote, local]) {
      const tagsOn = host.tagsOn.bind(host);
      host.tagsOn = (names) => {
        asked.push(`${host.label} ${names.length}`);
        return tagsOn(names);
      };
    }
    const moves = await Promise.all(['a', 'b', 'c'].map((name) => moveOf(name)));
    assert.deepEqual(statuses(await moveHoldsTogether(moves)), ['fulfilled', 'fulfilled', 'fulfilled']);
    assert.deepEqual(asked.sort(), ['alpha 3', 'local 3']);
    assert.deepEqual(remote.gatheredCommands, ['hold 3', 'release 3']);
    assert.deepEqual(remote.tagsOf('tank/c', 's1'), ['downstream']);
  });

  test('a gathered zfs holds that fails is asked side by side: only the move whose query fails fails', async () => {
    const { remote, moveOf } = await pairs(['a', 'b', 'c'], OPENZFS_FEATURES);
    const tagsOn = remote.tagsOn.bind(remote);
    remote.tagsOn = async (names) => {
      if (names.includes('tank/b@s1')) throw new FailureError('ECOMMAND', "cannot open 'tank/b@s1'");
      return tagsOn(names);
    };
    const moves = await Promise.all(['a', 'b', 'c'].map((name) => moveOf(name)));
    assert.deepEqual(statuses(await moveHoldsTogether(moves)), ['fulfilled', 'rejected', 'fulfilled']);
    for (const name of ['a', 'c']) assert.deepEqual(tagged(remote, `tank/${name}`), ['s2']);
    assert.deepEqual(tagged(remote, 'tank/b'), ['s1', 's2'], 'held anew, the old one kept');
  });

  test('a base that already has holds is asked alone; a missing hold on an old base is a repair', async () => {
    const { remote, local, log, moveOf } = await pairs(['a', 'b']);
    await local.release(TAG, 'backup/b', 's1');
    const moves = await Promise.all(['a', 'b'].map((name) => moveOf(name, 's1', false)));
    assert.deepEqual(statuses(await moveHoldsTogether(moves)), ['fulfilled', 'fulfilled']);
    assert.deepEqual([...remote.gatheredCommands, ...local.gatheredCommands], []);
    assert.deepEqual(
      log.lines.filter((line) => line.startsWith('warn')),
      [
        'warn: repaired: hold "offsite" was missing on local:backup/b@s1 (released by hand, or a run killed before it could hold it); added it',
      ],
    );
  });
});

describe('runTree', () => {
  function tree(features = FUSE_FEATURES) {
    const bed = setup(features);
    bed.remote.create('tank/src/a').create('tank/src/a/x').create('tank/src/b');
    for (const dataset of ['tank/src', 'tank/src/a', 'tank/src/a/x', 'tank/src/b']) {
      bed.remote.snapshot(dataset, 'r1', NOW - DAY);
    }
    const locked = new Set<string>();
    const treeContext = {
      ...bed.context,
      lockMembers: (datasets: readonly string[]) =>
        new Map(
          datasets.map((dataset) => [
            dataset,
            locked.has(dataset)
              ? new LockedError(`another run is replicating into ${dataset}`, undefined)
              : { path: dataset, fd: -1, release: () => undefined },
          ]),
        ),
    };
    return { ...bed, locked, treeContext, treeSettings: { ...bed.settings, exclude: [], jobs: 4 } };
  }

  test('a member that is itself a replica pulled with our tag refuses the whole tree before anything changes', async () => {
    const { remote, local, treeContext, treeSettings } = tree();
    await remote.setProperty('tank/src/a/x', CLAIM_PROPERTY, claimOf('777', TAG, 'tank/src/a/x'));
    await assert.rejects(
      runTree(treeSettings, treeContext),
      (error: unknown) =>
        error instanceof UsageError &&
        /alpha:tank\/src\/a\/x is itself a replica, pulled on alpha with the same tag/.test(error.message),
    );
    assert.deepEqual(local.events, []);
    await runTree({ ...treeSettings, tag: 'downstream' }, treeContext);
    assert.deepEqual(local.tagsOf('backup/copy/src/a/x', 'r1'), ['downstream']);
  });

  test('a member whose source was restored from its replica (zfs send -R) is refused alone: the others go on', async () => {
    const { remote, local, treeContext, treeSettings } = tree();
    await runTree(treeSettings, treeContext);
    const replicaClaim = local.datasets.get('backup/copy/src/b')!.properties.get(CLAIM_PROPERTY)!;
    await remote.setProperty('tank/src/b', CLAIM_PROPERTY, replicaClaim);
    for (const dataset of ['tank/src', 'tank/src/a', 'tank/src/a/x', 'tank/src/b']) remote.snapshot(dataset, 'r2', NOW);
    await assert.rejects(runTree(treeSettings, treeContext), (error: unknown) => {
      assert.match(String(error), /1 of 4 datasets not replicated: backup\/copy\/src\/b \(EUSAGE\)/);
      return true;
    });
    for (const member of ['backup/copy/src', 'backup/copy/src/a', 'backup/copy/src/a/x'])
      assert.deepEqual(local.snapshotNames(member), ['r1', 'r2'], member);
    assert.deepEqual(local.snapshotNames('backup/copy/src/b'), ['r1']);
  });

  test('an --exclude that matches nothing is warned about once, however often it is given', async () => {
    const { log, treeContext, treeSettings } = tree();
    await runTree({ ...treeSettings, exclude: ['tank/src/typo', 'tank/src/typo'] }, treeContext);
    assert.equal(log.lines.filter((line) => /--exclude tank\/src\/typo matches no dataset/.test(line)).length, 1);
  });

  test('a container root whose source root gains a snapshot is told as the parent of replicas, never to destroy', async () => {
    const { remote, local, treeContext, treeSettings } = tree();
    remote.datasets.get('tank/src')!.snapshots = [];
    await runTree(treeSettings, treeContext);
    assert.deepEqual(local.snapshotNames('backup/copy/src'), []);
    remote.snapshot('tank/src', 'r2', NOW);
    remote.snapshot('tank/src/b', 'r2', NOW);
    const errors = new Map<string, string>();
    const memberDone = (member: { localDataset: string }, result: { outcome: RunOutcome } | { error: unknown }) => {
      if ('error' in result) errors.set(member.localDataset, String(result.error));
    };
    await assert.rejects(runTree(treeSettings, { ...treeContext, memberDone }));
    assert.match(
      errors.get('backup/copy/src') ?? '',
      /backup\/copy\/src is the plain parent of this tree's replicas .* Do not destroy it\./,
    );
    assert.deepEqual([...errors.keys()], ['backup/copy/src']);
    assert.deepEqual(local.snapshotNames('backup/copy/src/b'), ['r1', 'r2'], 'the members go on');
  });

  test('a member whose source lost every snapshot after it was replicated is a conflict, not "not yet"', async () => {
    const { remote, local, treeContext, treeSettings } = tree();
    await runTree(treeSettings, treeContext);
    remote.datasets.get('tank/src/b')!.snapshots = [];
    remote.create('tank/src/new');
    await assert.rejects(runTree(treeSettings, treeContext), (error: unknown) => {
      assert.ok(error instanceof ConflictError, String(error));
      assert.match(error.message, /^1 of \d+ datasets not replicated: backup\/copy\/src\/b \(conflict EREMOTEEMPTY\)$/);
      return true;
    });
    assert.deepEqual(local.snapshotNames('backup/copy/src/b'), ['r1'], 'nothing changed on the stalled replica');
  });

  test('every member replicates from its own base, parents first, and a no-op run lists each side once', async () => {
    const { remote, local, treeContext, treeSettings } = tree();
    await runTree(treeSettings, treeContext);
    for (const member of ['backup/copy/src', 'backup/copy/src/a', 'backup/copy/src/a/x', 'backup/copy/src/b']) {
      assert.deepEqual(tagged(local, member), ['r1'], member);
    }
    remote.listings = 0;
    local.listings = 0;
    await runTree(treeSettings, treeContext);
    assert.deepEqual([remote.listings, local.listings], [1, 1]);
  });

  test("each member's end is told (for its record), and the tree's outcome sums them", async () => {
    const { remote, local, treeContext, treeSettings } = tree();
    const told: string[] = [];
    const memberDone = (member: { localDataset: string }, result: { outcome: RunOutcome } | { error: unknown }) =>
      told.push(
        `${member.localDataset} ${'outcome' in result ? `received ${result.outcome.receivedSnapshots}` : (result.error as ReplicateError).code}`,
      );
    const first = await runTree(treeSettings, { ...treeContext, memberDone });
    assert.equal(first.receivedSnapshots, 4);
    assert.deepEqual(
      first.members.map((member) => member.localDataset),
      ['backup/copy/src', 'backup/copy/src/a', 'backup/copy/src/b', 'backup/copy/src/a/x'],
    );
    remote.snapshot('tank/src/b', 'r2', NOW);
    local.snapshot('backup/copy/src/a', 'diverged', NOW);
    told.length = 0;
    await assert.rejects(runTree(treeSettings, { ...treeContext, memberDone }), /EDIVERGED|diverged/);
    assert.deepEqual(told, [
      'backup/copy/src received 0',
      'backup/copy/src/a EDIVERGED',
      'backup/copy/src/b received 1',
      'backup/copy/src/a/x received 0',
    ]);
  });

  test('members planned within TREE_LISTING_REUSE_MS of the tree listing use it; later ones list again', async () => {
    const { remote, local, treeContext, treeSettings } = tree();
    await runTree(treeSettings, treeContext);
    for (const dataset of ['tank/src', 'tank/src/a', 'tank/src/a/x', 'tank/src/b']) remote.snapshot(dataset, 'r2', NOW);
    remote.listings = 0;
    local.listings = 0;
    // Quick transfers: every member is planned from the tree listing, then checks its own replica once.
    await runTree(treeSettings, treeContext);
    assert.deepEqual([remote.listings, local.listings], [1, 1 + 4]);

    // The root's transfer outlasts the reuse window: its three descendants are planned from listings of their own.
    for (const dataset of ['tank/src', 'tank/src/a', 'tank/src/a/x', 'tank/src/b']) remote.snapshot(dataset, 'r3', NOW);
    let clock = NOW * 1000;
    const streams = new FakeStreams(remote, local);
    const slowRoot = {
      summary: streams.summary,
      run: async (...args: Parameters<FakeStreams['run']>) => {
        if (args[1].at(-1) === 'backup/copy/src') clock += TREE_LISTING_REUSE_MS;
        return streams.run(...args);
      },
    };
    remote.listings = 0;
    local.listings = 0;
    await runTree(treeSettings, { ...treeContext, streams: slowRoot, now: () => new Date(clock) });
    assert.deepEqual([remote.listings, local.listings], [1 + 3, 1 + 4 + 3]);
    for (const member of ['backup/copy/src', 'backup/copy/src/a', 'backup/copy/src/a/x', 'backup/copy/src/b']) {
      assert.deepEqual(tagged(local, member), ['r3'], member);
    }
  });

  test('a new member whose source lost its snapshots since the tree listing waits with its children, not created by zfs create', async () => {
    const { remote, local, log, treeContext, treeSettings } = tree();
    let clock = NOW * 1000;
    const streams = new FakeStreams(remote, local);
    const slowRoot = {
      summary: streams.summary,
      run: async (...args: Parameters<FakeStreams['run']>) => {
        if (args[1].at(-1) === 'backup/copy/src') {
          // While the root transfers, the admin destroys a's snapshots (not its child's).
          clock += TREE_LISTING_REUSE_MS;
          remote.dataset('tank/src/a').snapshots = [];
        }
        return streams.run(...args);
      },
    };
    await runTree({ ...treeSettings, jobs: 1 }, { ...treeContext, streams: slowRoot, now: () => new Date(clock) });
    assert.equal(local.datasets.has('backup/copy/src/a'), false, 'a is not made a plain dataset');
    assert.equal(local.datasets.has('backup/copy/src/a/x'), false);
    assert.deepEqual(local.snapshotNames('backup/copy/src/b'), ['r1']);
    assert.ok(
      log.lines.some((line) =>
        /^warn: backup\/copy\/src\/a: not replicated yet: its source has no snapshot .*backup\/copy\/src\/a\/x/.test(
          line,
        ),
      ),
      log.lines.join('\n'),
    );
    // Once it has a snapshot again, it and its child replicate.
    remote.snapshot('tank/src/a', 'r2', NOW);
    await runTree(treeSettings, treeContext);
    assert.deepEqual(local.snapshotNames('backup/copy/src/a'), ['r2']);
    assert.deepEqual(local.snapshotNames('backup/copy/src/a/x'), ['r1']);
  });

  test('a member whose new replica failed blocks its children, which are not created by zfs create', async () => {
    const { remote, local, treeContext, treeSettings } = tree();
    remote.dataset('tank/src/a').snapshots = [];
    remote.snapshot('tank/src/a', 'r1', NOW);
    local.failing.add('state');
    await assert.rejects(runTree(treeSettings, treeContext), (error: unknown) => {
      assert.ok(error instanceof FailureError);
      return true;
    });
    local.failing.clear();
    const streamsSeen = new FakeStreams(remote, local);
    const { treeContext: again } = { treeContext: { ...treeContext, streams: streamsSeen } };
    // Now a member's receive fails: its child must be skipped, not created under a plain parent.
    streamsSeen.failAfterSnapshots = 0;
    await assert.rejects(runTree(treeSettings, again), /not replicated/);
    assert.equal(local.datasets.has('backup/copy/src/a/x'), false);
  });

  test('a member locked by another job is skipped and its new children wait', async () => {
    const { local, locked, treeContext, treeSettings } = tree();
    locked.add('backup/copy/src/a');
    const told: string[] = [];
    const memberLocked = (member: { localDataset: string }) => told.push(member.localDataset);
    await assert.rejects(
      runTree(treeSettings, { ...treeContext, memberLocked }),
      /backup\/copy\/src\/a\/x \(skipped: its parent/,
    );
    assert.deepEqual(told, ['backup/copy/src/a']);
    assert.equal(local.datasets.has('backup/copy/src/a'), false);
    assert.equal(local.datasets.has('backup/copy/src/a/x'), false);
    assert.deepEqual(tagged(local, 'backup/copy/src/b'), ['r1']);
  });

  test('replicas are locked before this host is listed; a new one after, and it lists itself again', async () => {
    const { remote, local, locked, treeContext, treeSettings } = tree();
    await runTree(treeSettings, treeContext);
    remote.create('tank/src/new');
    remote.snapshot('tank/src/new', 'r1', NOW);
    local.create('backup/copy/src/gone');
    local.snapshot('backup/copy/src/gone', 'g1', NOW - DAY);
    locked.add('backup/copy/src/gone');
    local.create('backup/copy/src/old');
    local.snapshot('backup/copy/src/old', 'o1', NOW - DAY);
    const events: string[] = [];
    const tree_ = local.tree.bind(local);
    local.tree = async (root: string) => {
      events.push(`list ${root}`);
      return tree_(root);
    };
    const state = local.state.bind(local);
    local.state = async (dataset: string) => {
      events.push(`list ${dataset}`);
      return state(dataset);
    };
    const told: string[] = [];
    await runTree(
      { ...treeSettings, jobs: 1 },
      {
        ...treeContext,
        lockMembers: (datasets) => {
          events.push(`lock ${datasets.join(' ')}`);
          const attempts = treeContext.lockMembers(datasets);
          for (const [name, attempt] of attempts) {
            if (!(attempt instanceof Error))
              attempt.release = () => {
                events.push(`let go ${name}`);
              };
          }
          return attempts;
        },
        memberLocked: (member) => told.push(member.localDataset),
      },
    );
    assert.deepEqual(events.slice(0, 5), [
      'lock backup/copy/src/a backup/copy/src/b backup/copy/src/a/x backup/copy/src/gone backup/copy/src/old',
      'list backup/copy/src',
      'lock backup/copy/src/new',
      // Not a member (its source is gone): let go before any member runs.
      'let go backup/copy/src/old',
      'list backup/copy/src/new',
    ]);
    assert.equal(events.filter((event) => event.startsWith('let go')).length, 5, 'every lock let go at the end');
    const listingsOf = (dataset: string) => events.filter((event) => event === `list ${dataset}`).length;
    // Listed before it is planned, and checked after receiving; the no-op members come from the tree listing.
    assert.equal(listingsOf('backup/copy/src/new'), 2);
    assert.equal(listingsOf('backup/copy/src/b'), 0);
    assert.deepEqual(tagged(local, 'backup/copy/src/new'), ['r1']);
    assert.deepEqual(told, [], 'a replica that is not a member is not reported, even when another run holds it');
  });

  test('a lockMembers that leaves a member out makes that member ELOCK, never a run without its lock', async () => {
    const { local, treeContext, treeSettings } = tree();
    const forgetful = (datasets: readonly string[]) => {
      const attempts = treeContext.lockMembers(datasets);
      attempts.delete('backup/copy/src/b');
      return attempts;
    };
    await assert.rejects(runTree(treeSettings, { ...treeContext, lockMembers: forgetful }), /src\/b \(ELOCK\)/);
    assert.equal(local.datasets.has('backup/copy/src/b'), false);
    assert.deepEqual(tagged(local, 'backup/copy/src/a'), ['r1']);
  });

  test('a container root without snapshots replicates through its children, quietly', async () => {
    const { remote, local, log, treeContext, treeSettings } = tree();
    remote.dataset('tank/src').snapshots = [];
    await runTree(treeSettings, treeContext);
    assert.deepEqual(tagged(local, 'backup/copy/src/b'), ['r1']);
    assert.ok(
      log.lines.some((line) => /^info: backup\/copy\/src: not replicated: .* \(only its children are\)/.test(line)),
    );
    assert.ok(!log.lines.some((line) => line.startsWith('warn:') || line.startsWith('error:')));
  });

  test('a member that vanished at the source while an earlier one transferred is an info line, not a conflict', async () => {
    const { remote, local, log, streams, treeContext, treeSettings } = tree();
    const run = streams.run.bind(streams);
    streams.run = async (send, recv, options) => {
      const report = await run(send, recv, options);
      remote.datasets.delete('tank/src/b');
      return report;
    };
    await runTree(treeSettings, treeContext);
    assert.equal(local.datasets.has('backup/copy/src/b'), false);
    assert.ok(
      log.lines.some((line) =>
        /^info: backup\/copy\/src\/b: alpha:tank\/src\/b is gone \(destroyed or renamed during this run\)/.test(line),
      ),
    );
  });

  test('a member destroyed at the source during its own transfer (members in parallel) is the same info line', async () => {
    const { remote, local, log, streams, treeContext, treeSettings } = tree();
    const run = streams.run.bind(streams);
    streams.run = async (send, recv, options) => {
      if (recv.at(-1) !== 'backup/copy/src/b') return run(send, recv, options);
      remote.datasets.delete('tank/src/b');
      throw streamError('send', "cannot open 'tank/src/b': dataset does not exist");
    };
    await runTree(treeSettings, treeContext);
    assert.equal(local.datasets.has('backup/copy/src/b'), false);
    assert.ok(log.lines.some((line) => /^info: backup\/copy\/src\/b: alpha:tank\/src\/b is gone /.test(line)));
    assert.ok(!log.lines.some((line) => line.startsWith('error:')), log.lines.join('\n'));
  });

  test("a member's error line keeps its code in the log when its text holds a printf token (%s)", async () => {
    const { streams, treeContext, treeSettings } = tree();
    const dir = mkdtempSync(join(tmpdir(), 'zr-log-'));
    const file = join(dir, 'log.json');
    const log = createLogger({ verbosity: 'warn', format: 'json', file, context: 'backup/copy/src' });
    const run = streams.run.bind(streams);
    streams.run = async (send, recv, options) => {
      if (recv.at(-1) !== 'backup/copy/src/b') return run(send, recv, options);
      throw streamError('send', 'refused: not a command: echo "now=$(date +%s)"');
    };
    try {
      await assert.rejects(runTree(treeSettings, { ...treeContext, log }));
      await log.close();
      const lines = readFileSync(file, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line));
      const member = lines.find((line) => line.member === 'backup/copy/src/b');
      assert.equal(member?.code, 'ETRANSFER', JSON.stringify(lines));
      assert.match(member?.message, /date \+%s/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a member whose transfer fails while its source still exists is still a failure', async () => {
    const { log, streams, treeContext, treeSettings } = tree();
    const run = streams.run.bind(streams);
    streams.run = async (send, recv, options) => {
      if (recv.at(-1) !== 'backup/copy/src/b') return run(send, recv, options);
      throw streamError('send', 'Timeout, server not responding.');
    };
    await assert.rejects(runTree(treeSettings, treeContext), /1 of \d+ datasets not replicated: backup\/copy\/src\/b/);
    assert.ok(!log.lines.some((line) => / is gone /.test(line)));
  });

  /** A tree with more children under the root, whose streams take a while and note when each starts and ends. */
  function slowTree(jobs: number) {
    const bed = tree();
    for (const child of ['c', 'd', 'e']) {
      bed.remote.create(`tank/src/${child}`);
      bed.remote.snapshot(`tank/src/${child}`, 'r1', NOW - DAY);
    }
    const events: string[] = [];
    let running = 0;
    let mostAtOnce = 0;
    const run = bed.streams.run.bind(bed.streams);
    bed.streams.run = async (send, recv, options) => {
      const target = recv.at(-1) ?? '';
      events.push(`start ${target}`);
      mostAtOnce = Math.max(mostAtOnce, ++running);
      try {
        await new Promise((resolve) => setTimeout(resolve, 20));
        return await run(send, recv, options);
      } finally {
        running--;
        events.push(`end ${target}`);
      }
    };
    return { ...bed, events, mostAtOnce: () => mostAtOnce, treeSettings: { ...bed.treeSettings, jobs } };
  }

  test('members replicate up to -j at once, each only after its parent has ended', async () => {
    const { local, events, mostAtOnce, treeContext, treeSettings } = slowTree(2);
    await runTree(treeSettings, treeContext);
    assert.equal(mostAtOnce(), 2, events.join('\n'));
    for (const [child, parent] of [
      ['backup/copy/src/a', 'backup/copy/src'],
      ['backup/copy/src/e', 'backup/copy/src'],
      ['backup/copy/src/a/x', 'backup/copy/src/a'],
    ] as const) {
      assert.ok(events.indexOf(`start ${child}`) > events.lastIndexOf(`end ${parent}`), events.join('\n'));
    }
    for (const member of ['a', 'a/x', 'b', 'c', 'd', 'e']) {
      assert.deepEqual(tagged(local, `backup/copy/src/${member}`), ['r1'], member);
    }
  });

  test("members' holds are moved together once no member is busy; waiting for them frees the slot", async () => {
    const { remote, local, treeContext, treeSettings } = tree();
    await runTree(treeSettings, treeContext);
    const members = ['src', 'src/a', 'src/a/x', 'src/b'];
    for (const member of members) remote.snapshot(`tank/${member}`, 'r2', NOW);
    remote.gatheredCommands.length = 0;
    local.gatheredCommands.length = 0;
    const violations = members.map((member) =>
      watchCommonHeld(remote, local, `tank/${member}`, `backup/copy/${member}`),
    );
    // With one slot: the root alone (its children wait for its end), then a and b gathered, as a's hold waits
    // while b transfers in the slot a set aside; a/x after a.
    await runTree({ ...treeSettings, jobs: 1 }, treeContext);
    // The source's new bases were held before their streams (each its own): only the releases are gathered there.
    assert.deepEqual(remote.gatheredCommands, ['release 2']);
    assert.deepEqual(local.gatheredCommands, ['hold 2', 'release 2']);
    for (const member of members) {
      assert.deepEqual(tagged(remote, `tank/${member}`), ['r2'], member);
      assert.deepEqual(tagged(local, `backup/copy/${member}`), ['r2'], member);
    }
    assert.deepEqual(violations.flat(), []);
  });

  test("a member's new base is held within HOLD_GATHERING_MS even while another member transfers for longer", async () => {
    const { remote, local, streams, treeContext, treeSettings } = tree();
    await runTree(treeSettings, treeContext);
    for (const member of ['src', 'src/a', 'src/a/x', 'src/b']) remote.snapshot(`tank/${member}`, 'r2', NOW);
    const run = streams.run.bind(streams);
    streams.run = async (send, recv, options) => {
      if (recv.at(-1) === 'backup/copy/src/b')
        await new Promise((resolve) => setTimeout(resolve, HOLD_GATHERING_MS * 2));
      return run(send, recv, options);
    };
    await runTree(treeSettings, treeContext);
    const journal = local.journal;
    const heldA = journal.indexOf('alpha: hold offsite tank/src/a@r2');
    assert.ok(heldA >= 0 && heldA < journal.indexOf('local: receive backup/copy/src/b@r2'), journal.join('\n'));
    assert.deepEqual(tagged(remote, 'tank/src/b'), ['r2']);
  });

  test('with -j 1 the members run one after another', async () => {
    const { mostAtOnce, treeContext, treeSettings } = slowTree(1);
    await runTree(treeSettings, treeContext);
    assert.equal(mostAtOnce(), 1);
  });

  test("one member's failure stops neither the members beside it nor those that wait for a slot", async () => {
    const { local, streams, treeContext, treeSettings } = slowTree(3);
    const run = streams.run.bind(streams);
    streams.run = (send, recv, options) => {
      if (recv.at(-1) === 'backup/copy/src/a') streams.failAfterSnapshots = 0;
      return run(send, recv, options);
    };
    await assert.rejects(runTree(treeSettings, treeContext), (error: unknown) => {
      assert.ok(error instanceof FailureError);
      assert.match(
        error.message,
        /2 of 7 datasets not replicated: backup\/copy\/src\/a \(.*\), backup\/copy\/src\/a\/x \(skipped: its parent/,
      );
      return true;
    });
    for (const member of ['b', 'c', 'd', 'e']) {
      assert.deepEqual(tagged(local, `backup/copy/src/${member}`), ['r1'], member);
    }
    assert.equal(local.datasets.has('backup/copy/src/a/x'), false);
  });

  test('one diverged member is a conflict for the run (exit 4) while the others replicate', async () => {
    const { remote, local, treeContext, treeSettings } = tree();
    await runTree(treeSettings, treeContext);
    local.snapshot('backup/copy/src/b', 'local-only', NOW);
    remote.snapshot('tank/src/a', 'r2', NOW);
    await assert.rejects(runTree(treeSettings, treeContext), (error: unknown) => {
      assert.ok(error instanceof ConflictError);
      assert.equal(error.exitCode, 4);
      assert.match(error.message, /1 of 4 datasets not replicated: backup\/copy\/src\/b \(conflict EDIVERGED\)/);
      return true;
    });
    assert.deepEqual(tagged(local, 'backup/copy/src/a'), ['r2']);
  });
});
