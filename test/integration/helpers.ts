import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { CommandOutcome, Testbed } from '../testbed/testbed.js';

/** testbed.sh's directory: a second test bed (ZR_TESTBED_DIR, ZR_TESTBED_NS) must read its own hosts' logs. */
export const TESTBED_DIR = process.env.ZR_TESTBED_DIR ?? '/var/tmp/zfs_replicate-testbed';
export const SSHD_LOG = (host: string) => `${TESTBED_DIR}/hosts/${host}/sshd.log`;

/** ssh connections accepted so far by `host`'s sshd. */
export function sshHandshakes(host: string): number {
  return readFileSync(SSHD_LOG(host), 'utf8').split('\n').filter((line) => line.includes('Accepted publickey')).length;
}

export function assertExit(outcome: CommandOutcome, expected: number, context = ''): void {
  assert.equal(outcome.exitCode, expected, `${context} exit ${outcome.exitCode}, expected ${expected}\nstdout: ${outcome.stdout}\nstderr: ${outcome.stderr}`);
}

/** Everything a run could change on a host's pool: datasets, snapshots with guids and hold counts. */
export async function poolSnapshot(tb: Testbed, host: string): Promise<string> {
  const outcome = await tb.on(host, ['zfs', 'get', '-Hp', '-r', '-o', 'name,property,value', 'guid,userrefs,readonly', 'tank']);
  return outcome.stdout;
}

/** Runs zfs_replicate with the standard flags plus `extra`. */
export function pull(tb: Testbed, on: string, from: string, remote: string, local: string, tag: string, extra: string[] = []): Promise<CommandOutcome> {
  return tb.cli(on, ['-h', from, '-r', remote, '-l', local, '-t', tag, '-k', '30', '--ssh-option', 'ServerAliveInterval=1', ...extra]);
}

export async function snapshotSeries(tb: Testbed, host: string, dataset: string, names: string[]): Promise<void> {
  for (const name of names) await tb.writeAndSnapshot(host, dataset, name);
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
