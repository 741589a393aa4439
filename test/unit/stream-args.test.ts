import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bookmarkPrefix } from '../../src/replication/bookmarks.js';
import { datasetNameProblem } from '../../src/zfs/names.js';
import { receiveArgv, replicaProperties, sendFlags } from '../../src/zfs/stream-args.js';
import type { HostFeatures } from '../../src/zfs/types.js';
import { FUSE_FEATURES } from '../fakes/fake-zfs.js';

const fuse: HostFeatures = FUSE_FEATURES;
const openzfs: HostFeatures = {
  zfsVersion: 'zfs-2.3.2',
  parsableList: true,
  holdsCommand: true,
  openzfs: true,
  tools: new Set(),
};

test('send flags: -L -e -c between OpenZFS hosts, -w for an encrypted source, nothing where either end is zfs-fuse', () => {
  assert.deepEqual(sendFlags(openzfs, openzfs, false), ['-L', '-e', '-c']);
  assert.deepEqual(sendFlags(openzfs, openzfs, true), ['-w']);
  assert.deepEqual(sendFlags(fuse, openzfs, true), []);
  assert.deepEqual(sendFlags(openzfs, fuse, false), []);
});

test('receive: never -F; resumable and with the replica properties on OpenZFS; plain on zfs-fuse', () => {
  assert.deepEqual(receiveArgv(fuse, 'b/r', 'filesystem'), ['zfs', 'recv', '-u', '-v', 'b/r']);
  assert.deepEqual(receiveArgv(openzfs, 'b/r'), ['zfs', 'recv', '-u', '-v', '-s', 'b/r']);
  assert.deepEqual(receiveArgv(openzfs, 'b/r', 'filesystem'), [
    'zfs',
    'recv',
    '-u',
    '-v',
    '-s',
    '-o',
    'readonly=on',
    '-o',
    'com.sun:auto-snapshot=false',
    '-o',
    'canmount=noauto',
    'b/r',
  ]);
  assert.ok(!receiveArgv(openzfs, 'b/v', 'volume').includes('canmount=noauto'), 'volumes have no canmount');
  for (const argv of [receiveArgv(fuse, 'x'), receiveArgv(openzfs, 'x', 'filesystem')]) assert.ok(!argv.includes('-F'));
});

test('replica properties: readonly, no auto-snapshot; no auto-mount for filesystems', () => {
  assert.deepEqual(replicaProperties('volume'), [
    ['readonly', 'on'],
    ['com.sun:auto-snapshot', 'false'],
  ]);
  assert.equal(replicaProperties('filesystem').length, 3);
});

test('bookmark names are valid, per tag, and distinct for tags that slug alike', () => {
  for (const tag of ['offsite', 'a b$(x)', 'é'])
    assert.equal(datasetNameProblem(`pool/ds${bookmarkPrefix(tag)}1`.replace('#', '')), undefined, tag);
  assert.notEqual(bookmarkPrefix('a b'), bookmarkPrefix('a_b'));
  assert.ok(bookmarkPrefix('offsite').startsWith('zfs_replicate-offsite-'));
});
