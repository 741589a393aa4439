import { UsageError } from '../errors/errors.js';

/** What one stream moves, for its progress line. */
export interface TransferLabel {
  /** host:dataset */
  source: string;
  /** "@a..@d", "full @a", "the rest of an interrupted receive" */
  what: string;
  /** Snapshots the stream carries, where the plan knows. */
  snapshots?: number | undefined;
  /** The stream's size, where the source can tell in advance (`zfs send -nvP`). */
  expectedBytes?: number | undefined;
}

export interface ProgressSample {
  bytes: number;
  elapsedMs: number;
}

/**
 * Where progress lines go: `tty` rewrites one line in place (\r), `lines` prints a plain line now and then
 * (progress forced on without a terminal, e.g. into a log).
 */
export interface ProgressOutput {
  mode: 'tty' | 'lines';
  write: (text: string) => void;
  /** The terminal's width: a line that wrapped could no longer be rewritten in place. */
  columns?: number | undefined;
}

/** A line cut to `width` from the left, so the numbers at its end stay: "…tank/vm @a..@d: 1.2 GB of ...". */
export function fitToWidth(line: string, width: number | undefined): string {
  if (width === undefined || width < 2 || line.length < width) return line;
  return `…${line.slice(line.length - width + 2)}`;
}

/**
 * Whether to show progress and how: by default only on a terminal and not with -q (cron stays silent);
 * --progress forces it, as plain lines where there is no terminal to rewrite one line on.
 */
export function progressMode(
  asked: 'auto' | 'on' | 'off',
  terminal: boolean,
  quiet: boolean,
): ProgressOutput['mode'] | undefined {
  const wanted = asked === 'on' || (asked === 'auto' && terminal && !quiet);
  if (!wanted) return undefined;
  return terminal ? 'tty' : 'lines';
}

const RATE_UNITS: Record<string, number> = { '': 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 };

/** "20M", "500k", "1.5G", "65536": bytes per second (binary units, as pv and mbuffer read them); else undefined. */
export function parseRate(text: string): number | undefined {
  const match = /^(\d+(?:\.\d+)?)([kKmMgG]?)$/.exec(text);
  if (!match) return undefined;
  const bytes = Math.round(Number(match[1]) * RATE_UNITS[match[2]!.toLowerCase()]!);
  return bytes >= 1 ? bytes : undefined;
}

/** The local tools that meter and limit the stream, chosen from what the receiving host has installed. */
export interface MeterPlan {
  /** pv counts the bytes (its numeric counter lines only ever reach Node, never the stream). */
  count: boolean;
  /** Which tool caps the rate, when --bwlimit asks for it. */
  limiter: 'pv' | 'mbuffer' | undefined;
  /** One line for the operator: progress was asked for but cannot be shown. */
  warning: string | undefined;
}

/** Throws UsageError when a limit is asked for and no tool can enforce it: never run unlimited in silence. */
export function meterPlan(
  tools: ReadonlySet<string>,
  wants: { progress: boolean; bwlimit: number | undefined },
): MeterPlan {
  const hasPv = tools.has('pv');
  let limiter: MeterPlan['limiter'];
  if (wants.bwlimit !== undefined) {
    limiter = hasPv ? 'pv' : tools.has('mbuffer') ? 'mbuffer' : undefined;
    if (limiter === undefined) {
      throw new UsageError('--bwlimit needs pv or mbuffer on this host, and neither is installed (apt-get install pv)');
    }
  }
  return {
    count: wants.progress && hasPv,
    limiter,
    warning:
      wants.progress && !hasPv ? 'no progress shown: pv is not installed on this host (apt-get install pv)' : undefined,
  };
}

/** pv's refresh interval: often enough for a live line, rarely enough to cost nothing. */
export const COUNTER_INTERVAL_SECONDS = 0.5;

/** The local meter stage: `pv -n -b` prints a byte count per interval on stderr; -L caps the rate. */
export function pvArgv(plan: MeterPlan, bwlimit: number | undefined): string[] | undefined {
  const limit = plan.limiter === 'pv' && bwlimit !== undefined;
  if (!plan.count && !limit) return undefined;
  // -q silences pv's display when it only limits; it would silence the counter too.
  return [
    'pv',
    ...(plan.count ? ['-n', '-b', '-i', String(COUNTER_INTERVAL_SECONDS)] : ['-q']),
    ...(limit ? ['-L', String(bwlimit)] : []),
  ];
}

/** The counter lines pv -n -b wrote, in order; other lines (its errors) are left for the failure message. */
export function counterLines(lines: readonly string[]): { counts: number[]; other: string[] } {
  const counts: number[] = [];
  const other: string[] = [];
  for (const line of lines) {
    if (/^\d+$/.test(line.trim())) counts.push(Number(line.trim()));
    else if (line.trim() !== '') other.push(line);
  }
  return { counts, other };
}

/** "alpha:pool/fs @a..@d (3 snapshots): 12.3 MB of 50.0 MB (24%), 4.1 MB/s, 0:03, ETA 0:09" */
export function renderProgress(label: TransferLabel, sample: ProgressSample): string {
  const seconds = sample.elapsedMs / 1000;
  const rate = seconds > 0 ? sample.bytes / seconds : 0;
  const count =
    label.snapshots === undefined ? '' : ` (${label.snapshots} snapshot${label.snapshots === 1 ? '' : 's'})`;
  const head = `${label.source} ${label.what}${count}: ${formatBytes(sample.bytes)}`;
  const tail = `${formatBytes(rate)}/s, ${clock(seconds)}`;
  const expected = label.expectedBytes;
  if (expected === undefined || expected <= 0) return `${head} of unknown size, ${tail}`;
  const percent = Math.min(100, Math.floor((sample.bytes / expected) * 100));
  const eta = rate > 0 && sample.bytes < expected ? `, ETA ${clock((expected - sample.bytes) / rate)}` : '';
  return `${head} of ${formatBytes(expected)} (${percent}%), ${tail}${eta}`;
}

export function formatBytes(bytes: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(unit === 0 ? 0 : 1)} ${units[unit]}`;
}

/** "0:07", "12:34", "1:02:03" */
function clock(totalSeconds: number): string {
  const whole = Math.max(0, Math.round(totalSeconds));
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const seconds = String(whole % 60).padStart(2, '0');
  return hours > 0 ? `${hours}:${String(minutes).padStart(2, '0')}:${seconds}` : `${minutes}:${seconds}`;
}

/** How often a plain line is printed when there is no terminal to rewrite one line on. */
const PLAIN_LINE_INTERVAL_MS = 5000;

/** Shows one stream's progress: every count on a terminal, a line every few seconds otherwise, and the total. */
export class ProgressDisplay {
  private readonly started = Date.now();
  private lastPlainLineAt = Number.NEGATIVE_INFINITY;
  private width = 0;
  private shown = false;

  constructor(
    private readonly output: ProgressOutput,
    private readonly label: TransferLabel,
  ) {}

  update(bytes: number): void {
    const sample = { bytes, elapsedMs: Date.now() - this.started };
    if (this.output.mode === 'tty') {
      const line = fitToWidth(renderProgress(this.label, sample), this.output.columns);
      // Pad over the rest of a longer previous line rather than clear it: one write, no flicker.
      this.output.write(`\r${line.padEnd(this.width)}`);
      this.width = line.length;
      this.shown = true;
    } else if (sample.elapsedMs - this.lastPlainLineAt >= PLAIN_LINE_INTERVAL_MS) {
      this.lastPlainLineAt = sample.elapsedMs;
      this.output.write(`${renderProgress(this.label, sample)}\n`);
    }
  }

  /** The last count, on a line of its own (the terminal's line is ended, so the next output starts clean). */
  finish(bytes: number | undefined): void {
    if (bytes === undefined) {
      if (this.shown) this.output.write('\n');
      return;
    }
    const line = renderProgress(this.label, { bytes, elapsedMs: Date.now() - this.started });
    this.output.write(
      this.output.mode === 'tty' ? `\r${fitToWidth(line, this.output.columns).padEnd(this.width)}\n` : `${line}\n`,
    );
  }
}
