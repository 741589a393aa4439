import type { Endpoint } from '../exec/endpoint.js';
import { shellJoin } from '../exec/quote.js';
import type { HostFeatures } from '../zfs/types.js';
import { type Stage, commandText, runPipeline } from './pipeline.js';
import {
  type MeterPlan,
  ProgressDisplay,
  type ProgressOutput,
  type TransferLabel,
  meterPlan,
  pvArgv,
} from './progress.js';

export interface StreamSettings {
  /** Wire compression when both ends have a fast codec (the ancestor's pigz, minus its cost). */
  compress: boolean;
  /** mbuffer's memory on the receiving side, in bytes. */
  mbufferBytes: number;
  /** --bwlimit: bytes per second, enforced on the receiving host (pv -L, else mbuffer -r). */
  bwlimit?: number | undefined;
  /** Where progress lines go; undefined shows none (cron: a successful run stays silent). */
  progress?: ProgressOutput | undefined;
}

/** One end of a stream: where its commands run and what that host has installed. */
export interface StreamEnd {
  endpoint: Endpoint;
  features: HostFeatures;
}

interface Codec {
  tool: string;
  compress: string[];
  decompress: string[];
}

/**
 * Fastest whole pipeline first, as `npm run bench` (section 7) measured it: zstd -1 moved 2-17% more than lz4 -1
 * on an unlimited and a 1 Gbit/s link, and the same on 100 Mbit/s (its CLI reads, compresses and writes in
 * threads of their own).
 */
const CODECS: Codec[] = [
  { tool: 'zstd', compress: ['zstd', '-1', '-q', '-c'], decompress: ['zstd', '-d', '-q', '-c'] },
  { tool: 'lz4', compress: ['lz4', '-1', '-c'], decompress: ['lz4', '-d', '-c'] },
];

export interface StreamPlan {
  stages: Stage[];
  /** The meter stage, whose byte counts feed the progress line, when there is one. */
  meter: Stage | undefined;
  codec: string | undefined;
  buffered: boolean;
}

/**
 * `zfs send` on the source, then optional decompression, the meter (pv) and mbuffer, then `zfs recv` on the
 * sink. Compression only pays over a network, so a local source (`-h localhost`) never compresses. The meter
 * comes after decompression, so it counts the stream's own bytes (what `zfs recv` reports) and a --bwlimit caps
 * them: the wire then carries at most that much.
 */
export function streamStages(
  source: StreamEnd,
  sink: StreamEnd,
  sendArgv: readonly string[],
  recvArgv: readonly string[],
  settings: StreamSettings,
  meters: MeterPlan = meterPlan(sink.features.tools, { progress: false, bwlimit: settings.bwlimit }),
): StreamPlan {
  const codec =
    settings.compress && source.endpoint.isRemote
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
  const pv = pvArgv(meters, settings.bwlimit);
  const meter: Stage | undefined = pv ? { name: 'pv', endpoint: sink.endpoint, command: { argv: pv } } : undefined;
  if (meter) stages.push(meter);
  const buffered = sink.features.tools.has('mbuffer');
  if (buffered) {
    const limit =
      meters.limiter === 'mbuffer' && settings.bwlimit !== undefined ? ['-r', String(settings.bwlimit)] : [];
    stages.push({
      name: 'mbuffer',
      endpoint: sink.endpoint,
      command: {
        argv: [
          'mbuffer',
          '-q',
          '-s',
          String(mbufferBlockBytes(settings.mbufferBytes)),
          '-m',
          String(settings.mbufferBytes),
          ...limit,
        ],
      },
    });
  }
  stages.push({ name: 'recv', endpoint: sink.endpoint, command: { argv: recvArgv } });
  return { stages, meter, codec: codec?.tool, buffered };
}

/**
 * mbuffer's blocks: 128 KiB, doubled until the buffer has at most 8192 of them, since above some 10,000 blocks
 * mbuffer prints a performance warning on every run, which cron would mail each time.
 */
export function mbufferBlockBytes(bufferBytes: number): number {
  let block = 128 * 1024;
  while (bufferBytes / block > 8192) block *= 2;
  return block;
}

/**
 * `producer | consumer` that fails when either fails: POSIX sh has no pipefail (dash), so the producer's
 * status travels out on fd 4, and the consumer's is the status of the command substitution.
 */
export function pipefailScript(producer: readonly string[], consumer: readonly string[]): string {
  return `{ rc=$( { { ${shellJoin(producer)}; echo $? >&4; } | ${shellJoin(consumer)} >&3; } 4>&1 ); crc=$?; } 3>&1; [ "$rc" = 0 ] && [ "$crc" = 0 ]`;
}

export interface StreamOptions {
  cancelSignal: AbortSignal;
  /** Descriptors every process of the stream inherits (the run lock: see HeldLock.fd). */
  inheritFds: readonly number[];
  /** For -vv: the processes the stream runs. */
  debug: (line: string) => void;
  /** What the stream moves, for its progress line. */
  label?: TransferLabel | undefined;
}

/**
 * Moves one `zfs send` stream into one `zfs recv`. The replication layer only needs this much of the
 * transport, so a test double can stand in for real processes.
 */
export interface StreamRunner {
  /** How streams travel, for the log: "compression: zstd, mbuffer: yes". */
  readonly summary: string;
  /** Said once per run: progress was asked for but cannot be shown. */
  readonly warning?: string | undefined;
  /** Resolves to what `zfs recv` reported (its output); throws PipelineError naming the stage that failed. */
  run(sendArgv: readonly string[], recvArgv: readonly string[], options: StreamOptions): Promise<string>;
}

/** The real transport: the stages of streamStages() joined by kernel pipes. */
export class PipelineStreamRunner implements StreamRunner {
  readonly summary: string;
  readonly warning: string | undefined;
  private readonly meters: MeterPlan;

  /** Throws UsageError when --bwlimit cannot be enforced on the sink. */
  constructor(
    private readonly source: StreamEnd,
    private readonly sink: StreamEnd,
    private readonly settings: StreamSettings,
  ) {
    this.meters = meterPlan(sink.features.tools, {
      progress: settings.progress !== undefined,
      bwlimit: settings.bwlimit,
    });
    this.warning = this.meters.warning;
    const sample = streamStages(source, sink, ['zfs', 'send'], ['zfs', 'recv'], settings, this.meters);
    const limit = this.meters.limiter === undefined ? '' : `, limit: ${settings.bwlimit} B/s (${this.meters.limiter})`;
    this.summary = `compression: ${sample.codec ?? 'none'}, mbuffer: ${sample.buffered ? 'yes' : 'no'}${limit}`;
  }

  async run(sendArgv: readonly string[], recvArgv: readonly string[], options: StreamOptions): Promise<string> {
    const { stages, meter } = streamStages(this.source, this.sink, sendArgv, recvArgv, this.settings, this.meters);
    options.debug(`pipeline: ${stages.map((stage) => `${stage.endpoint.label}$ ${commandText(stage)}`).join(' | ')}`);
    const output = this.settings.progress;
    const display =
      output && options.label && this.meters.count ? new ProgressDisplay(output, options.label) : undefined;
    let counted: number | undefined;
    if (meter && display) {
      meter.counter = (bytes) => {
        counted = bytes;
        display.update(bytes);
      };
    }
    try {
      const outcomes = await runPipeline(stages, {
        cancelSignal: options.cancelSignal,
        inheritFds: options.inheritFds,
      });
      display?.finish(counted);
      return outcomes.at(-1)?.stderr ?? '';
    } catch (error) {
      display?.finish(undefined);
      throw error;
    }
  }
}
