import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';
import { shellJoin } from '../../src/exec/quote.js';
import type { CommandOutcome } from '../testbed/testbed.js';

export const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const VM_SCRIPT = join(PROJECT_ROOT, 'test/openzfs/vm.sh');
/** Guests reach each other (and themselves) through the host's forwarded ssh ports. */
export const HOST_FROM_GUEST = '10.0.2.2';

/**
 * A QEMU guest running real OpenZFS (2.1 or 2.3) with two pools, `src` and `backup`, and this project
 * mounted at its own path. Bring-up fails loudly where the machine cannot run guests; it never skips.
 */
export class Guest {
  private constructor(
    readonly version: '2.1' | '2.3',
    readonly port: number,
  ) {}

  static async up(version: '2.1' | '2.3'): Promise<Guest> {
    if (process.getuid?.() !== 0)
      throw new Error('the OpenZFS tier cannot run here: not running as root (it needs root for debootstrap and QEMU)');
    // A fresh boot: new, empty pools (the image itself is never written).
    await execa('bash', [VM_SCRIPT, 'down', version], { reject: false });
    const result = await execa('bash', [VM_SCRIPT, 'up', version], {
      reject: false,
      all: true,
      timeout: 30 * 60 * 1000,
    });
    if (result.exitCode !== 0)
      throw new Error(
        `the OpenZFS ${version} guest did not come up: ${String(result.all).split('\n').slice(-15).join('\n')}`,
      );
    const port = Number((await execa('bash', [VM_SCRIPT, 'port', version])).stdout.trim());
    return new Guest(version, port);
  }

  async down(): Promise<void> {
    await execa('bash', [VM_SCRIPT, 'down', this.version], { reject: false });
  }

  /** Runs a bash script in the guest as root. */
  async run(script: string, timeoutMs = 10 * 60 * 1000): Promise<CommandOutcome> {
    const result = await execa('bash', [VM_SCRIPT, 'ssh', this.version, `bash -c ${shellJoin([script])}`], {
      reject: false,
      timeout: timeoutMs,
    });
    return { exitCode: result.exitCode ?? -1, stdout: String(result.stdout), stderr: String(result.stderr) };
  }

  /** Runs a bash script in the guest; fails the test when it fails. */
  async sh(script: string): Promise<string> {
    const outcome = await this.run(`set -euo pipefail; ${script}`);
    if (outcome.exitCode !== 0)
      throw new Error(
        `zfs-${this.version} guest: script failed (exit ${outcome.exitCode}): ${outcome.stderr}\n--- script:\n${script}`,
      );
    return outcome.stdout;
  }

  /** zfs_replicate in the guest, the way cron runs it (PATH=/usr/bin:/bin), as root or as `user`. */
  cli(args: readonly string[], user?: string): Promise<CommandOutcome> {
    const command = `cd ${shellJoin([PROJECT_ROOT])} && PATH=/usr/bin:/bin /usr/local/bin/node dist/zfs_replicate.mjs ${shellJoin(args)}`;
    return this.run(user === undefined ? command : `su ${user} -s /bin/sh -c ${shellJoin([command])}`);
  }

  /** `-h HOST -p PORT` for pulling from `source` (this guest itself, or another one). */
  static from(source: Guest): string[] {
    return ['-h', HOST_FROM_GUEST, '-p', String(source.port)];
  }

  async guids(dataset: string): Promise<Map<string, string>> {
    const stdout = await this.sh(`zfs list -Hp -t snapshot -o name,guid -d 1 ${shellJoin([dataset])}`);
    return new Map(
      stdout
        .split('\n')
        .filter(Boolean)
        .map((line) => {
          const [name, guid] = line.split('\t') as [string, string];
          return [name.slice(dataset.length + 1), guid];
        }),
    );
  }

  /** name -> tags held, from `zfs holds`. */
  async holds(dataset: string): Promise<Map<string, string[]>> {
    const stdout = await this.sh(
      `zfs list -H -t snapshot -o name -d 1 ${shellJoin([dataset])} | xargs -r -d '\\n' zfs holds -H`,
    );
    const result = new Map<string, string[]>();
    for (const line of stdout.split('\n').filter(Boolean)) {
      const [name, tag] = line.split('\t') as [string, string];
      const snapshot = name.slice(dataset.length + 1);
      result.set(snapshot, [...(result.get(snapshot) ?? []), tag]);
    }
    return result;
  }
}
