import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { FailureError, LockedError } from '../../src/errors/errors.js';
import { acquireLock, acquireLocks, lockFileName } from '../../src/lock/lock.js';

const directory = mkdtempSync(join(tmpdir(), 'zr-lock-test-'));
after(() => rmSync(directory, { recursive: true, force: true }));
const now = () => new Date();
const lockModule = fileURLToPath(new URL('../../src/lock/lock.js', import.meta.url));

test('a second lock on the same dataset is refused with the holder pid; another dataset is free', () => {
  const first = acquireLock(directory, 'tank/a', now);
  try {
    assert.throws(
      () => acquireLock(directory, 'tank/a', now),
      (error: unknown) => {
        assert.ok(error instanceof LockedError);
        assert.equal(error.exitCode, 3);
        assert.match(
          error.message,
          new RegExp(
            `another run \\(pid ${process.pid}\\) has been replicating into tank/a for \\d+ seconds?; skipping this run`,
          ),
        );
        return true;
      },
    );
    acquireLock(directory, 'tank/b', now).release();
  } finally {
    first.release();
  }
  acquireLock(directory, 'tank/a', now).release();
});

test('dataset names map to distinct lock files (slashes, spaces)', () => {
  const one = acquireLock(directory, 'tank/x y', now);
  const two = acquireLock(directory, 'tank/x/y', now);
  assert.notEqual(one.path, two.path);
  one.release();
  two.release();
});

test('the longest legal dataset names still get a lock file under the 255-byte name limit, each its own', () => {
  const longest = `tank/${'a'.repeat(250)}`;
  const twin = `tank/${'a'.repeat(249)}b`;
  const spaced = `tank/${'x y/'.repeat(62)}z`;
  for (const name of [longest, twin, spaced]) assert.ok(Buffer.byteLength(lockFileName(name)) <= 255, name);
  assert.notEqual(lockFileName(longest), lockFileName(twin));
  const lock = acquireLock(directory, spaced, now);
  lock.release();
  assert.equal(lockFileName('tank/x y'), 'tank%2Fx%20y.lock', 'short names stay readable');
});

test('a lock directory that cannot be used is ELOCK naming --lock-dir, never an internal error', () => {
  const file = join(directory, 'plain-file');
  acquireLock(directory, 'make-the-file', now).release();
  for (const bad of [
    join(directory, 'make-the-file.lock'),
    '/proc/version/locks',
    file.replace('plain-file', 'make-the-file.lock/sub'),
  ]) {
    assert.throws(
      () => acquireLock(bad, 'tank/x', now),
      (error: unknown) => {
        assert.ok(error instanceof FailureError, String(error));
        assert.equal(error.code, 'ELOCK');
        assert.match(error.message, /--lock-dir/);
        return true;
      },
    );
  }
});

test('acquireLocks takes many locks in one go: each one its own answer, a held one refused alone', () => {
  const held = acquireLock(directory, 'tank/many/held', now);
  const names = Array.from({ length: 150 }, (_, index) => `tank/many/m${index}`);
  const attempts = acquireLocks(directory, ['tank/many/held', ...names], now);
  try {
    assert.equal(attempts.length, 151);
    assert.ok(attempts[0] instanceof LockedError, String(attempts[0]));
    for (const [index, attempt] of attempts.slice(1).entries()) {
      assert.ok(!(attempt instanceof Error), `${names[index]}: ${String(attempt)}`);
      assert.equal(attempt.path, join(directory, lockFileName(names[index] ?? '')));
    }
    // Every one of them is really held: a second attempt on any is refused.
    const again = acquireLocks(directory, [names[0] ?? '', names[149] ?? ''], now);
    assert.ok(again.every((attempt) => attempt instanceof LockedError));
  } finally {
    held.release();
    for (const attempt of attempts) if (!(attempt instanceof Error)) attempt.release();
  }
  const freed = acquireLocks(directory, ['tank/many/held', names[0] ?? ''], now);
  assert.ok(freed.every((attempt) => !(attempt instanceof Error)));
  for (const attempt of freed) if (!(attempt instanceof Error)) attempt.release();
});

test('acquireLocks: a lock file that cannot be opened fails that dataset only, as ELOCK', () => {
  mkdirSync(join(directory, lockFileName('tank/a-directory')));
  const attempts = acquireLocks(directory, ['tank/before', 'tank/a-directory', 'tank/after'], now);
  const [before, blocked, after] = attempts;
  assert.ok(blocked instanceof FailureError && blocked.code === 'ELOCK', String(blocked));
  assert.match(blocked.message, /--lock-dir/);
  for (const attempt of [before, after]) {
    assert.ok(attempt !== undefined && !(attempt instanceof Error), String(attempt));
    attempt.release();
  }
});

test('when flock itself fails, ELOCK carries its own words (here: not installed), for every lock asked', () => {
  const bin = mkdtempSync(join(tmpdir(), 'zr-lock-bin-'));
  symlinkSync('/bin/sh', join(bin, 'sh'));
  const path = process.env.PATH;
  process.env.PATH = bin;
  try {
    for (const attempt of acquireLocks(directory, ['tank/no-flock-1', 'tank/no-flock-2'], now)) {
      assert.ok(attempt instanceof FailureError && attempt.code === 'ELOCK', String(attempt));
      assert.match(attempt.message, /flock.*not found/);
    }
  } finally {
    process.env.PATH = path;
    rmSync(bin, { recursive: true, force: true });
  }
  acquireLock(directory, 'tank/no-flock-1', now).release();
});

async function holderProcess(dataset: string): Promise<ReturnType<typeof spawn>> {
  const child = spawn(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `
    const { acquireLock } = await import(${JSON.stringify(lockModule)});
    acquireLock(${JSON.stringify(directory)}, ${JSON.stringify(dataset)}, () => new Date());
    console.log('locked');
    setInterval(() => {}, 1000);
  `,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise<void>((resolve) => child.stdout!.once('data', () => resolve()));
  return child;
}

test('a SIGKILLed holder leaves no stuck lock', async () => {
  const child = await holderProcess('tank/killed');
  assert.throws(() => acquireLock(directory, 'tank/killed', now), LockedError);
  child.kill('SIGKILL');
  await new Promise((resolve) => child.once('exit', resolve));
  acquireLock(directory, 'tank/killed', now).release();
});

test('a process that inherited the lock descriptor keeps the lock after the holder lets go', async () => {
  const lock = acquireLock(directory, 'tank/inherited', now);
  const orphan = spawn('sleep', ['30'], { stdio: ['ignore', 'ignore', 'ignore', lock.fd] });
  lock.release();
  assert.throws(() => acquireLock(directory, 'tank/inherited', now), LockedError);
  orphan.kill('SIGKILL');
  await new Promise((resolve) => orphan.once('exit', resolve));
  acquireLock(directory, 'tank/inherited', now).release();
});
