import { formatDistanceStrict } from 'date-fns/formatDistanceStrict';
import type { ReplicationContext } from './types.js';

export interface ClockJudgement {
  /** The source's clock minus ours: snapshot creation times come from the source's clock. */
  sourceClockOffsetSeconds: number;
  /** Why expiry must wait, when the two clocks disagree by more than the tolerance. */
  expiryWithheld?: string;
  /** Why ages are judged by this host's clock alone: the source's could not be read. */
  sourceClockUnknown?: string;
}

/** How far the offset's measurement may be off: `date +%s` drops the fraction, plus the probe's round trip. */
const MEASUREMENT_SECONDS = 1;

/**
 * Snapshot ages are read from the source's clock (creation times are the source's), so a backup host whose
 * clock runs 60 days ahead no longer sees fresh snapshots as 60 days old. Past the tolerance one of the two
 * clocks is wrong, and which one cannot be told: expiry waits until they agree, with a warning every run.
 */
export function judgeClocks(
  sourceClock: number | undefined,
  localClock: number,
  toleranceSeconds: number,
  sourceHost: string,
): ClockJudgement {
  // Said on every run: the skew check this option promises is off, and only the source's `date` can mend it.
  if (sourceClock === undefined)
    return {
      sourceClockOffsetSeconds: 0,
      sourceClockUnknown: `cannot read the clock of ${sourceHost} (its \`date +%s\` printed no number): snapshot ages are judged by this host's clock, and --max-clock-skew is not checked`,
    };
  // `date +%s` drops the fraction, so the source's clock was half a second past it on average; rounding the
  // offset to whole seconds as well made snapshots up to two seconds younger than they are.
  const offset = sourceClock + 0.5 - localClock;
  // That guess may be off by the half second, and by the round trip: a clock is past the tolerance only when
  // it is so by more than that (--max-clock-skew 0 must not withhold expiry between two agreeing clocks).
  if (Math.abs(offset) <= toleranceSeconds + MEASUREMENT_SECONDS) return { sourceClockOffsetSeconds: offset };
  const by = formatDistanceStrict(0, Math.abs(offset) * 1000);
  return {
    sourceClockOffsetSeconds: offset,
    expiryWithheld: `the clock of ${sourceHost} is ${by} ${offset > 0 ? 'ahead of' : 'behind'} this host's (more than --max-clock-skew ${formatDistanceStrict(0, toleranceSeconds * 1000)}): expiring nothing until the clocks agree (check NTP on both)`,
  };
}

/** Now, by the source's clock: the clock its snapshots' creation times come from. */
export function sourceNowSeconds(context: Pick<ReplicationContext, 'now' | 'sourceClockOffsetSeconds'>): number {
  return Math.floor(context.now().getTime() / 1000 + (context.sourceClockOffsetSeconds ?? 0));
}
