import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { chooseDefaultDirectory, directoryProblem } from '../../src/lock/directories.js';

const defaults = { system: '/run/lock/zfs_replicate', flag: '--lock-dir' };

test('the system directory when it can be used (root, as under cron)', () => {
  assert.deepEqual(chooseDefaultDirectory({ ...defaults, systemProblem: undefined, userBase: '/run/user/1000' }), {
    path: '/run/lock/zfs_replicate',
  });
});

test("a non-root user: zfs_replicate under the user's own directory", () => {
  assert.deepEqual(chooseDefaultDirectory({ ...defaults, systemProblem: 'EACCES', userBase: '/run/user/1000' }), {
    path: '/run/user/1000/zfs_replicate',
  });
});

test('no user directory (cron sets no XDG_RUNTIME_DIR), or a relative one: a message naming the flag and why', () => {
  for (const userBase of [undefined, 'relative/dir']) {
    const choice = chooseDefaultDirectory({ ...defaults, systemProblem: 'EACCES', userBase });
    assert.ok('problem' in choice);
    assert.match(choice.problem, /cannot use \/run\/lock\/zfs_replicate \(EACCES\).*--lock-dir/);
  }
});

test('directoryProblem: a writable directory is fine (created if asked), a file or a missing one is not', () => {
  const root = mkdtempSync(join(tmpdir(), 'zr-directories-'));
  assert.equal(directoryProblem(join(root, 'a/b'), true), undefined);
  assert.equal(directoryProblem(join(root, 'missing'), false), 'ENOENT');
  writeFileSync(join(root, 'file'), '');
  assert.match(directoryProblem(join(root, 'file'), true) ?? '', /not a directory/);
});
