import { FailureError } from '../errors/errors.js';
import type { Endpoint } from '../exec/endpoint.js';
import type { CommandRunner } from '../exec/runner.js';
import type { HostFeatures } from './types.js';

export const STREAM_TOOLS = ['mbuffer', 'lz4', 'zstd'] as const;

/**
 * One round trip per host learns what its zfs and stream tools can do. `zfs list -Hp -d 0` with no dataset
 * lists only pools, so the check costs nothing even with many snapshots.
 */
export const PROBE_SCRIPT = [
  `for tool in ${STREAM_TOOLS.join(' ')}; do command -v "$tool" >/dev/null 2>&1 && echo "tool=$tool"; done`,
  'zfs version >/dev/null 2>&1 && echo "zfs_version=$(zfs version 2>/dev/null | head -n 1)"',
  'zfs list -Hp -o name -d 0 >/dev/null 2>&1 && echo list_p=1',
  'command -v zfs >/dev/null 2>&1 && echo zfs=1',
  'echo "now=$(date +%s)"',
  'true',
].join('; ');

/**
 * This host's probe also looks for the meter (pv), which only the receiving side runs. The remote's probe stays
 * PROBE_SCRIPT, character for character: zfs_replicate-serve on a source answers exactly that script.
 */
export const LOCAL_PROBE_SCRIPT = `command -v pv >/dev/null 2>&1 && echo tool=pv; ${PROBE_SCRIPT}`;

export interface HostProbe {
  features: HostFeatures;
  /** The host's clock (seconds since the epoch) when it answered: snapshot ages are judged by the source's. */
  clockSeconds: number | undefined;
}

export async function probeHost(
  runner: CommandRunner,
  endpoint: Endpoint,
  script: string = PROBE_SCRIPT,
): Promise<HostProbe> {
  const { stdout } = await runner.run(endpoint, ['sh', '-c', script], { timeoutMs: 60_000 });
  return parseProbe(stdout, endpoint.label);
}

export function parseProbe(stdout: string, label: string): HostProbe {
  const facts = stdout.split('\n').filter((line) => line.includes('='));
  const value = (key: string) => facts.find((line) => line.startsWith(`${key}=`))?.slice(key.length + 1);
  if (value('zfs') === undefined)
    throw new FailureError('ENOZFS', `${label}: no zfs command found (is ZFS installed and in PATH?)`);
  const zfsVersion = value('zfs_version');
  const clock = value('now');
  return {
    features: {
      zfsVersion,
      parsableList: value('list_p') === '1',
      holdsCommand: zfsVersion !== undefined,
      openzfs: zfsVersion !== undefined,
      tools: new Set(facts.filter((line) => line.startsWith('tool=')).map((line) => line.slice('tool='.length))),
    },
    clockSeconds: clock !== undefined && /^\d+$/.test(clock) ? Number(clock) : undefined,
  };
}
