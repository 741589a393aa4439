import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ListingParseError, datasetState, parseGetOutput, parseListOutput } from '../../src/zfs/listing.js';
import { parseProbe } from '../../src/zfs/probe.js';

// Captured from zfs-fuse 0.7.0 on the test bed: `zfs get -Hp -d 1 -o name,property,value type,guid,... DS`.
const ZFS_FUSE_GET = [
  'tank/src/data\ttype\tfilesystem',
  'tank/src/data\tguid\t12695405647637985226',
  'tank/src/data\tcreatetxg\t8',
  'tank/src/data\tcreation\t1795325235',
  'tank/src/data\tuserrefs\t-',
  'tank/src/data@s 2\ttype\tsnapshot',
  'tank/src/data@s 2\tguid\t18247172126131047321',
  'tank/src/data@s 2\tcreatetxg\t20',
  'tank/src/data@s 2\tcreation\t1795325236',
  'tank/src/data@s 2\tuserrefs\t0',
  'tank/src/data@s1\ttype\tsnapshot',
  'tank/src/data@s1\tguid\t7729248623947599458',
  'tank/src/data@s1\tcreatetxg\t15',
  'tank/src/data@s1\tcreation\t1795325235',
  'tank/src/data@s1\tuserrefs\t1',
  'tank/src/data/child\ttype\tfilesystem',
  'tank/src/data/child\tguid\t15408460573992732981',
  'tank/src/data/child\tcreatetxg\t10',
  'tank/src/data/child\tcreation\t1795325235',
  'tank/src/data/child\tuserrefs\t-',
  '',
].join('\n');

test('zfs-fuse `get -Hp` output: snapshots of this dataset only, ordered by createtxg, guids exact', () => {
  const state = datasetState(parseGetOutput(ZFS_FUSE_GET, 'tank/src/data'), 'tank/src/data');
  assert.equal(state.exists, true);
  assert.equal(state.type, 'filesystem');
  assert.deepEqual(state.snapshots, [
    { name: 's1', guid: '7729248623947599458', createtxg: 15, creation: 1795325235, userrefs: 1 },
    { name: 's 2', guid: '18247172126131047321', createtxg: 20, creation: 1795325236, userrefs: 0 },
  ]);
});

test('OpenZFS `list -Hp` output: the same snapshots, plus bookmarks, the resume token and encryption', () => {
  const stdout = [
    'tank/src/data\tfilesystem\t12695405647637985226\t8\t1795325235\t-\t1-e604ea4bf-e0-789c63a2\taes-256-gcm',
    'tank/src/data@s1\tsnapshot\t7729248623947599458\t15\t1795325235\t1\t-\taes-256-gcm',
    'tank/src/data/child\tfilesystem\t15408460573992732981\t10\t1795325235\t-\t-\taes-256-gcm',
    'tank/src/data#s1\tbookmark\t7729248623947599458\t15\t1795325235\t-\t-\t-',
    'tank/src/data@s 2\tsnapshot\t18247172126131047321\t20\t1795325236\t0\t-\taes-256-gcm',
    '',
  ].join('\n');
  const state = datasetState(parseListOutput(stdout, 'tank/src/data'), 'tank/src/data');
  const fuse = datasetState(parseGetOutput(ZFS_FUSE_GET, 'tank/src/data'), 'tank/src/data');
  assert.deepEqual(state.snapshots, fuse.snapshots);
  assert.deepEqual(state.bookmarks, [
    { name: 's1', guid: '7729248623947599458', createtxg: 15, creation: 1795325235, userrefs: 0 },
  ]);
  assert.equal(state.resumeToken, '1-e604ea4bf-e0-789c63a2');
  assert.equal(state.encrypted, true);
  assert.equal(fuse.resumeToken, undefined);
  assert.deepEqual(fuse.bookmarks, []);
});

test('an unencrypted dataset without a partial receive', () => {
  const state = datasetState(parseListOutput('tank/a\tvolume\t1\t1\t1\t-\t-\toff\n', 'tank/a'), 'tank/a');
  assert.equal(state.type, 'volume');
  assert.equal(state.resumeToken, undefined);
  assert.equal(state.encrypted, false);
});

test('a dataset whose name prefixes another is not confused with it: its rows are refused, never taken', () => {
  const stdout =
    'tank/a\tfilesystem\t1\t1\t1\t-\t-\toff\ntank/ab@x\tsnapshot\t2\t2\t2\t0\t-\toff\ntank/a@y\tsnapshot\t3\t3\t3\t0\t-\toff\n';
  assert.throws(() => parseListOutput(stdout, 'tank/a'), /"tank\/ab@x" is not under the requested tank\/a/);
  const own = stdout
    .split('\n')
    .filter((line) => !line.startsWith('tank/ab'))
    .join('\n');
  assert.deepEqual(
    datasetState(parseListOutput(own, 'tank/a'), 'tank/a').snapshots.map((snapshot) => snapshot.name),
    ['y'],
  );
});

test('a tree listing (`-r`) gives every dataset its own snapshots, volumes included', () => {
  const stdout = [
    'tank/vm\tfilesystem\t1\t5\t100\t-\t-\toff',
    'tank/vm@a\tsnapshot\t2\t6\t101\t1\t-\toff',
    'tank/vm/disk\tvolume\t3\t7\t100\t-\t-\toff',
    'tank/vm/disk@a\tsnapshot\t4\t8\t101\t0\t-\toff',
    'tank/vm/disk#zfs_replicate-x-1\tbookmark\t4\t8\t101\t-\t-\t-',
    'tank/vm/web server\tfilesystem\t5\t9\t100\t-\t-\toff',
    '',
  ].join('\n');
  const listing = parseListOutput(stdout, 'tank/vm');
  assert.deepEqual([...listing.keys()], ['tank/vm', 'tank/vm/disk', 'tank/vm/web server']);
  assert.deepEqual(
    datasetState(listing, 'tank/vm').snapshots.map((snapshot) => snapshot.guid),
    ['2'],
  );
  const disk = datasetState(listing, 'tank/vm/disk');
  assert.equal(disk.type, 'volume');
  assert.deepEqual(
    disk.snapshots.map((snapshot) => snapshot.guid),
    ['4'],
  );
  assert.deepEqual(
    disk.bookmarks.map((bookmark) => bookmark.name),
    ['zfs_replicate-x-1'],
  );
  assert.deepEqual(datasetState(listing, 'tank/vm/web server').snapshots, []);
  assert.equal(datasetState(listing, 'tank/vm/gone').exists, false);
});

test('malformed output is an error, never a silently empty listing', () => {
  assert.throws(() => parseListOutput('tank/a\tfilesystem\n', 'tank/a'), ListingParseError);
  assert.throws(() => parseGetOutput('tank/a@x\tguid\t1.31E\n', 'tank/a'), /expected a number/);
  // A hostile or broken remote: rows outside what was asked for, or two snapshots of one dataset claiming one guid.
  const row = (name: string, guid: string) => `${name}\tsnapshot\t${guid}\t5\t100\t0\t-\toff`;
  const own = 'tank/a\tfilesystem\t1\t1\t1\t-\t-\toff';
  assert.throws(
    () => parseListOutput([own, row('tank/b@x', '7')].join('\n'), 'tank/a'),
    /"tank\/b@x" is not under the requested tank\/a/,
  );
  assert.throws(() => parseListOutput([own, row('tank/ab@x', '7')].join('\n'), 'tank/a'), /not under the requested/);
  assert.throws(
    () => parseListOutput([own, row('tank/a@x', '7'), row('tank/a@y', '7')].join('\n'), 'tank/a'),
    /two snapshots have the guid 7 \(tank\/a@y\)/,
  );
});

test("a guid may repeat across datasets of a tree: a received copy keeps its snapshots' guids", () => {
  const own = (name: string, guid: string) => `${name}\tfilesystem\t${guid}\t1\t1\t-\t-\toff`;
  const snapshot = (name: string, guid: string) => `${name}\tsnapshot\t${guid}\t5\t100\t0\t-\toff`;
  const listing = parseListOutput(
    [
      own('tank/vm', '1'),
      own('tank/vm/web', '2'),
      snapshot('tank/vm/web@daily-1', '999'),
      own('tank/vm/web-restore', '3'),
      snapshot('tank/vm/web-restore@daily-1', '999'),
    ].join('\n'),
    'tank/vm',
  );
  assert.equal(datasetState(listing, 'tank/vm/web').snapshots[0]?.guid, '999');
  assert.equal(datasetState(listing, 'tank/vm/web-restore').snapshots[0]?.guid, '999');
});

test('probe output: zfs-fuse has no version, no list -p, no holds', () => {
  const { features } = parseProbe('tool=mbuffer\ntool=zstd\nzfs=1\n', 'beta');
  assert.equal(features.zfsVersion, undefined);
  assert.equal(features.parsableList, false);
  assert.equal(features.holdsCommand, false);
  assert.equal(features.openzfs, false);
  assert.deepEqual([...features.tools], ['mbuffer', 'zstd']);
});

test('probe output: OpenZFS 2.3', () => {
  const { features } = parseProbe('tool=lz4\nzfs_version=zfs-2.3.2-2~bpo12+2\nlist_p=1\nzfs=1\n', 'gamma');
  assert.equal(features.zfsVersion, 'zfs-2.3.2-2~bpo12+2');
  assert.equal(features.parsableList, true);
  assert.equal(features.holdsCommand, true);
  assert.equal(features.openzfs, true);
});

test('probe output without zfs is an error naming the host', () => {
  assert.throws(() => parseProbe('tool=lz4\n', 'alpha'), /alpha: no zfs command found/);
});
