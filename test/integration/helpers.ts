import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { type CommandOutcome, TESTBED_DIR, type Testbed } from '../testbed/testbed.js';

export const SSHD_LOG = (host: string) => `${TESTBED_DIR}/hosts/${host}/sshd.log`;

/** ssh connections accepted so far by `host`'s sshd. */
export function sshHandshakes(host: string): number {
  return readFileSync(SSHD_LOG(host), 'utf8')
    .split('\n')
    .filter((line) => line.includes('Accepted publickey')).length;
}

export function assertExit(outcome: CommandOutcome, expected: number, context = ''): void {
  assert.equal(
    outcome.exitCode,
    expected,
    `${context} exit ${outcome.exitCode}, expected ${expected}\nstdout: ${outcome.stdout}\nstderr: ${outcome.stderr}`,
  );
}

/** Everything a run could change on a host's pool: datasets, snapshots with guids and hold counts. */
export async function poolSnapshot(tb: Testbed, host: string): Promise<string> {
  const outcome = await tb.on(host, [
    'zfs',
    'get',
    '-Hp',
    '-r',
    '-o',
    'name,property,value',
    'guid,userrefs,readonly',
    'tank',
  ]);
  return outcome.stdout;
}

/** The standard flags of a pull from `from`. */
export function pullArgs(from: string, remote: string, local: string, tag: string): string[] {
  return ['-h', from, '-r', remote, '-l', local, '-t', tag, '-k', '30', '--ssh-option', 'ServerAliveInterval=1'];
}

/** Runs zfs_replicate with the standard flags plus `extra`. */
export function pull(
  tb: Testbed,
  on: string,
  from: string,
  remote: string,
  local: string,
  tag: string,
  extra: string[] = [],
): Promise<CommandOutcome> {
  return tb.cli(on, [...pullArgs(from, remote, local, tag), ...extra]);
}

export async function snapshotSeries(tb: Testbed, host: string, dataset: string, names: string[]): Promise<void> {
  for (const name of names) await tb.writeAndSnapshot(host, dataset, name);
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** `prefix`1 .. `prefix``count`: snapshot names for a series. */
export const series = (prefix: string, count: number): string[] =>
  Array.from({ length: count }, (_, index) => `${prefix}${index + 1}`);

/** A new dataset on `host` (parents created as needed) with one snapshot per name, each over 1 MB of new data. */
export async function sourceWithSnapshots(tb: Testbed, host: string, dataset: string, names: string[]): Promise<void> {
  await tb.zfs(host, 'create', '-p', dataset);
  await snapshotSeries(tb, host, dataset, names);
}

/**
 * A replica a test can start from: `remote` is made on alpha with snapshots `names`, then beta pulls it into
 * `local` with tag "beta", so both sides hold the newest snapshot.
 */
export async function pulledReplica(tb: Testbed, remote: string, local: string, names: string[]): Promise<void> {
  await sourceWithSnapshots(tb, 'alpha', remote, names);
  assertExit(await pull(tb, 'beta', 'alpha', remote, local, 'beta'), 0, `set-up: initial pull into ${local}:`);
}

/**
 * A RegExp written like a regex literal, with dataset names interpolated: the literal parts are regex source
 * (`\/`, `\n`, `\(` keep their regex meaning), each interpolated value matches itself literally.
 */
export function rx(strings: TemplateStringsArray, ...values: unknown[]): RegExp {
  const literal = (value: unknown) => String(value).replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');
  return new RegExp(strings.raw.reduce((source, part, index) => source + literal(values[index - 1]) + part));
}

/** `tag` is held on host:dataset@expected and on no other snapshot of that dataset. */
export async function assertHeldOnlyOn(
  tb: Testbed,
  host: string,
  dataset: string,
  tag: string,
  expected: string,
): Promise<void> {
  for (const name of (await tb.snapshots(host, dataset)).keys()) {
    assert.equal(
      await tb.hasHold(host, `${dataset}@${name}`, tag),
      name === expected,
      `${host}:${dataset}@${name} hold ${tag}`,
    );
  }
}
