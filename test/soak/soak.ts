import { pathToFileURL } from 'node:url';
import {
  type Pair,
  durationSeconds,
  listSnapshots,
  pairArgs,
  seededRandom,
  startCli,
  writeAndSnapshot,
} from '../faults/harness.js';
import { FULL_RESEND, LEAKED_HOLD, capturePair, checkInvariants } from '../faults/invariants.js';
import { runFault } from '../faults/run-fault.js';
import { FAULTS, type FaultRow } from '../faults/table.js';
import { Testbed } from '../testbed/testbed.js';

/**
 * The soak (issue 9): N rounds on a chain alpha -> beta -> gamma plus a fan-out alpha -> delta, with snapshot
 * churn and source-side pruning on alpha, a random fault from the fault table in a fraction of rounds, a -R run
 * of a tree racing a single-dataset job on one of its members (issue 14), and the
 * invariants of every pair after every round.
 *
 *   node dist/test/soak/soak.js [--rounds 200] [--seed S] [--fault-fraction 0.3] [--keep 15s] [--max-minutes M]
 *
 * Exits non-zero on any invariant violation, full resend or leaked hold, or when the time limit stopped it.
 */
export interface SoakOptions {
  rounds: number;
  seed: number;
  faultFraction: number;
  /** --keep of every pair: short, so expiry runs every few rounds. */
  keep: string;
  /** The whole soak stops after this long, finished or not. */
  maxMinutes: number;
  log: (line: string) => void;
}

export interface SoakReport {
  seed: number;
  roundsPlanned: number;
  roundsRun: number;
  seconds: number;
  timedOut: boolean;
  faults: Map<string, number>;
  violations: string[];
  fullResends: number;
  leakedHolds: number;
  /** Runs of every pair (faulted, fault-free and plain). */
  runs: number;
}

const ORIGIN = { host: 'alpha', dataset: 'tank/data' };
/**
 * Issue 14's race, every round: a -R run of alpha's tree and a single-dataset job on one of its members,
 * started together on beta with the same tag, as two crontab lines firing in the same minute would.
 */
const TREE = { root: 'tank/tree', member: 'tank/tree/m', replica: 'tank/bt', tag: 'tree' };
/** Alpha's own pruning (zfs-auto-snapshot's stand-in) keeps its newest snapshots, and never a held one. */
const ALPHA_KEEPS = 4;

function pairs(keep: string): Pair[] {
  const keepSeconds = durationSeconds(keep);
  const pair = (remoteHost: string, remoteDataset: string, localHost: string, localDataset: string, tag: string) => ({
    remoteHost,
    remoteDataset,
    localHost,
    localDataset,
    tag,
    keep,
    keepSeconds,
  });
  return [
    pair(ORIGIN.host, ORIGIN.dataset, 'beta', 'tank/b/data', 'beta'),
    pair('beta', 'tank/b/data', 'gamma', 'tank/g/data', 'gamma'),
    pair(ORIGIN.host, ORIGIN.dataset, 'delta', 'tank/d/data', 'delta'),
  ];
}

function treeMemberPair(keep: string): Pair {
  return {
    remoteHost: ORIGIN.host,
    remoteDataset: TREE.member,
    localHost: 'beta',
    localDataset: `${TREE.replica}/m`,
    tag: TREE.tag,
    keep,
    keepSeconds: durationSeconds(keep),
  };
}

/** Alpha prunes its own old, unheld snapshots, as zfs-auto-snapshot or sanoid would. */
async function pruneOnAlpha(tb: Testbed, dataset: string): Promise<void> {
  const onAlpha = (await listSnapshots(tb, ORIGIN.host, dataset)) ?? [];
  for (const snapshot of onAlpha.slice(0, Math.max(0, onAlpha.length - ALPHA_KEEPS))) {
    if (snapshot.userrefs === 0) await tb.on(ORIGIN.host, ['zfs', 'destroy', `${dataset}@${snapshot.name}`]);
  }
}

/** One round of the race; the member pair's invariants after it (either run may find the other's lock). */
async function raceRound(tb: Testbed, round: number, keep: string): Promise<string[]> {
  const member = treeMemberPair(keep);
  await writeAndSnapshot(tb, ORIGIN.host, TREE.member, `t${round}`, 16);
  await tb.zfs(ORIGIN.host, 'snapshot', '-r', `${TREE.root}@r${round}`);
  for (const dataset of [TREE.root, TREE.member]) await pruneOnAlpha(tb, dataset);
  const before = await capturePair(tb, member);
  const treeArgs = pairArgs({ ...member, remoteDataset: TREE.root, localDataset: TREE.replica }, ['-R']);
  const [tree, single] = await Promise.all([
    startCli('beta', treeArgs, { timeoutMs: 120_000 }).done,
    startCli('beta', pairArgs(member), { timeoutMs: 120_000 }).done,
  ]);
  return checkInvariants(tb, member, before, {
    runs: [
      { label: 'tree run', outcome: tree, acceptable: [0, 3] },
      { label: 'member job', outcome: single, acceptable: [0, 3] },
    ],
  });
}

export async function runSoak(tb: Testbed, options: SoakOptions): Promise<SoakReport> {
  const started = Date.now();
  const deadline = started + options.maxMinutes * 60_000;
  const rng = seededRandom(options.seed);
  const report: SoakReport = {
    seed: options.seed,
    roundsPlanned: options.rounds,
    roundsRun: 0,
    seconds: 0,
    timedOut: false,
    faults: new Map(),
    violations: [],
    fullResends: 0,
    leakedHolds: 0,
    runs: 0,
  };
  const all = pairs(options.keep);
  await tb.zfs(ORIGIN.host, 'create', ORIGIN.dataset);
  await tb.zfs(ORIGIN.host, 'create', '-p', TREE.member);
  // The tree's first run comes alone: a member job that ran first would create the tree's root replica as a
  // plain parent dataset (zfs create -p), which a later -R run rightly refuses as "not a replica".
  await tb.zfs(ORIGIN.host, 'snapshot', '-r', `${TREE.root}@r0`);
  const first = treeMemberPair(options.keep);
  const initial = await startCli(
    'beta',
    pairArgs({ ...first, remoteDataset: TREE.root, localDataset: TREE.replica }, ['-R']),
    {
      timeoutMs: 120_000,
    },
  ).done;
  if (initial.exitCode !== 0)
    report.violations.push(`the tree's first run exited ${initial.exitCode}: ${initial.stderr}`);

  for (let round = 1; round <= options.rounds; round++) {
    if (Date.now() > deadline) {
      report.timedOut = true;
      break;
    }
    const roundStarted = Date.now();
    // Churn on alpha: one or two new snapshots, then alpha prunes its own old, unheld snapshots.
    await writeAndSnapshot(tb, ORIGIN.host, ORIGIN.dataset, `r${round}`, 32);
    if (rng() < 0.3) await writeAndSnapshot(tb, ORIGIN.host, ORIGIN.dataset, `r${round}b`, 16);
    await pruneOnAlpha(tb, ORIGIN.dataset);

    // A fault in a fraction of rounds (never in round 1: the pairs are created there), on one random pair.
    let fault: { pairIndex: number; row: FaultRow } | undefined;
    if (round > 1 && rng() < options.faultFraction) {
      const pairIndex = Math.floor(rng() * all.length);
      const origin = all[pairIndex]!.remoteHost === ORIGIN.host;
      const candidates = FAULTS.filter((row) => row.soak === 'any' || (row.soak === 'origin' && origin));
      fault = { pairIndex, row: candidates[Math.floor(rng() * candidates.length)]! };
    }

    const roundViolations: string[] = [];
    for (const [index, pair] of all.entries()) {
      const label = `round ${round} ${pair.remoteHost}->${pair.localHost}`;
      let violations: string[];
      if (fault?.pairIndex === index) {
        const name = fault.row.name;
        report.faults.set(name, (report.faults.get(name) ?? 0) + 1);
        const notes: string[] = [];
        const result = await runFault(tb, pair, fault.row, {
          rng,
          log: (line) => notes.push(line),
          originRemote: pair.remoteHost === ORIGIN.host,
        });
        report.runs += result.faulted.length + 1;
        const codes = result.faulted.map((outcome) => outcome.exitCode).join(',');
        options.log(
          `${label}: fault "${name}" (exit ${codes}, then ${result.clean.exitCode})${notes.map((note) => `; ${note}`).join('')}`,
        );
        violations = result.violations;
      } else {
        const before = await capturePair(tb, pair);
        const outcome = await startCli(pair.localHost, pairArgs(pair, ['-v']), { timeoutMs: 120_000 }).done;
        report.runs += 1;
        violations = await checkInvariants(tb, pair, before, {
          runs: [{ label: 'run', outcome, acceptable: [0] }],
        });
      }
      roundViolations.push(...violations.map((violation) => `${label}: ${violation}`));
    }
    const race = await raceRound(tb, round, options.keep);
    report.runs += 2;
    roundViolations.push(...race.map((violation) => `round ${round} tree/member race: ${violation}`));
    for (const violation of roundViolations) {
      if (violation.includes(`: ${FULL_RESEND}: `)) report.fullResends++;
      else if (violation.includes(`: ${LEAKED_HOLD}: `)) report.leakedHolds++;
      else report.violations.push(violation);
      options.log(`VIOLATION ${violation}`);
    }
    report.roundsRun = round;
    options.log(
      `round ${round}/${options.rounds} done in ${((Date.now() - roundStarted) / 1000).toFixed(1)} s${fault ? `, fault: ${fault.row.name}` : ''}, violations so far: ${report.violations.length + report.fullResends + report.leakedHolds}`,
    );
  }
  report.seconds = Math.round((Date.now() - started) / 1000);
  return report;
}

export function soakFailed(report: SoakReport): boolean {
  return report.violations.length + report.fullResends + report.leakedHolds > 0 || report.timedOut;
}

export function formatReport(report: SoakReport): string {
  const rows: [string, string][] = [
    ['seed', String(report.seed)],
    [
      'rounds',
      `${report.roundsRun} of ${report.roundsPlanned}${report.timedOut ? ' (stopped by the time limit)' : ''}`,
    ],
    ['elapsed', `${report.seconds} s (${(report.seconds / Math.max(1, report.roundsRun)).toFixed(1)} s per round)`],
    ['runs', String(report.runs)],
    ['faults', String([...report.faults.values()].reduce((sum, count) => sum + count, 0))],
    ...[...report.faults.entries()]
      .sort((a, b) => a[0].localeCompare(b[0]))
      .map(([name, count]): [string, string] => [`  ${name}`, String(count)]),
    ['invariant violations (must be 0)', String(report.violations.length)],
    ['full resends (must be 0)', String(report.fullResends)],
    ['leaked holds (must be 0)', String(report.leakedHolds)],
  ];
  const width = Math.max(...rows.map(([key]) => key.length));
  const lines = rows.map(([key, value]) => `${key.padEnd(width)}  ${value}`);
  if (report.violations.length > 0) lines.push('', 'violations:', ...report.violations.map((line) => `  ${line}`));
  return lines.join('\n');
}

function parseOptions(argv: readonly string[]): Omit<SoakOptions, 'log'> {
  const value = (flag: string) => {
    const index = argv.indexOf(flag);
    return index >= 0 ? argv[index + 1] : undefined;
  };
  const rounds = Number(value('--rounds') ?? 200);
  const seed = Number(value('--seed') ?? Math.floor(Math.random() * 2 ** 31));
  const faultFraction = Number(value('--fault-fraction') ?? 0.3);
  const keep = value('--keep') ?? '15s';
  const maxMinutes = Number(value('--max-minutes') ?? Math.max(10, rounds * 0.75));
  for (const [name, number] of Object.entries({ rounds, seed, faultFraction, maxMinutes })) {
    if (!Number.isFinite(number) || number < 0) throw new Error(`bad --${name}`);
  }
  durationSeconds(keep);
  return { rounds, seed, faultFraction, keep, maxMinutes };
}

async function main(): Promise<number> {
  const options = parseOptions(process.argv.slice(2));
  console.log(`soak: ${options.rounds} rounds, seed ${options.seed} (replay with --seed ${options.seed})`);
  const tb = await Testbed.up(['alpha', 'beta', 'gamma', 'delta']);
  try {
    const report = await runSoak(tb, { ...options, log: (line) => console.log(line) });
    console.log(`\n${formatReport(report)}`);
    return soakFailed(report) ? 1 : 0;
  } finally {
    await tb.down();
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (error: unknown) => {
      console.error(error);
      process.exitCode = 1;
    },
  );
}
