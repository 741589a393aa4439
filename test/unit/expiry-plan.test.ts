import assert from 'node:assert/strict';
import { test } from 'node:test';
import { planExpiry } from '../../src/retention/plan.js';
import type { Snapshot } from '../../src/zfs/types.js';

const DAY = 86_400;
const NOW = 1_800_000_000;
const snap = (name: string, ageDays: number, extra: Partial<Snapshot> = {}): Snapshot => ({
  name,
  guid: `g-${name}`,
  createtxg: 1000 - ageDays,
  creation: NOW - ageDays * DAY,
  userrefs: 0,
  ...extra,
});

test('snapshots older than keep expire; newer ones survive', () => {
  const local = [snap('a', 40), snap('b', 31), snap('c', 29), snap('d', 1)];
  const plan = planExpiry({ local, remote: local, bases: new Set(['g-d']), nowSeconds: NOW, keepSeconds: 30 * DAY });
  assert.deepEqual(
    plan.expire.map((candidate) => candidate.snapshot.name),
    ['a', 'b'],
  );
  assert.deepEqual(
    plan.survivors.map((survivor) => [survivor.snapshot.name, survivor.reason]),
    [
      ['c', 'within-keep'],
      ['d', 'base'],
    ],
  );
});

test('the base survives whatever its age (a replica offline longer than keep)', () => {
  const local = [snap('a', 100), snap('b', 90)];
  const plan = planExpiry({ local, remote: local, bases: new Set(['g-b']), nowSeconds: NOW, keepSeconds: 30 * DAY });
  assert.deepEqual(
    plan.expire.map((candidate) => candidate.snapshot.name),
    ['a'],
  );
  assert.deepEqual(
    plan.survivors.map((survivor) => survivor.reason),
    ['base'],
  );
});

test('without a known base nothing expires', () => {
  const local = [snap('a', 100), snap('b', 90)];
  const plan = planExpiry({ local, remote: [], bases: new Set(), nowSeconds: NOW, keepSeconds: DAY });
  assert.deepEqual(plan.expire, []);
});

test('a remote twin is named only where it may carry a hold; local-only snapshots are candidates too', () => {
  const local = [snap('a', 50), snap('b', 45), snap('local-only', 44), snap('z', 0)];
  const remote = [snap('a', 50, { userrefs: 1 }), snap('b', 45), snap('z', 0, { userrefs: 1 })];
  const plan = planExpiry({ local, remote, bases: new Set(['g-z']), nowSeconds: NOW, keepSeconds: 30 * DAY });
  assert.deepEqual(
    plan.expire.map((candidate) => [candidate.snapshot.name, candidate.remoteTwin?.name]),
    [
      ['a', 'a'],
      ['b', undefined],
      ['local-only', undefined],
    ],
  );
});

test('keep 0 expires everything but the base', () => {
  const local = [snap('a', 3), snap('b', 2), snap('c', 1)];
  const plan = planExpiry({ local, remote: local, bases: new Set(['g-c']), nowSeconds: NOW, keepSeconds: 0 });
  assert.deepEqual(
    plan.expire.map((candidate) => candidate.snapshot.name),
    ['a', 'b'],
  );
});
