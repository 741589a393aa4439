import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { chooseDefaultDirectory, directoryProblem } from '../../src/lock/directories.js';

const defaults = { system: '/run/lock/zfs_replicate', flag: '--lock-dir' };
/** A host where only the listed directories can be used; it records what was asked. */
function usable(...paths: string[]) {
  const asked: { path: string; create: boolean }[] = [];
  const problemOf = (path: string, create: boolean) => {
    asked.push({ path, create });
    return paths.includes(path) ? undefined : 'EACCES';
  };
  return { asked, problemOf };
}

test('the system directory when it can be used (root, as under cron); root may create it, others may not', () => {
  for (const createSystem of [true, false]) {
    const host = usable('/run/lock/zfs_replicate', '/run/user/1000/zfs_replicate');
    const choice = chooseDefaultDirectory(
      { ...defaults, createSystem, userDirectories: ['/run/user/1000/zfs_replicate'] },
      host.problemOf,
    );
    assert.deepEqual(choice, { path: '/run/lock/zfs_replicate' });
    assert.deepEqual(host.asked, [{ path: '/run/lock/zfs_replicate', create: createSystem }]);
  }
});

test("a non-root user: the first of the user's own directories that works, created", () => {
  const host = usable('/home/backup/.local/state/zfs_replicate/locks');
  const choice = chooseDefaultDirectory(
    {
      ...defaults,
      createSystem: false,
      userDirectories: ['/run/user/1000/zfs_replicate', '/home/backup/.local/state/zfs_replicate/locks'],
    },
    host.problemOf,
  );
  assert.deepEqual(choice, { path: '/home/backup/.local/state/zfs_replicate/locks' });
  assert.deepEqual(
    host.asked.map((ask) => ask.create),
    [false, true, true],
  );
});

test('no usable directory (none given, relative, or unwritable): one message naming each place and the flag', () => {
  const host = usable();
  const choice = chooseDefaultDirectory(
    { ...defaults, createSystem: false, userDirectories: [undefined, 'relative/dir', '/home/x/locks'] },
    host.problemOf,
  );
  assert.ok('problem' in choice);
  assert.equal(
    choice.problem,
    'cannot use /run/lock/zfs_replicate (EACCES), nor /home/x/locks (EACCES): choose a writable directory with --lock-dir',
  );
  assert.deepEqual(
    host.asked.map((ask) => ask.path),
    ['/run/lock/zfs_replicate', '/home/x/locks'],
  );
});

test('directoryProblem: a writable directory is fine (created if asked), a file or a missing one is not', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'zr-directories-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  assert.equal(directoryProblem(join(root, 'a/b'), true), undefined);
  assert.equal(directoryProblem(join(root, 'missing'), false), 'ENOENT');
  writeFileSync(join(root, 'file'), '');
  assert.match(directoryProblem(join(root, 'file'), true) ?? '', /not a directory/);
});
