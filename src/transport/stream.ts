import { shellJoin } from '../exec/quote.js';
import type { ZfsHost } from '../zfs/host.js';
import type { Stage } from './pipeline.js';

export interface StreamSettings {
  /** Wire compression when both ends have a fast codec (the ancestor's pigz, minus its cost). */
  compress: boolean;
  /** mbuffer's memory on the receiving side, in mbuffer's syntax (e.g. "256M"). */
  mbufferSize: string;
}

interface Codec {
  tool: string;
  compress: string[];
  decompress: string[];
}

/** Fastest first: both keep up with a gigabit link on one core. */
const CODECS: Codec[] = [
  { tool: 'lz4', compress: ['lz4', '-1', '-c'], decompress: ['lz4', '-d', '-c'] },
  { tool: 'zstd', compress: ['zstd', '-1', '-q', '-c'], decompress: ['zstd', '-d', '-q', '-c'] },
];

export interface StreamPlan {
  stages: Stage[];
  codec: string | undefined;
  buffered: boolean;
}

/**
 * `zfs send` on the source, then optional decompression and mbuffer, then `zfs recv` on the sink. Compression
 * only pays over a network, so a local source (`-h localhost`) never compresses.
 */
export function streamStages(source: ZfsHost, sink: ZfsHost, sendArgv: string[], recvArgv: string[], settings: StreamSettings): StreamPlan {
  const codec = settings.compress && source.endpoint.isRemote
    ? CODECS.find((candidate) => source.features.tools.has(candidate.tool) && sink.features.tools.has(candidate.tool))
    : undefined;
  const stages: Stage[] = [
    {
      name: 'send',
      endpoint: source.endpoint,
      command: codec ? { script: pipefailScript(sendArgv, codec.compress) } : { argv: sendArgv },
    },
  ];
  if (codec) stages.push({ name: 'decompress', endpoint: sink.endpoint, command: { argv: codec.decompress } });
  const buffered = sink.features.tools.has('mbuffer');
  if (buffered) {
    stages.push({ name: 'mbuffer', endpoint: sink.endpoint, command: { argv: ['mbuffer', '-q', '-s', '128k', '-m', settings.mbufferSize] } });
  }
  stages.push({ name: 'recv', endpoint: sink.endpoint, command: { argv: recvArgv } });
  return { stages, codec: codec?.tool, buffered };
}

/**
 * `producer | consumer` whose exit status is the producer's failure if it failed: POSIX sh has no pipefail
 * (dash), so the producer's status travels out on fd 4.
 */
export function pipefailScript(producer: string[], consumer: string[]): string {
  return `{ rc=$( { { ${shellJoin(producer)}; echo $? >&4; } | ${shellJoin(consumer)} >&3; } 4>&1 ); } 3>&1; [ "$rc" = 0 ]`;
}
