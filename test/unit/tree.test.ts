import assert from 'node:assert/strict';
import { test } from 'node:test';
import { planTree } from '../../src/replication/tree.js';
import type { Listing } from '../../src/zfs/listing.js';
import type { DatasetState } from '../../src/zfs/types.js';

function listing(...names: string[]): Listing {
  return new Map(
    names.map((name): [string, DatasetState] => [
      name,
      {
        dataset: name,
        exists: true,
        snapshots: [{ name: 'a', guid: String(name.length), createtxg: 1, creation: 1, userrefs: 0 }],
        bookmarks: [],
      },
    ]),
  );
}

test('every remote dataset under the root maps to the same relative path, parents before children', () => {
  const tree = planTree({
    remoteRoot: 'pool/vm',
    localRoot: 'backup/host/vm',
    remote: listing('pool/vm/web/disk0', 'pool/vm', 'pool/vm/db', 'pool/vm/web', 'pool/vmware', 'pool/other'),
    local: listing('backup/host/vm', 'backup/host/vm/web'),
    exclude: [],
  });
  assert.deepEqual(
    tree.members.map((member) => [
      member.remoteDataset,
      member.localDataset,
      member.remote.exists,
      member.local.exists,
    ]),
    [
      ['pool/vm', 'backup/host/vm', true, true],
      ['pool/vm/db', 'backup/host/vm/db', true, false],
      ['pool/vm/web', 'backup/host/vm/web', true, true],
      ['pool/vm/web/disk0', 'backup/host/vm/web/disk0', true, false],
    ],
  );
  assert.equal(tree.members[0]!.remote.snapshots.length, 1, 'each member carries its own listed snapshots');
  assert.deepEqual(tree.localOnly, []);
});

test('a missing remote root is still a member, so the single-dataset planner reports it', () => {
  const tree = planTree({
    remoteRoot: 'pool/gone',
    localRoot: 'backup/gone',
    remote: new Map(),
    local: new Map(),
    exclude: [],
  });
  assert.deepEqual(
    tree.members.map((member) => [member.remoteDataset, member.remote.exists]),
    [['pool/gone', false]],
  );
});

test('--exclude leaves out a dataset and its subtree, and its replica is not reported as local-only', () => {
  const tree = planTree({
    remoteRoot: 'pool/vm',
    localRoot: 'backup/vm',
    remote: listing('pool/vm', 'pool/vm/swap', 'pool/vm/swap/x', 'pool/vm/swapfile', 'pool/vm/db'),
    local: listing('backup/vm', 'backup/vm/swap'),
    exclude: ['pool/vm/swap'],
  });
  assert.deepEqual(
    tree.members.map((member) => member.remoteDataset),
    ['pool/vm', 'pool/vm/db', 'pool/vm/swapfile'],
  );
  assert.deepEqual(tree.localOnly, []);
});

test('replicas whose source is gone are reported once per subtree, never members (so never expired or destroyed)', () => {
  const tree = planTree({
    remoteRoot: 'pool/vm',
    localRoot: 'backup/vm',
    remote: listing('pool/vm', 'pool/vm/db'),
    local: listing('backup/vm', 'backup/vm/db', 'backup/vm/old', 'backup/vm/old/disk', 'backup/vm/older', 'backup/vmx'),
    exclude: [],
  });
  assert.deepEqual(tree.localOnly, ['backup/vm/old', 'backup/vm/older']);
  assert.deepEqual(
    tree.members.map((member) => member.localDataset),
    ['backup/vm', 'backup/vm/db'],
  );
});
