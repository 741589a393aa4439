/**
 * Benchmarks on the zfs-fuse test bed (root): zfs_replicate against syncoid (Debian's sanoid package) and against a
 * hand-written pipeline, as one table of ratios. Asserts nothing (targets live here, not in tests).
 *   npm run bench [-- --runs N] [--snapshots N] [--only 1,2,...] (sections 1-7, see below)
 * The machine is noisy (shared cores): every row alternates the two sides run by run (A B, B A, A B ...) and reports
 * the median of the per-pair ratios, so a drift in the machine's speed hits both sides alike.
 * syncoid runs with --no-sync-snap: it then replicates the snapshots that exist, the same job as ours (and it is
 * syncoid's faster mode). It pulls as root@alpha with the `syncoid` shim on both hosts (zfs-fuse lacks `zfs get -t`).
 */
import { performance } from 'node:perf_hooks';
import { shellJoin } from '../../src/exec/quote.js';
import { planReplication } from '../../src/replication/plan.js';
import { runPipeline } from '../../src/transport/pipeline.js';
import { getArgv } from '../../src/zfs/listing.js';
import type { Snapshot } from '../../src/zfs/types.js';
import { CLI, CRON_PATH, type CommandOutcome, Testbed } from '../testbed/testbed.js';

const flag = (name: string, fallback: number) =>
  process.argv.includes(name) ? Number(process.argv[process.argv.indexOf(name) + 1]) : fallback;
const runs = Math.max(1, flag('--runs', 5));
const snapshotCount = flag('--snapshots', 10_000);
/** `--only 2,6`: run only these sections (numbered as below); all by default. */
const only = process.argv.includes('--only')
  ? new Set(
      String(process.argv[process.argv.indexOf('--only') + 1])
        .split(',')
        .map(Number),
    )
  : undefined;
const wanted = (section: number) => only === undefined || only.has(section);
const MB = 1e6;
const SYNCOID = '/usr/sbin/syncoid';
const SYNCOID_TIMEOUT_S = 30;
const CLASSIC_KEX = 'curve25519-sha256';
/** The links of the incremental rows (tc rates on alpha's egress) and how many MB each row moves. */
const LINKS = [
  ['off', 200],
  ['1gbit', 200],
  ['100mbit', 100],
] as const;
const linkName = (link: string) => (link === 'off' ? 'unlimited' : link);

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)]!;

/** One row of the table: `ratio` is ours against theirs in the row's own sense (time: lower is better). */
interface Row {
  measure: string;
  ours: string;
  theirs: string;
  ratio: number;
  target: string;
  /** undefined: a figure for information, with no target of its own. */
  met: boolean | undefined;
}
const rows: Row[] = [];

/** Pairs of timings, alternating which side goes first; the ratio is the median of ours/theirs per pair. */
interface Paired {
  ours: number[];
  theirs: number[];
}
async function alternate(
  prepare: (run: number) => Promise<unknown>,
  ours: (run: number) => Promise<unknown>,
  theirs: (run: number) => Promise<unknown>,
): Promise<Paired> {
  const paired: Paired = { ours: [], theirs: [] };
  for (let run = 0; run < runs; run++) {
    await prepare(run);
    if (run % 2 === 0) {
      paired.ours.push(await timed(() => ours(run)));
      paired.theirs.push(await timed(() => theirs(run)));
    } else {
      paired.theirs.push(await timed(() => theirs(run)));
      paired.ours.push(await timed(() => ours(run)));
    }
  }
  return paired;
}
const pairRatio = ({ ours, theirs }: Paired) => median(ours.map((value, index) => value / theirs[index]!));

/** The action's wall time in seconds, unless it answers its own (a number of seconds). */
async function timed(action: () => Promise<unknown>): Promise<number> {
  const started = performance.now();
  const own = await action();
  return typeof own === 'number' ? own : (performance.now() - started) / 1000;
}

const seconds = (values: number[]) => `${median(values).toFixed(2)} s`;

/** A row comparing wall times: the ratio is ours/theirs, met when it is at most `atMost`. */
function timeRow(measure: string, paired: Paired, atMost?: number, theirsNote = ''): void {
  const ratio = pairRatio(paired);
  rows.push({
    measure,
    ours: seconds(paired.ours),
    theirs: `${seconds(paired.theirs)}${theirsNote}`,
    ratio,
    target: atMost === undefined ? '—' : `≤ ${atMost}`,
    met: atMost === undefined ? undefined : ratio <= atMost,
  });
}

/** A row comparing throughput of `megabytes` moved in the paired times: the ratio is ours/theirs (higher is better). */
function throughputRow(measure: string, paired: Paired, megabytes: number, atLeast?: number): void {
  const ratio = 1 / pairRatio(paired);
  const rate = (values: number[]) => `${(megabytes / median(values)).toFixed(0)} MB/s`;
  rows.push({
    measure,
    ours: rate(paired.ours),
    theirs: rate(paired.theirs),
    ratio,
    target: atLeast === undefined ? '—' : `≥ ${atLeast}`,
    met: atLeast === undefined ? undefined : ratio >= atLeast,
  });
}

function printTable(): void {
  console.log(`\n| measure (${runs} alternating runs, medians) | zfs_replicate | other | ratio | target | met |`);
  console.log('|---|---|---|---|---|---|');
  for (const row of rows)
    console.log(
      `| ${row.measure} | ${row.ours} | ${row.theirs} | ${row.ratio.toFixed(2)} | ${row.target} | ${row.met === undefined ? '—' : row.met ? 'yes' : '**no**'} |`,
    );
}

function check(what: string, outcome: CommandOutcome): CommandOutcome {
  if (outcome.exitCode !== 0) throw new Error(`${what}: exit ${outcome.exitCode}: ${outcome.stderr}`);
  return outcome;
}

async function main(): Promise<void> {
  // The incrementals of three links accumulate on both sides; the vdevs are sparse files.
  process.env.ZR_TESTBED_POOL_SIZE ??= '16G';
  const tb = await Testbed.up(['alpha', 'beta']);
  try {
    await tb.testbedCommand('shim', 'alpha', 'syncoid');
    await tb.testbedCommand('shim', 'beta', 'syncoid');
    const oursTagged = async (tag: string, ...args: string[]) =>
      check(`zfs_replicate ${args.join(' ')}`, await tb.cli('beta', ['-h', 'alpha', '-t', tag, '-k', '30', ...args]));
    const ours = (...args: string[]) => oursTagged('bench', ...args);
    // timeout(1) ends the whole process group: syncoid's own ssh processes too.
    const syncoid = (...args: string[]) =>
      tb.on('beta', ['timeout', String(SYNCOID_TIMEOUT_S), SYNCOID, '--no-sync-snap', '--quiet', ...args], {
        env: { PATH: CRON_PATH, HOME: '/root' },
      });
    const syncoidOk = async (...args: string[]) => check(`syncoid ${args.join(' ')}`, await syncoid(...args));
    const pull = (source: string, target: string, ...more: string[]) => ({
      ours: () => ours('-r', source, '-l', target, ...more),
      syncoid: () =>
        syncoidOk(...more.map((option) => (option === '-R' ? '-r' : option)), `root@alpha:${source}`, target),
    });
    const fill = (dataset: string, megabytes: number, file: string) =>
      tb.sh(
        'alpha',
        `m=$(zfs get -H -o value mountpoint ${dataset}); head -c ${(megabytes / 2) * MB} /dev/urandom > "$m/${file}-random"; ` +
          `head -c ${(megabytes / 2) * MB} < <(yes 'the quick brown fox jumps over the lazy dog 0123456789') > "$m/${file}-text"`,
      );

    const nodeThenSsh = () => tb.sh('beta', `'${process.execPath}' -e 0 && ssh alpha true`);
    const smallChange = (root: string, members: string[], name: string) =>
      tb.sh(
        'alpha',
        `for m in ${members.join(' ')}; do head -c 100000 /dev/urandom > "$(zfs get -H -o value mountpoint ${root}/$m)/${name}"; done; zfs snapshot -r ${root}@${name}`,
      );

    // 1. No-op run of one dataset, cold: each run opens (and closes) its own ssh connection.
    if (wanted(1)) {
      await tb.zfs('alpha', 'create', 'tank/noop');
      await fill('tank/noop', 2, 'a');
      await tb.zfs('alpha', 'snapshot', 'tank/noop@n1');
      const noop = { ours: pull('tank/noop', 'tank/noop-ours'), theirs: pull('tank/noop', 'tank/noop-syncoid') };
      await noop.ours.ours();
      await noop.theirs.syncoid();
      timeRow(
        'no-op run, one dataset, cold',
        await alternate(async () => {}, noop.ours.ours, noop.theirs.syncoid),
        0.7,
      );
      // The least any tool can take that starts Node and then opens its own ssh connection, doing nothing else.
      timeRow(
        'the floor under that row: Node starts, then one ssh connection (`node -e 0; ssh alpha true`)',
        await alternate(async () => {}, nodeThenSsh, noop.theirs.syncoid),
      );
      // OpenSSH 9.2's default key exchange (sntrup761x25519, post-quantum) costs about 0.1 s of a cold run's 0.4 s
      // on these cores, on both sides alike. With the classic curve25519 for both, what is left is each tool's own.
      const kex = `KexAlgorithms=${CLASSIC_KEX}`;
      const fastKex = {
        ours: pull('tank/noop', 'tank/noop-ours', '--ssh-option', kex),
        theirs: pull('tank/noop', 'tank/noop-syncoid', `--sshoption=${kex}`),
      };
      timeRow(
        `no-op run, one dataset, cold, both with ${CLASSIC_KEX}`,
        await alternate(async () => {}, fastKex.ours.ours, fastKex.theirs.syncoid),
      );
    }

    // 2. Default settings, whole run of an incremental (half random, half compressible) on three links.
    if (wanted(2)) {
      await tb.zfs('alpha', 'create', '-o', 'compression=off', 'tank/inc');
      await fill('tank/inc', 2, 'base');
      await tb.zfs('alpha', 'snapshot', 'tank/inc@i0');
      const inc = { ours: pull('tank/inc', 'tank/inc-ours'), theirs: pull('tank/inc', 'tank/inc-syncoid') };
      await inc.ours.ours();
      await inc.theirs.syncoid();
      let snapshot = 0;
      for (const [link, megabytes] of LINKS) {
        await tb.rate('alpha', link);
        const paired = await alternate(
          async () => {
            await fill('tank/inc', megabytes, 'inc');
            await tb.zfs('alpha', 'snapshot', `tank/inc@i${++snapshot}`);
          },
          inc.ours.ours,
          inc.theirs.syncoid,
        );
        throughputRow(`${megabytes} MB incremental, defaults, link ${linkName(link)}`, paired, megabytes, 1.0);
      }
      await tb.rate('alpha', 'off');
    }

    // 3. Twenty crontab lines for twenty datasets of one source, fired at once, one small new snapshot each.
    if (wanted(3)) {
      const twenty = Array.from({ length: 20 }, (_, index) => `d${String(index).padStart(2, '0')}`);
      await tb.zfs('alpha', 'create', 'tank/many');
      for (const member of twenty) await tb.zfs('alpha', 'create', `tank/many/${member}`);
      await tb.zfs('alpha', 'snapshot', '-r', 'tank/many@c0');
      const oursEach = () =>
        Promise.all(twenty.map((member) => ours('-r', `tank/many/${member}`, '-l', `tank/many-ours/${member}`)));
      // Runs started in the same second share one control socket name (/tmp/syncoid-HOST-EPOCH): some fail, some
      // hang in `ssh -O exit`. Their time is that of the last run that succeeded, and the others are counted.
      let syncoidFailures = 0;
      const syncoidEach = async () => {
        const started = performance.now();
        const ends = await Promise.all(
          twenty.map(async (member) => {
            const outcome = await syncoid(`root@alpha:tank/many/${member}`, `tank/many-syncoid/${member}`);
            if (outcome.exitCode === 0) return performance.now();
            syncoidFailures++;
            return started;
          }),
        );
        return (Math.max(...ends) - started) / 1000;
      };
      await tb.zfs('beta', 'create', 'tank/many-ours');
      await tb.zfs('beta', 'create', 'tank/many-syncoid');
      await oursEach();
      for (const member of twenty) await syncoidOk(`root@alpha:tank/many/${member}`, `tank/many-syncoid/${member}`);
      const concurrent = await alternate(
        (run) => smallChange('tank/many', twenty, `c${run + 1}`),
        oursEach,
        syncoidEach,
      );
      timeRow(
        '20 runs of 20 datasets fired at once, one small snapshot each',
        concurrent,
        0.5,
        syncoidFailures > 0 ? ` (${syncoidFailures} of ${20 * runs} runs failed or hung ${SYNCOID_TIMEOUT_S} s)` : '',
      );
      syncoidFailures = 0;
      timeRow(
        'the floor under that row: twenty times `node -e 0; ssh alpha true` at once',
        await alternate(
          (run) => smallChange('tank/many', twenty, `f${run + 1}`),
          () => Promise.all(twenty.map(nodeThenSsh)),
          syncoidEach,
        ),
        undefined,
        syncoidFailures > 0 ? ` (${syncoidFailures} of ${20 * runs} runs failed or hung ${SYNCOID_TIMEOUT_S} s)` : '',
      );
    }

    // 4. A tree of 50 members under one root: no-op, then one new small snapshot per member (-R vs syncoid -r).
    if (wanted(4)) {
      const members = Array.from({ length: 50 }, (_, index) => `m${String(index).padStart(2, '0')}`);
      await tb.zfs('alpha', 'create', 'tank/tree');
      await tb.sh('alpha', members.map((member) => `zfs create tank/tree/${member}`).join('; '));
      await tb.zfs('alpha', 'snapshot', '-r', 'tank/tree@t0');
      const tree = {
        ours: pull('tank/tree', 'tank/tree-ours', '-R'),
        theirs: pull('tank/tree', 'tank/tree-syncoid', '-R'),
      };
      await tree.ours.ours();
      await tree.theirs.syncoid();
      timeRow('tree of 51 datasets, no-op', await alternate(async () => {}, tree.ours.ours, tree.theirs.syncoid), 0.5);
      timeRow(
        'tree of 51 datasets, one small snapshot each',
        await alternate((run) => smallChange('tank/tree', members, `t${run + 1}`), tree.ours.ours, tree.theirs.syncoid),
        0.5,
      );
      // What -j buys: the same tree pulled one member at a time (the only way before -j), into a replica of its own.
      const serial = () => oursTagged('bench-serial', '-r', 'tank/tree', '-l', 'tank/tree-serial', '-R', '-j', '1');
      await serial();
      timeRow(
        'tree of 51 datasets, one small snapshot each: -j 4 (default) against -j 1',
        await alternate((run) => smallChange('tank/tree', members, `u${run + 1}`), tree.ours.ours, serial),
      );
    }

    // 5. Stream efficiency: our pipeline module and our whole run against the hand-written pipeline, one full stream.
    if (wanted(5)) {
      await tb.zfs('alpha', 'create', '-o', 'compression=off', 'tank/stream');
      await fill('tank/stream', 200, 'full');
      await tb.zfs('alpha', 'snapshot', 'tank/stream@s1');
      const streamMB = Number((await tb.sh('alpha', 'zfs send tank/stream@s1 | wc -c')).trim()) / MB;
      const clear = async (dataset: string) => {
        await tb.on('beta', ['zfs', 'release', 'bench', `${dataset}@s1`]);
        await tb.destroyTree('beta', dataset);
      };
      const hand = () =>
        tb.sh('beta', 'ssh alpha zfs send tank/stream@s1 | mbuffer -q -s 128k -m 256M | zfs recv -u tank/stream-hand');
      const stage = (name: string, argv: string[]) => ({ name, endpoint: tb.endpoint('beta'), command: { argv } });
      const module = () =>
        runPipeline([
          stage('send', ['ssh', 'alpha', 'zfs', 'send', 'tank/stream@s1']),
          stage('mbuffer', ['mbuffer', '-q', '-s', '128k', '-m', '256M']),
          stage('recv', ['zfs', 'recv', '-u', 'tank/stream-module']),
        ]);
      const handVsModule = await alternate(
        () => Promise.all([clear('tank/stream-hand'), clear('tank/stream-module')]),
        module,
        hand,
      );
      throughputRow(
        'stream efficiency: our pipeline module vs the hand-written ssh, mbuffer, zfs recv',
        handVsModule,
        streamMB,
        0.97,
      );
      const wholeRun = async () => {
        await ours('-r', 'tank/stream', '-l', 'tank/stream-cli', '-n');
        await tb.on('alpha', ['zfs', 'release', 'bench', 'tank/stream@s1']);
      };
      const handVsRun = await alternate(
        () => Promise.all([clear('tank/stream-hand'), clear('tank/stream-cli')]),
        wholeRun,
        hand,
      );
      throughputRow('stream efficiency: whole run -n (fixed costs included) vs hand', handVsRun, streamMB);
      await Promise.all([clear('tank/stream-hand'), clear('tank/stream-cli')]);
    }

    // 6. Scale: a no-op run with many snapshots per side against one bare listing of both sides; peak RSS.
    // 7. The codec: the hand-written pipeline with each codec we could choose, against syncoid's own (lzop, an
    // mbuffer on both ends), on the three links of section 2. The transfer only, each time from the same base.
    if (wanted(7)) {
      await tb.zfs('alpha', 'create', '-o', 'compression=off', 'tank/codec');
      await tb.zfs('alpha', 'snapshot', 'tank/codec@c0');
      await tb.sh('beta', 'ssh alpha zfs send tank/codec@c0 | zfs recv -u tank/codec-x');
      let base = 'c0';
      const ends: Record<string, [string, string]> = {
        'zstd -1': ['zstd -1 -q -c', 'zstd -d -q -c | mbuffer -q -s 128k -m 256M'],
        'lz4 -1': ['lz4 -1 -c', 'lz4 -d -c | mbuffer -q -s 128k -m 256M'],
        none: ['cat', 'mbuffer -q -s 128k -m 256M'],
      };
      const syncoidEnds: [string, string] = [
        'lzop | mbuffer -q -s 128k -m 16M',
        'mbuffer -q -s 128k -m 16M | lzop -dfc',
      ];
      let snapshot = 0;
      for (const [link, megabytes] of LINKS) {
        await fill('tank/codec', megabytes, `c${++snapshot}`);
        await tb.zfs('alpha', 'snapshot', `tank/codec@c${snapshot}`);
        await tb.rate('alpha', link);
        const transfer = async ([send, receive]: [string, string]) => {
          await tb.sh('beta', `zfs rollback -r tank/codec-x@${base}`);
          const started = performance.now();
          await tb.sh(
            'beta',
            `ssh alpha ${shellJoin([`zfs send -i ${base} tank/codec@c${snapshot} | ${send}`])} | ${receive} | zfs recv -u tank/codec-x`,
          );
          return (performance.now() - started) / 1000;
        };
        for (const [codec, codecEnds] of Object.entries(ends)) {
          const paired = await alternate(
            async () => {},
            () => transfer(codecEnds),
            () => transfer(syncoidEnds),
          );
          throughputRow(
            `transfer with ${codec} vs syncoid's lzop and mbuffers, link ${linkName(link)}`,
            paired,
            megabytes,
          );
        }
        await tb.sh('beta', `zfs rollback -r tank/codec-x@${base}`);
        await tb.sh('beta', `ssh alpha zfs send -i ${base} tank/codec@c${snapshot} | zfs recv -u tank/codec-x`);
        base = `c${snapshot}`;
      }
      await tb.rate('alpha', 'off');
    }

    if (wanted(6)) {
      await tb.zfs('alpha', 'create', 'tank/scale');
      await tb.sh('alpha', `for i in $(seq ${snapshotCount}); do zfs snapshot tank/scale@s$i; done`);
      // The first run receives every snapshot: on zfs-fuse that takes minutes.
      check(
        'zfs_replicate: first pull of tank/scale',
        await tb.on(
          'beta',
          ['node', CLI, '-h', 'alpha', '-t', 'bench', '-k', '30', '-r', 'tank/scale', '-l', 'tank/scale-ours'],
          {
            env: { PATH: CRON_PATH, HOME: '/root', LANG: 'C', ZFS_REPLICATE_STATE_DIR: Testbed.stateDir('beta') },
            timeoutMs: 3_600_000,
          },
        ),
      );
      // The listing a run needs of each side (zfs-fuse's `zfs list` has no -p), over a fresh ssh connection.
      const bareListing = () =>
        tb.sh(
          'beta',
          `ssh alpha ${shellJoin([shellJoin(getArgv('tank/scale', 'dataset'))])} >/dev/null && ${shellJoin(getArgv('tank/scale-ours', 'dataset'))} >/dev/null`,
        );
      timeRow(
        `no-op run, ${snapshotCount} snapshots per side, vs a bare listing of both sides`,
        await alternate(
          async () => {},
          () => ours('-r', 'tank/scale', '-l', 'tank/scale-ours'),
          bareListing,
        ),
        0.5,
      );
      const rss = check(
        'peak RSS',
        await tb.on(
          'beta',
          [
            '/usr/bin/time',
            '-f',
            '%M',
            'node',
            CLI,
            '-h',
            'alpha',
            '-t',
            'bench',
            '-k',
            '30',
            '-r',
            'tank/scale',
            '-l',
            'tank/scale-ours',
          ],
          { env: { PATH: CRON_PATH, HOME: '/root', LANG: 'C', ZFS_REPLICATE_STATE_DIR: Testbed.stateDir('beta') } },
        ),
      );
      const peakMB = Number(rss.stderr.trim().split('\n').at(-1)) / 1024;
      rows.push({
        measure: `peak RSS of that no-op run (${snapshotCount} snapshots)`,
        ours: `${peakMB.toFixed(0)} MB`,
        theirs: '100 MB (limit)',
        ratio: peakMB / 100,
        target: '≤ 1',
        met: peakMB <= 100,
      });
    }
  } finally {
    printTable();
    await tb.down();
  }

  console.log('');
  for (const count of [100, 1_000, 10_000, 20_000]) {
    const snapshots = (offset: number): Snapshot[] =>
      Array.from({ length: count }, (_, index) => ({
        name: `s${index}`,
        guid: String(index + 1 + offset),
        createtxg: index + 1,
        creation: index,
        userrefs: 0,
      }));
    const remote = { dataset: 'tank/a', exists: true, snapshots: snapshots(0), bookmarks: [] };
    const local = { dataset: 'tank/b', exists: true, snapshots: snapshots(0).slice(0, count - 10), bookmarks: [] };
    const rounds = 20;
    const started = performance.now();
    for (let round = 0; round < rounds; round++)
      planReplication({ remote, local, remoteHost: 'a', nowSeconds: count, keepSeconds: 1, rollback: false });
    const perPlan = (performance.now() - started) / rounds;
    console.log(
      `planning with ${String(count).padStart(6)} snapshots per side: ${perPlan.toFixed(2)} ms per plan (${((perPlan / count) * 1000).toFixed(2)} µs per snapshot)`,
    );
  }
}

await main();
