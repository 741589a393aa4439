import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Endpoint } from '../../src/exec/endpoint.js';
import { type CommandResult, CommandRunner } from '../../src/exec/runner.js';
import { ZfsHost } from '../../src/zfs/host.js';
import { FUSE_FEATURES, OPENZFS_FEATURES } from '../fakes/fake-zfs.js';

const source: Endpoint = {
  label: 'alpha',
  isRemote: true,
  wrap: () => assert.fail('not run'),
  wrapScript: () => assert.fail('not run'),
};

/** OpenZFS's `zfs holds` over these snapshots: it fails whole when one of them is gone, as `zfs_for_each` does. */
class HoldsRunner extends CommandRunner {
  readonly asked: string[][] = [];
  constructor(
    private readonly existing: ReadonlyMap<string, string[]>,
    private readonly otherError = '',
  ) {
    super();
  }
  override async attempt(_endpoint: Endpoint, argv: readonly string[]): Promise<CommandResult> {
    const names = argv.slice(3);
    this.asked.push(names);
    const missing = names.filter((name) => !this.existing.has(name));
    const stdout = names.flatMap((name) =>
      (this.existing.get(name) ?? []).map((tag) => `${name}\t${tag}\tSun Nov 22 2026\n`),
    );
    const stderr = missing.map((name) => `cannot open '${name}': dataset does not exist\n`).join('') + this.otherError;
    const failed = stderr !== '';
    return {
      exitStatus: failed ? 1 : 0,
      signal: undefined,
      stdout: stdout.join(''),
      stderr,
      spawnError: undefined,
      outputTooLarge: false,
    };
  }
}

test('a snapshot destroyed since the listing carries no tag: the others are still read, not a failed run', async () => {
  const runner = new HoldsRunner(
    new Map([
      ['tank/src@s2', ['bk']],
      ['tank/src@s3', ['bk', 'peer']],
    ]),
  );
  const host = new ZfsHost(runner, source, OPENZFS_FEATURES);
  const tags = await host.tagsOn(['tank/src@s1', 'tank/src@s2', 'tank/src@s3']);
  assert.deepEqual(Object.fromEntries(tags), {
    'tank/src@s1': [],
    'tank/src@s2': ['bk'],
    'tank/src@s3': ['bk', 'peer'],
  });
  assert.deepEqual(runner.asked, [
    ['tank/src@s1', 'tank/src@s2', 'tank/src@s3'],
    ['tank/src@s2', 'tank/src@s3'],
  ]);
  assert.deepEqual(Object.fromEntries(await host.holds('tank/src', ['s1'])), { s1: [] });
});

test('any other failure of zfs holds is still an error, naming the host and what zfs said', async () => {
  const runner = new HoldsRunner(new Map([['tank/src@s2', ['bk']]]), 'internal error: out of memory\n');
  const host = new ZfsHost(runner, source, OPENZFS_FEATURES);
  await assert.rejects(host.tagsOn(['tank/src@s1', 'tank/src@s2']), /alpha.*out of memory/s);
});

test('a stop that comes while a destroy runs ends destroySnapshots with what went, not with that destroy failed', async () => {
  const stop = new AbortController();
  const destroyed: string[] = [];
  class StoppedRunner extends CommandRunner {
    override async attempt(_endpoint: Endpoint, argv: readonly string[]): Promise<CommandResult> {
      const name = argv.at(-1)!;
      const cancelled = name.endsWith('@s2');
      if (cancelled) stop.abort();
      else destroyed.push(name);
      return {
        exitStatus: cancelled ? undefined : 0,
        signal: cancelled ? 'SIGTERM' : undefined,
        stdout: '',
        stderr: '',
        spawnError: cancelled ? 'cancelled' : undefined,
        outputTooLarge: false,
      };
    }
  }
  const host = new ZfsHost(new StoppedRunner(), source, FUSE_FEATURES);
  const results = await host.destroySnapshots('tank/dst', ['s1', 's2', 's3'], stop.signal);
  assert.deepEqual([...results.keys()], ['s1']);
  assert.deepEqual(destroyed, ['tank/dst@s1']);
});

/** Answers every command at once with a listing of tank/src (zfs get form), counting what it was asked to start. */
class CountingRunner extends CommandRunner {
  readonly started: string[] = [];
  protected override async spawn(endpoint: Endpoint, argv: readonly string[]): Promise<CommandResult> {
    this.started.push(`${endpoint.label}$ ${argv.join(' ')}`);
    const stdout = argv[1] === 'get' && argv.includes('-d') ? 'tank/src\ttype\tfilesystem\ntank/src\tguid\t7\n' : '-\n';
    return { exitStatus: 0, signal: undefined, stdout, stderr: '', spawnError: undefined, outputTooLarge: false };
  }
}

test('a command started early is run once, by the first who asks for it; later asks run it again', async () => {
  const runner = new CountingRunner();
  const other: Endpoint = { ...source, label: 'beta' };
  runner.startEarly(source, ['zfs', 'get', 'x']);
  assert.deepEqual(runner.started, ['alpha$ zfs get x']);
  await runner.attempt(other, ['zfs', 'get', 'x']);
  await runner.attempt(source, ['zfs', 'get', 'x']);
  assert.deepEqual(runner.started, ['alpha$ zfs get x', 'beta$ zfs get x']);
  await runner.attempt(source, ['zfs', 'get', 'x']);
  assert.deepEqual(runner.started, ['alpha$ zfs get x', 'beta$ zfs get x', 'alpha$ zfs get x']);
});

test("the source's reads started early in the form the remote takes are the run's own: no command twice", async () => {
  const runner = new CountingRunner();
  new ZfsHost(runner, source, FUSE_FEATURES).startListing('tank/src', 'dataset');
  new ZfsHost(runner, source, FUSE_FEATURES).startPropertyRead('tank/src', 'zfs_replicate:pull');
  new ZfsHost(runner, source, FUSE_FEATURES).startUserPropertyRead('zfs_replicate:pull', 'tank/src');
  const host = new ZfsHost(runner, source, FUSE_FEATURES);
  assert.equal((await host.state('tank/src')).guid, '7');
  assert.equal(await host.propertyOf('tank/src', 'zfs_replicate:pull'), undefined);
  assert.deepEqual(await host.userProperty('zfs_replicate:pull', 'tank/src'), new Map());
  assert.equal(runner.started.length, 3);
});

test('a listing started early in a form the remote does not take is never read: the run lists in its own form', async () => {
  const runner = new CountingRunner();
  new ZfsHost(runner, source, OPENZFS_FEATURES).startListing('tank/src', 'dataset');
  const state = await new ZfsHost(runner, source, FUSE_FEATURES).state('tank/src');
  assert.equal(state.guid, '7');
  assert.deepEqual(
    runner.started.map((command) => command.split(' ').slice(1, 3).join(' ')),
    ['zfs list', 'zfs get'],
  );
});
