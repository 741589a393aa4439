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
