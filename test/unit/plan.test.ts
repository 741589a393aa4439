import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Plan, type PlanInput, planReplication, sourceKeepsOnlyBookmark } from '../../src/replication/plan.js';
import { plannedSends } from '../../src/replication/sends.js';
import type { DatasetState, Snapshot } from '../../src/zfs/types.js';

const DAY = 86_400;
const NOW = 1_800_000_000;

/** Snapshots named by letter; guid and createtxg derive from the letter unless given. */
function snap(name: string, overrides: Partial<Snapshot> = {}): Snapshot {
  const code = name.charCodeAt(0);
  return {
    name,
    guid: String(1000 + code),
    createtxg: code * 10,
    creation: NOW - (200 - code) * DAY,
    userrefs: 0,
    ...overrides,
  };
}
const dataset = (name: string, snapshots: Snapshot[] | undefined, bookmarks: Snapshot[] = []): DatasetState =>
  snapshots === undefined
    ? { dataset: name, exists: false, snapshots: [], bookmarks: [] }
    : { dataset: name, exists: true, type: 'filesystem', snapshots, bookmarks };

function plan(
  remote: Snapshot[] | undefined,
  local: Snapshot[] | undefined,
  extra: Partial<PlanInput> = {},
  bookmarks: Snapshot[] = [],
): Plan {
  return planReplication({
    remote: dataset('tank/src', remote, bookmarks),
    local: dataset('backup/dst', local),
    remoteHost: 'alpha',
    nowSeconds: NOW,
    keepSeconds: 1000 * DAY,
    rollback: false,
    ...extra,
  });
}

function names(snapshots: Snapshot[]): string[] {
  return snapshots.map((snapshot) => snapshot.name);
}

test('no local dataset: initial, sending every remote snapshot inside keep', () => {
  const result = plan([snap('a'), snap('b'), snap('c')], undefined);
  assert.equal(result.kind, 'initial');
  if (result.kind !== 'initial') return;
  assert.equal(result.first.name, 'a');
  assert.equal(result.target.name, 'c');
  assert.deepEqual(names(result.incoming), ['a', 'b', 'c']);
  assert.deepEqual(result.skipped, []);
});

test('initial starts at the oldest snapshot not older than keep', () => {
  const remote = [
    snap('a', { creation: NOW - 10 * DAY }),
    snap('b', { creation: NOW - 5 * DAY }),
    snap('c', { creation: NOW - DAY }),
  ];
  const result = plan(remote, undefined, { keepSeconds: 7 * DAY });
  assert.ok(result.kind === 'initial');
  assert.equal(result.first.name, 'b');
  assert.deepEqual(names(result.incoming), ['b', 'c']);
  assert.deepEqual(names(result.skipped), ['a']);
});

test('initial sends only the newest when every remote snapshot is older than keep', () => {
  const remote = [snap('a', { creation: NOW - 10 * DAY }), snap('b', { creation: NOW - 9 * DAY })];
  const result = plan(remote, undefined, { keepSeconds: DAY });
  assert.ok(result.kind === 'initial');
  assert.equal(result.first.name, 'b');
  assert.deepEqual(names(result.incoming), ['b']);
});

test('incremental from the newest common snapshot, with every intermediate', () => {
  const result = plan([snap('a'), snap('b'), snap('c'), snap('d'), snap('e')], [snap('a'), snap('b')]);
  assert.ok(result.kind === 'incremental');
  assert.equal(result.base.local.name, 'b');
  assert.equal(result.target.name, 'e');
  assert.deepEqual(names(result.incoming), ['c', 'd', 'e']);
  assert.deepEqual(result.discard, []);
});

test('the base is matched by guid, never by name', () => {
  // The replica's @b was made locally with a source name: same name, other guid. The real common one is @a.
  const local = [snap('a'), snap('b', { guid: '999999' })];
  const result = plan([snap('a'), snap('b'), snap('c')], local);
  assert.equal(result.kind, 'conflict');
  assert.ok(result.kind === 'conflict');
  assert.equal(result.code, 'EDIVERGED');
  assert.match(
    result.message,
    /@b is newer than the common snapshot @a and not on the remote \(@b on the remote is another snapshot of the same name\), so this is the only copy/,
  );
});

test('a renamed snapshot still counts as common (same guid)', () => {
  const local = [snap('a'), snap('b', { name: 'renamed' })];
  const result = plan([snap('a'), snap('b'), snap('c')], local);
  assert.ok(result.kind === 'incremental');
  assert.equal(result.base.local.name, 'renamed');
  assert.equal(result.base.remote.name, 'b');
  assert.deepEqual(names(result.incoming), ['c']);
});

test('up to date when the newest remote snapshot is the base', () => {
  const result = plan([snap('a'), snap('b')], [snap('a'), snap('b')]);
  assert.ok(result.kind === 'up-to-date');
  assert.equal(result.base.remote.name, 'b');
});

test('up to date even when the remote expired old snapshots the replica still has', () => {
  const result = plan([snap('c'), snap('d')], [snap('a'), snap('b'), snap('c'), snap('d')]);
  assert.equal(result.kind, 'up-to-date');
});

test('the base may be older than the remote newest after remote expiry, with local history kept', () => {
  const result = plan([snap('c'), snap('d'), snap('e')], [snap('a'), snap('b'), snap('c'), snap('d')]);
  assert.ok(result.kind === 'incremental');
  assert.equal(result.base.local.name, 'd');
  assert.deepEqual(names(result.incoming), ['e']);
});

test('conflict: remote dataset missing', () => {
  const result = plan(undefined, undefined);
  assert.ok(result.kind === 'conflict');
  assert.equal(result.code, 'EREMOTEMISSING');
  assert.match(result.message, /alpha:tank\/src does not exist/);
});

test('conflict: remote without snapshots', () => {
  const result = plan([], [snap('a')]);
  assert.ok(result.kind === 'conflict');
  assert.equal(result.code, 'EREMOTEEMPTY');
});

test('conflict: local exists without snapshots is not a replica, even when the remote is new', () => {
  const result = plan([snap('a')], []);
  assert.ok(result.kind === 'conflict');
  assert.equal(result.code, 'ENOTREPLICA');
  assert.match(result.message, /backup\/dst exists but has no snapshots/);
});

test('conflict: no common snapshot while the local dataset has snapshots', () => {
  const result = plan([snap('c'), snap('d')], [snap('x', { guid: '1' }), snap('y', { guid: '2' })]);
  assert.ok(result.kind === 'conflict');
  assert.equal(result.code, 'ENOCOMMON');
  assert.match(result.message, /shares no snapshot \(by guid\) with alpha:tank\/src/);
  // A dataset renamed aside keeps its claim: without freeing it, the job would take it for its moved replica.
  assert.match(result.message, /set it aside: zfs rename it, then zfs inherit -r zfs_replicate:pull on the new name/);
});

test('conflict: diverged names the local snapshots the remote lacks', () => {
  const local = [
    snap('a'),
    snap('b'),
    snap('x', { guid: '77', createtxg: 5000 }),
    snap('y', { guid: '78', createtxg: 5001 }),
  ];
  const result = plan([snap('a'), snap('b'), snap('c')], local);
  assert.ok(result.kind === 'conflict');
  assert.equal(result.code, 'EDIVERGED');
  assert.match(result.message, /@x, @y are newer than the common snapshot @b/);
  // They may be the last copies of data the source lost: the way to keep them is said beside --rollback's.
  assert.match(
    result.message,
    /so this is the only copy \(was the source rolled back, or restored from an older snapshot\?\)/,
  );
  assert.match(
    result.message,
    /re-run with --rollback to destroy them and continue, or keep them by setting the replica aside/,
  );
});

test('diverged with --rollback: incremental that discards the local-only snapshots', () => {
  const local = [snap('a'), snap('b'), snap('x', { guid: '77', createtxg: 5000 })];
  const result = plan([snap('a'), snap('b'), snap('c')], local, { rollback: true });
  assert.ok(result.kind === 'incremental');
  assert.deepEqual(names(result.discard), ['x']);
  assert.deepEqual(names(result.incoming), ['c']);
});

test('diverged with --rollback and nothing new on the remote still rolls back', () => {
  const local = [snap('a'), snap('b'), snap('x', { guid: '77', createtxg: 5000 })];
  const result = plan([snap('a'), snap('b')], local, { rollback: true });
  assert.ok(result.kind === 'incremental');
  assert.deepEqual(names(result.discard), ['x']);
  assert.deepEqual(result.incoming, []);
});

test('--rollback plans to discard a held snapshot too: whose hold it is, only the host can tell', () => {
  const local = [snap('a'), snap('b'), snap('x', { guid: '77', createtxg: 5000, userrefs: 1 })];
  const result = plan([snap('a'), snap('b'), snap('c')], local, { rollback: true });
  assert.ok(result.kind === 'incremental');
  assert.deepEqual(names(result.discard), ['x']);
});

test('a diverged replica names its newest common snapshot, to be held through the conflict', () => {
  const local = [snap('a'), snap('b'), snap('x', { guid: '77', createtxg: 5000 })];
  const result = plan([snap('a'), snap('b'), snap('c')], local);
  assert.ok(result.kind === 'conflict');
  assert.equal(result.base?.local.name, 'b');
});

test('a long list of diverged snapshots is summarized', () => {
  const local = [
    snap('a'),
    ...Array.from({ length: 8 }, (_, index) => snap(`l${index}`, { guid: `9${index}`, createtxg: 9000 + index })),
  ];
  const result = plan([snap('a'), snap('b')], local);
  assert.ok(result.kind === 'conflict');
  assert.match(result.message, /@l0, @l1, @l2, @l3, @l4 and 3 more/);
});

test('with 20,000 snapshots per side the plan finds the base and exactly the 10 new ones', () => {
  const many = (count: number) =>
    Array.from({ length: count }, (_, index) => ({
      name: `s${index}`,
      guid: String(index + 1),
      createtxg: index + 1,
      creation: NOW - count + index,
      userrefs: 0,
    }));
  const result = plan(many(20_000), many(19_990));
  assert.ok(result.kind === 'incremental');
  assert.equal(result.incoming.length, 10);
});

test('the base snapshot destroyed on the remote: incremental from its bookmark, not a full resend', () => {
  const result = plan([snap('a'), snap('c'), snap('d')], [snap('a'), snap('b')], {}, [
    snap('b', { name: 'zfs_replicate-x-b' }),
  ]);
  assert.ok(result.kind === 'incremental');
  assert.equal(result.base.viaBookmark, true);
  assert.equal(result.base.remote.name, 'zfs_replicate-x-b');
  assert.equal(result.base.local.name, 'b');
  assert.deepEqual(names(result.incoming), ['c', 'd']);
  assert.deepEqual(
    plannedSends(result, 'tank/src').map((send) => send.arguments),
    [
      ['-i', 'tank/src#zfs_replicate-x-b', 'tank/src@c'],
      ['-I', 'tank/src@c', 'tank/src@d'],
    ],
  );
});

test('a snapshot beats a bookmark of the same guid, and a newer bookmark beats an older snapshot', () => {
  const both = plan([snap('a'), snap('b'), snap('c')], [snap('a'), snap('b')], {}, [snap('b', { name: 'bm' })]);
  assert.ok(both.kind === 'incremental' && !both.base.viaBookmark && both.base.remote.name === 'b');
  const newer = plan([snap('a'), snap('c')], [snap('a'), snap('b')], {}, [snap('b', { name: 'bm' })]);
  assert.ok(newer.kind === 'incremental' && newer.base.viaBookmark);
});

test('a base the remote keeps only as a bookmark, with nothing newer, is up to date: never diverged, never discarded', () => {
  // The admin destroyed @b at the source; falling back to @a would call the replica's only copy of @b
  // diverged, and --rollback would destroy it.
  for (const rollback of [false, true]) {
    const result = plan([snap('a')], [snap('a'), snap('b')], { rollback }, [snap('b', { name: 'bm' })]);
    assert.ok(result.kind === 'up-to-date', `rollback ${rollback}`);
    assert.equal(result.base.local.name, 'b');
    assert.equal(result.base.remote.name, 'bm');
    assert.equal(result.base.viaBookmark, true);
    assert.ok(sourceKeepsOnlyBookmark(result));
  }
  // Where the replica shares no older snapshot either, the same (not ENOCOMMON and a full resend).
  const gone = plan([snap('a')], [snap('b')], {}, [snap('b', { name: 'bm' })]);
  assert.equal(gone.kind, 'up-to-date');
  // Snapshots of the replica's own after that base are still diverged; --rollback takes only those.
  const diverged = plan([snap('a')], [snap('a'), snap('b'), snap('c')], {}, [snap('b', { name: 'bm' })]);
  assert.ok(diverged.kind === 'conflict');
  assert.equal(diverged.code, 'EDIVERGED');
  assert.equal(diverged.base?.local.name, 'b');
  const rolled = plan([snap('a')], [snap('a'), snap('b'), snap('c')], { rollback: true }, [snap('b', { name: 'bm' })]);
  assert.ok(rolled.kind === 'incremental');
  assert.deepEqual(
    rolled.discard.map((snapshot) => snapshot.name),
    ['c'],
  );
  assert.deepEqual(rolled.incoming, []);
  assert.equal(rolled.target.name, 'bm');
  assert.ok(sourceKeepsOnlyBookmark(rolled));
});

test('plannedSends: initial is a full stream then one -I; incremental is one -I; up to date sends nothing', () => {
  const initial = plan([snap('a'), snap('b'), snap('c')], undefined);
  assert.deepEqual(
    plannedSends(initial, 'tank/src').map((send) => [send.arguments, send.full]),
    [
      [['tank/src@a'], true],
      [['-I', 'tank/src@a', 'tank/src@c'], false],
    ],
  );
  assert.deepEqual(
    plannedSends(plan([snap('a')], undefined), 'tank/src').map((send) => send.arguments),
    [['tank/src@a']],
  );
  assert.deepEqual(
    plannedSends(plan([snap('a'), snap('b'), snap('c')], [snap('a')]), 'tank/src').map((send) => send.arguments),
    [['-I', 'tank/src@a', 'tank/src@c']],
  );
  assert.deepEqual(plannedSends(plan([snap('a')], [snap('a')]), 'tank/src'), []);
});

test('plannedSends counts the snapshots each stream carries, for the progress line', () => {
  const count = (result: ReturnType<typeof plan>) => plannedSends(result, 'tank/src').map((send) => send.snapshots);
  assert.deepEqual(count(plan([snap('a'), snap('b'), snap('c')], undefined)), [1, 2]);
  assert.deepEqual(count(plan([snap('a'), snap('b'), snap('c'), snap('d')], [snap('a')])), [3]);
  const viaBookmark = plan([snap('a'), snap('c'), snap('d'), snap('e')], [snap('a'), snap('b')], {}, [
    snap('b', { name: 'bm' }),
  ]);
  assert.deepEqual(count(viaBookmark), [1, 2]);
});

test('a new snapshot whose name the replica gives an older one (renamed by hand) is a conflict, not a failing receive', () => {
  // The replica's @b was renamed to @d by hand; the source has since taken a real @d.
  const local = [snap('a'), snap('d', { guid: snap('b').guid, createtxg: snap('b').createtxg })];
  const result = plan([snap('a'), snap('b'), snap('c'), snap('d')], local);
  assert.ok(result.kind === 'conflict');
  assert.equal(result.code, 'ENAMETAKEN');
  assert.equal(result.base?.local.name, 'd');
  assert.match(result.message, /^alpha:tank\/src has new @d, but local dataset backup\/dst already gives that name/);
  assert.match(result.message, /zfs rename backup\/dst@d backup\/dst@d-old\) and re-run \(nothing was changed\)$/);
});
