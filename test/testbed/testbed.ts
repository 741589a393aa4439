import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import type { Endpoint } from '../../src/exec/endpoint.js';
import { shellJoin } from '../../src/exec/quote.js';
import { datasetState, getArgv, parseGetOutput } from '../../src/zfs/listing.js';
import type { DatasetState, Snapshot } from '../../src/zfs/types.js';

const here = dirname(fileURLToPath(import.meta.url));
/** The project root (this file runs from dist/test/testbed/). */
export const PROJECT_ROOT = resolve(here, '../../..');
export const TESTBED_SCRIPT = join(PROJECT_ROOT, 'test/testbed/testbed.sh');
/** Where testbed.sh keeps its state, and the prefix of its namespaces: set both to run a second bed beside one. */
export const TESTBED_DIR = process.env.ZR_TESTBED_DIR ?? '/var/tmp/zfs_replicate-testbed';
export const TESTBED_NS = process.env.ZR_TESTBED_NS ?? 'zrt';
export const CLI = join(PROJECT_ROOT, 'dist/zfs_replicate.mjs');
/** cron's environment: no sbin in PATH, no HOME assumptions beyond root's. */
export const CRON_PATH = '/usr/bin:/bin';

export interface CommandOutcome {
  exitCode: number;
  stdout: string;
  stderr: string;
}

let activeTestbed: Testbed | undefined;

function teardownOnSignal(signal: NodeJS.Signals) {
  activeTestbed?.downSync();
  process.kill(process.pid, signal);
}

/**
 * A set of isolated ZFS hosts for one test file. Bring-up fails loudly (never skips) where the machine cannot
 * run them; teardown runs on success, failure and interruption.
 */
export class Testbed {
  private constructor(readonly hosts: readonly string[]) {}

  static async up(hosts: readonly string[]): Promise<Testbed> {
    const missing = prerequisitesMissing();
    if (missing)
      throw new Error(
        `the integration tier cannot run here: ${missing}. It needs root and zfs-fuse (see README: Tests).`,
      );
    // An earlier run that was killed may have left hosts behind.
    spawnSync('bash', [TESTBED_SCRIPT, 'clean'], { stdio: 'ignore' });
    const result = await execa('bash', [TESTBED_SCRIPT, 'up', ...hosts], { reject: false, all: true });
    if (result.exitCode !== 0) {
      spawnSync('bash', [TESTBED_SCRIPT, 'clean'], { stdio: 'ignore' });
      throw new Error(`test bed bring-up failed: ${result.all}`);
    }
    const testbed = new Testbed(hosts);
    activeTestbed = testbed;
    process.once('SIGINT', teardownOnSignal);
    process.once('SIGTERM', teardownOnSignal);
    return testbed;
  }

  async down(): Promise<void> {
    activeTestbed = undefined;
    process.off('SIGINT', teardownOnSignal);
    process.off('SIGTERM', teardownOnSignal);
    await execa('bash', [TESTBED_SCRIPT, 'down']);
  }

  downSync(): void {
    spawnSync('bash', [TESTBED_SCRIPT, 'down'], { stdio: 'ignore' });
  }

  /** Runs argv on `host` (its network, mount and uts namespaces). */
  async on(
    host: string,
    argv: readonly string[],
    options: { env?: Record<string, string>; timeoutMs?: number } = {},
  ): Promise<CommandOutcome> {
    const result = await execa('bash', [TESTBED_SCRIPT, 'on', host, '--', ...argv], {
      reject: false,
      cwd: PROJECT_ROOT,
      // testbed.sh itself needs ZR_TESTBED_* even in a cron-like environment, or it would enter another test bed's hosts.
      env: options.env === undefined ? {} : { ...testbedVariables(), ...options.env },
      extendEnv: options.env === undefined,
      timeout: options.timeoutMs ?? 300_000,
    });
    return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
  }

  /** Runs a shell script on `host`; fails the test if it fails. */
  async sh(host: string, script: string): Promise<string> {
    const outcome = await this.on(host, ['bash', '-euo', 'pipefail', '-c', script]);
    if (outcome.exitCode !== 0)
      throw new Error(
        `on ${host}: script failed (exit ${outcome.exitCode}): ${outcome.stderr}\n--- script:\n${script}`,
      );
    return outcome.stdout;
  }

  /**
   * Runs zfs_replicate on `host` the way cron does: PATH=/usr/bin:/bin, no terminal. Its run records go to the
   * host's own state directory in the test bed, never to this machine's /var/lib/zfs_replicate.
   */
  cli(host: string, args: readonly string[]): Promise<CommandOutcome> {
    return this.on(host, ['node', CLI, ...args], { env: Testbed.cronEnvironment(host) });
  }

  /** cron's environment for zfs_replicate on `host`, with the run records kept in the test bed. */
  static cronEnvironment(host: string): Record<string, string> {
    return { PATH: CRON_PATH, HOME: '/root', LANG: 'C', ZFS_REPLICATE_STATE_DIR: Testbed.stateDir(host) };
  }

  /** Where zfs_replicate run by cli() on `host` keeps its run records. */
  static stateDir(host: string): string {
    return join(TESTBED_DIR, 'hosts', host, 'state');
  }

  /** An endpoint for the pipeline and runner modules: commands run on `host`. */
  endpoint(host: string): Endpoint {
    const wrap = (argv: readonly string[]) => ({ file: 'bash', args: [TESTBED_SCRIPT, 'on', host, '--', ...argv] });
    return { label: host, isRemote: false, wrap, wrapScript: (script) => wrap(['sh', '-c', script]) };
  }

  async link(host: string, state: 'up' | 'down'): Promise<void> {
    await execa('bash', [TESTBED_SCRIPT, 'link', host, state]);
  }

  async rate(host: string, rate: string): Promise<void> {
    await execa('bash', [TESTBED_SCRIPT, 'rate', host, rate]);
  }

  /** Any other testbed.sh command (sshd, zfsd, shim, hostkey ...); fails if it fails. */
  async testbedCommand(...args: string[]): Promise<void> {
    const result = await execa('bash', [TESTBED_SCRIPT, ...args], { reject: false, all: true, timeout: 120_000 });
    if (result.exitCode !== 0) throw new Error(`testbed.sh ${args.join(' ')} failed: ${result.all}`);
  }

  // ---- ZFS helpers for arranging a test ----

  async zfs(host: string, ...argv: string[]): Promise<string> {
    const outcome = await this.on(host, ['zfs', ...argv]);
    if (outcome.exitCode !== 0) throw new Error(`on ${host}: zfs ${shellJoin(argv)} failed: ${outcome.stderr}`);
    return outcome.stdout;
  }

  /** `zfs destroy -r`, retried: zfs-fuse can answer "busy" for a moment after a receive or an unmount. */
  async destroyTree(host: string, dataset: string): Promise<void> {
    for (let tries = 0; tries < 20; tries++) {
      await this.on(host, ['zfs', 'destroy', '-r', dataset]);
      if ((await this.on(host, ['zfs', 'list', dataset])).exitCode !== 0) return;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    throw new Error(`on ${host}: cannot destroy ${dataset}`);
  }

  async mountpoint(host: string, dataset: string): Promise<string> {
    return (await this.zfs(host, 'get', '-H', '-o', 'value', 'mountpoint', dataset)).trim();
  }

  /** Writes `megabytes` of random data into a new file of the dataset and takes snapshot @name. */
  async writeAndSnapshot(host: string, dataset: string, name: string, megabytes = 1): Promise<void> {
    const mountpoint = await this.mountpoint(host, dataset);
    await this.on(host, [
      'dd',
      'if=/dev/urandom',
      `of=${mountpoint}/file-${name.replace(/[^A-Za-z0-9]/g, '_')}`,
      'bs=1M',
      `count=${megabytes}`,
      'status=none',
    ]);
    await this.zfs(host, 'snapshot', `${dataset}@${name}`);
  }

  /** The dataset as the tool itself lists and reads it on zfs-fuse (`exists: false` when it does not exist). */
  async listing(host: string, dataset: string): Promise<DatasetState> {
    const outcome = await this.on(host, getArgv(dataset, 'dataset'));
    if (outcome.exitCode !== 0) {
      if (/dataset does not exist/.test(outcome.stderr)) return datasetState(new Map(), dataset);
      throw new Error(`on ${host}: cannot list ${dataset}: ${outcome.stderr}`);
    }
    return datasetState(parseGetOutput(outcome.stdout, dataset), dataset);
  }

  /** name -> the dataset's snapshot (guid, userrefs, creation, ...), oldest first; empty when it does not exist. */
  async snapshots(host: string, dataset: string): Promise<Map<string, Snapshot>> {
    const { snapshots } = await this.listing(host, dataset);
    return new Map(snapshots.map((snapshot) => [snapshot.name, snapshot]));
  }

  /** Whether `tag` is held on host:snapshot, learnt the only way zfs-fuse allows: a hold attempt. */
  async hasHold(host: string, snapshot: string, tag: string): Promise<boolean> {
    const outcome = await this.on(host, ['zfs', 'hold', tag, snapshot]);
    if (outcome.exitCode === 0) {
      await this.zfs(host, 'release', tag, snapshot);
      return false;
    }
    if (/tag already exists/.test(outcome.stderr)) return true;
    throw new Error(`on ${host}: cannot test hold ${tag} on ${snapshot}: ${outcome.stderr}`);
  }

  /** sha256 of every file below the dataset's mountpoint, in a stable order. */
  async contentDigest(host: string, dataset: string): Promise<string> {
    const mountpoint = await this.mountpoint(host, dataset);
    const mounted = (await this.zfs(host, 'get', '-H', '-o', 'value', 'mounted', dataset)).trim() === 'yes';
    if (!mounted) await this.zfs(host, 'mount', dataset);
    try {
      return await this.sh(
        host,
        `cd ${shellJoin([mountpoint])} && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum`,
      );
    } finally {
      if (!mounted) await this.zfs(host, 'unmount', dataset);
    }
  }
}

function testbedVariables(): Record<string, string> {
  return Object.fromEntries(
    Object.entries(process.env).filter(
      (entry): entry is [string, string] => entry[0].startsWith('ZR_TESTBED_') && entry[1] !== undefined,
    ),
  );
}

function prerequisitesMissing(): string | undefined {
  if (process.getuid?.() !== 0) return 'not running as root';
  if (!existsSync('/dev/fuse')) return '/dev/fuse is missing';
  for (const tool of ['/usr/sbin/zfs-fuse', '/usr/sbin/sshd', '/usr/bin/nsenter']) {
    if (!existsSync(tool)) return `${tool} is not installed`;
  }
  return undefined;
}
