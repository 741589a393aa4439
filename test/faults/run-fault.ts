import type { CommandOutcome, Testbed } from '../testbed/testbed.js';
import { type Pair, lockTaken, pairArgs, startCli } from './harness.js';
import { type JudgedRun, capturePair, checkInvariants } from './invariants.js';
import type { FaultContext, FaultRow } from './table.js';

export interface FaultResult {
  violations: string[];
  faulted: CommandOutcome[];
  clean: CommandOutcome;
}

/**
 * The one loop every fault goes through, in the suite and in the soak: arrange, record the pair, do the fault,
 * undo its environment, then a fault-free run, then the invariants. A faulted run that exited 0 claimed
 * success: the invariants must already hold right after it.
 */
export async function runFault(
  tb: Testbed,
  pair: Pair,
  row: FaultRow,
  options: { rng: () => number; log: (line: string) => void; originRemote: boolean; runTimeoutMs?: number },
): Promise<FaultResult> {
  const runTimeoutMs = options.runTimeoutMs ?? 120_000;
  const partial: Omit<FaultContext, 'before'> = {
    tb,
    pair,
    rng: options.rng,
    log: options.log,
    originRemote: options.originRemote,
    sourceRemoved: new Set(),
    violations: [],
    notes: new Map(),
    start: (extra = [], startOptions = {}) =>
      startCli(pair.localHost, pairArgs(pair, ['-vv', ...extra]), { ...startOptions, timeoutMs: runTimeoutMs }),
  };
  let faulted: CommandOutcome[] = [];
  let ctx: FaultContext | undefined;
  try {
    await row.arrange?.(partial);
    ctx = { ...partial, before: await capturePair(tb, pair) };
    faulted = await row.fault(ctx);
  } finally {
    await recoverEnvironment(tb, pair);
    if (ctx) await row.recover?.(ctx);
  }
  const acceptable = row.acceptable;
  const judged: JudgedRun[] = faulted.map((outcome, index) => ({
    label: faulted.length > 1 ? `faulted run ${index + 1}` : 'faulted run',
    outcome,
    acceptable,
  }));
  const violations = [...ctx.violations];
  let claims: string[] = [];
  if (faulted.some((outcome) => outcome.exitCode === 0) && !row.sourceGone) {
    // Orphaned transfer processes of another (killed) run may still finish: wait for the lock first.
    await lockTaken(tb, pair.localHost, pair.localDataset, 60);
    claims = await checkInvariants(tb, pair, ctx.before, { runs: [], sourceRemoved: ctx.sourceRemoved });
  }
  // A SIGKILLed run's transfer processes keep the lock until they end; cron would simply come back later.
  await lockTaken(tb, pair.localHost, pair.localDataset, 60);
  const clean = await startCli(pair.localHost, pairArgs(pair, ['-v', ...(row.cleanArgs ?? [])]), {
    timeoutMs: runTimeoutMs,
  }).done;
  const final = await checkInvariants(tb, pair, ctx.before, {
    runs: [...judged, { label: 'fault-free run', outcome: clean, acceptable: [row.cleanExit ?? 0] }],
    sourceRemoved: ctx.sourceRemoved,
    sourceGone: row.sourceGone ?? false,
  });
  // What the fault-free run could not repair is reported once, below; what it repaired was a false exit 0.
  for (const claim of claims) {
    if (!final.includes(claim)) violations.push(`exit code: a faulted run exited 0, but then ${claim}`);
  }
  if (claims.length > 0 && claims.every((claim) => final.includes(claim)))
    violations.push(`exit code: a faulted run exited 0, but then ${claims.length} violation(s) listed below`);
  violations.push(...final);
  return { violations, faulted, clean };
}

/** Whatever a fault did to the network or the remote's zfs, undone: link up, no rate limit, no shim. */
export async function recoverEnvironment(tb: Testbed, pair: Pair): Promise<void> {
  for (const host of new Set([pair.remoteHost, pair.localHost])) {
    await tb.link(host, 'up');
    await tb.rate(host, 'off');
  }
  await tb.testbedCommand('shim', pair.remoteHost, 'off');
}
