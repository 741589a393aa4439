import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { execa } from 'execa';
import { CLI, PROJECT_ROOT, TESTBED_DIR, Testbed } from '../testbed/testbed.js';
import { assertExit, pull, pulledReplica, rx, snapshotSeries, sourceWithSnapshots } from './helpers.js';

// status, check and --metrics-file against real runs on the test bed. The checks run here, outside the hosts:
// they read only the state directory (no ssh, no zfs), which is the point. A lagging replica is one whose
// checker lives later: `faketime` moves the check's clock, nothing in the product is made for the test.

const STATE = Testbed.stateDir('beta');
const METRICS_DIR = join(TESTBED_DIR, 'metrics');
const THRESHOLDS = ['--warn', '26h', '--crit', '50h'];
const LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';
const CHECK_LINE =
  /^ZFS_REPLICATE (OK|WARNING|CRITICAL|UNKNOWN): [^\n|]+ \| lag=(\d+s|U);93600;180000;0 last_success_age=(\d+s|U);;;0\n$/;

async function observe(args: readonly string[], faketime?: string) {
  const argv = ['node', CLI, ...args, '--state-dir', STATE];
  const [file, ...rest] = faketime === undefined ? argv : ['faketime', '-f', faketime, ...argv];
  const result = await execa(file!, rest, { reject: false, env: { PATH: '/usr/bin:/bin' }, extendEnv: false });
  return { exitCode: result.exitCode ?? -1, stdout: `${String(result.stdout)}\n`, stderr: String(result.stderr) };
}

async function check(dataset: string, options: { faketime?: string; recursive?: boolean } = {}) {
  const outcome = await observe(
    ['check', '-l', dataset, ...(options.recursive ? ['-R'] : []), ...THRESHOLDS],
    options.faketime,
  );
  assert.match(outcome.stdout, CHECK_LINE, `one plugin line: ${outcome.stdout}`);
  return outcome;
}

async function promtool(path: string): Promise<void> {
  const result = await execa('promtool', ['check', 'metrics'], { input: readFileSync(path), reject: false });
  assert.equal(result.exitCode, 0, `promtool: ${result.stdout}${result.stderr}`);
}

const multiline = (pattern: RegExp) => new RegExp(pattern.source, 'm');

/** The value of the metric `name` for replica `dataset` in the file's text. */
function sample(text: string, name: string, dataset: string): number | undefined {
  const line = text.split('\n').find((candidate) => candidate.startsWith(`${name}{dataset="${dataset}",`));
  return line === undefined ? undefined : Number(line.split(' ').at(-1));
}

describe('status, check and metrics on real zfs-fuse hosts', () => {
  let tb: Testbed;
  before(async () => {
    tb = await Testbed.up(['alpha', 'beta']);
    await tb.sh('beta', `mkdir -p ${METRICS_DIR}`);
  });
  after(async () => {
    await tb?.down();
  });

  test(
    'a fresh replica: record, OK, lag past warn and past crit later, summary with -v, metrics that promtool accepts',
    { timeout: 180_000 },
    async () => {
      const [src, dst] = ['tank/fresh/src', 'tank/fresh/dst'];
      const metrics = join(METRICS_DIR, 'fresh.prom');
      await sourceWithSnapshots(tb, 'alpha', src, ['f1', 'f2', 'f3']);
      const quiet = await pull(tb, 'beta', 'alpha', src, dst, 'beta', ['--metrics-file', metrics]);
      assertExit(quiet, 0);
      assert.equal(quiet.stderr, '', 'under cron a successful run stays silent');
      await snapshotSeries(tb, 'alpha', src, ['f4']);
      const verbose = await pull(tb, 'beta', 'alpha', src, dst, 'beta', ['--metrics-file', metrics, '-v']);
      assertExit(verbose, 0);
      assert.match(
        verbose.stderr,
        rx`zfs_replicate\[${dst}\]: info: summary: received 1 snapshot, [\d.]+ [KM]?B in [\d.]+ s, [\d.]+ [KM]?B/s, expired 0 snapshots$`,
      );

      const ok = await check(dst);
      assertExit(ok, 0);
      assert.match(ok.stdout, rx`^ZFS_REPLICATE OK: ${dst} lag \d+s \| lag=\d+s;`);
      const warning = await check(dst, { faketime: '+27h' });
      assertExit(warning, 1);
      assert.match(warning.stdout, rx`^ZFS_REPLICATE WARNING: ${dst} lag 1d0[34]h >= 1d02h \| lag=9\d{4}s;`);
      const critical = await check(dst, { faketime: '+51h' });
      assertExit(critical, 2);
      assert.match(critical.stdout, rx`^ZFS_REPLICATE CRITICAL: ${dst} lag 2d0[34]h >= 2d02h`);

      const status = await observe(['status', '--json', '-l', dst]);
      assertExit(status, 0);
      const [row] = JSON.parse(status.stdout).replicas;
      assert.equal(row.dataset, dst);
      assert.equal(row.remote, `alpha:${src}`);
      assert.equal(row.newest.name, 'f4');
      assert.equal(row.tagAt, 'f4');
      assert.equal(row.lastRun.result, 'ok');

      await promtool(metrics);
      const text = readFileSync(metrics, 'utf8');
      const creation = (await tb.snapshots('alpha', src)).get('f4')?.creation;
      assert.equal(sample(text, 'zfs_replicate_newest_snapshot_timestamp_seconds', dst), creation);
      assert.equal(sample(text, 'zfs_replicate_last_run_received_snapshots', dst), 1);
      assert.equal(sample(text, 'zfs_replicate_last_run_exit_code', dst), 0);
      assert.ok((sample(text, 'zfs_replicate_last_run_received_bytes', dst) ?? 0) > 1_000_000, 'over 1 MB of new data');
      assert.doesNotMatch(text, /\} \d+ \d+$/m, 'no sample carries a timestamp');
    },
  );

  test(
    'a failed last run is WARNING with a small lag; never replicated is CRITICAL; both show in one shared metrics file',
    { timeout: 180_000 },
    async () => {
      const metrics = join(METRICS_DIR, 'shared.prom');
      const [src, dst] = ['tank/failed/src', 'tank/failed/dst'];
      await pulledReplica(tb, src, dst, ['g1', 'g2']);
      await tb.zfs('beta', 'snapshot', `${dst}@local`);
      await snapshotSeries(tb, 'alpha', src, ['g3']);
      assertExit(await pull(tb, 'beta', 'alpha', src, dst, 'beta', ['--metrics-file', metrics]), 4);
      const failed = await check(dst);
      assertExit(failed, 1);
      assert.match(failed.stdout, rx`^ZFS_REPLICATE WARNING: ${dst} last run conflict EDIVERGED, lag \d+[sm] `);

      const never = 'tank/never/dst';
      assertExit(await pull(tb, 'beta', 'alpha', 'tank/never/src', never, 'beta', ['--metrics-file', metrics]), 4);
      const critical = await check(never);
      assertExit(critical, 2);
      assert.match(
        critical.stdout,
        rx`^ZFS_REPLICATE CRITICAL: ${never} never replicated \(last run conflict EREMOTEMISSING\) \| lag=U;`,
      );
      const unknownDataset = await check('tank/no/such/replica');
      assertExit(unknownDataset, 2);
      assert.match(unknownDataset.stdout, /never replicated \(no run recorded\)/);

      // Unreachable before any dataset is reached: recorded all the same, with its code.
      assertExit(await pull(tb, 'beta', 'alpha', src, dst, 'beta', ['--metrics-file', metrics, '-p', '1']), 1);

      const table = await observe(['status']);
      assertExit(table, 0);
      const lines = table.stdout.trimEnd().split('\n');
      assert.ok(
        lines.every((line) => line.length <= 80),
        `over 80 columns:\n${table.stdout}`,
      );
      assert.match(table.stdout, multiline(rx`^${dst} +\S+ +\d+s ago +failed ESSH +\S+ ago$`));
      assert.match(table.stdout, multiline(rx`^${never} +- +\d+s ago +conflict EREMOTEMISSING +never$`));
      assert.match(table.stdout, /^ {2}error: cannot connect to alpha over ssh: .*\n {4}/m);

      await promtool(metrics);
      const text = readFileSync(metrics, 'utf8');
      assert.equal(sample(text, 'zfs_replicate_last_run_exit_code', dst), 1);
      assert.equal(sample(text, 'zfs_replicate_last_run_exit_code', never), 4);
      assert.equal(sample(text, 'zfs_replicate_last_success_timestamp_seconds', never), undefined);
      assert.equal(sample(text, 'zfs_replicate_newest_snapshot_timestamp_seconds', never), undefined);
      assert.ok(sample(text, 'zfs_replicate_last_success_timestamp_seconds', dst), 'the set-up pull succeeded');
    },
  );

  test('an -R tree with one bad member: the worst member decides and is named', { timeout: 180_000 }, async () => {
    const [src, dst] = ['tank/otree/src', 'tank/otree/dst'];
    const metrics = join(METRICS_DIR, 'tree.prom');
    await tb.zfs('alpha', 'create', '-p', `${src}/a`);
    await tb.zfs('alpha', 'create', '-p', `${src}/b`);
    await tb.zfs('alpha', 'snapshot', '-r', `${src}@t1`);
    // The first tree run cannot even list the source: only the tree's own record says why.
    assertExit(await pull(tb, 'beta', 'alpha', src, dst, 'beta', ['-R', '-p', '1']), 1);
    const unreachable = await check(dst, { recursive: true });
    assertExit(unreachable, 2);
    assert.match(unreachable.stdout, rx`^ZFS_REPLICATE CRITICAL: ${dst} never replicated \(last run failed ESSH\) \|`);
    assertExit(await pull(tb, 'beta', 'alpha', src, dst, 'beta', ['-R', '--metrics-file', metrics]), 0);
    const ok = await check(dst, { recursive: true });
    assertExit(ok, 0);
    assert.match(ok.stdout, / \(all 3 datasets\) \|/);

    await tb.zfs('beta', 'snapshot', `${dst}/b@local`);
    await tb.zfs('alpha', 'snapshot', '-r', `${src}@t2`);
    const run = await pull(tb, 'beta', 'alpha', src, dst, 'beta', ['-R', '--metrics-file', metrics, '-v']);
    assertExit(run, 4);
    assert.match(run.stderr, /: summary: total \(2 datasets\): received 2 snapshots, /);
    const bad = await check(dst, { recursive: true });
    assertExit(bad, 1);
    assert.match(
      bad.stdout,
      rx`^ZFS_REPLICATE WARNING: ${dst}/b last run conflict EDIVERGED, .* \(1 of 3 datasets not OK\) \|`,
    );
    const status = JSON.parse((await observe(['status', '--json', '-R', '-l', dst])).stdout);
    assert.deepEqual(
      status.replicas.map((row: { dataset: string; lastRun: { result: string } }) => [row.dataset, row.lastRun.result]),
      [
        [dst, 'ok'],
        [`${dst}/a`, 'ok'],
        [`${dst}/b`, 'conflict EDIVERGED'],
      ],
    );
    await promtool(metrics);
    const text = readFileSync(metrics, 'utf8');
    assert.equal(sample(text, 'zfs_replicate_last_run_exit_code', `${dst}/b`), 4);
    assert.equal(sample(text, 'zfs_replicate_last_run_received_snapshots', `${dst}/a`), 1);

    // A tree run that fails before any member runs fails for every member it knew.
    assertExit(await pull(tb, 'beta', 'alpha', src, dst, 'beta', ['-R', '--metrics-file', metrics, '-p', '1']), 1);
    const down = await check(dst, { recursive: true });
    assertExit(down, 1);
    assert.match(down.stdout, / last run failed ESSH, lag \S+ \(3 of 3 datasets not OK\) \|/);
    const after = readFileSync(metrics, 'utf8');
    for (const member of [dst, `${dst}/a`, `${dst}/b`])
      assert.equal(sample(after, 'zfs_replicate_last_run_exit_code', member), 1, member);
  });

  test(
    '-R: a container root is OK, a member without snapshots and its child are CRITICAL with series; a locked-out run clears nothing',
    { timeout: 180_000 },
    async () => {
      const [src, dst] = ['tank/octr/src', 'tank/octr/dst'];
      const metrics = join(METRICS_DIR, 'container.prom');
      await tb.zfs('alpha', 'create', '-p', `${src}/a`);
      await tb.zfs('alpha', 'create', '-p', `${src}/w/c`);
      await tb.zfs('alpha', 'snapshot', `${src}/a@r1`);
      await tb.zfs('alpha', 'snapshot', `${src}/w/c@r1`);
      assertExit(await pull(tb, 'beta', 'alpha', src, dst, 'beta', ['-R', '--metrics-file', metrics]), 0);
      const waiting = await check(dst, { recursive: true });
      assertExit(waiting, 2);
      assert.match(
        waiting.stdout,
        rx`^ZFS_REPLICATE CRITICAL: ${dst}/w(/c)? never replicated \(last run conflict EREMOTEEMPTY\) \(2 of 4 datasets not OK\)`,
      );
      await promtool(metrics);
      const text = readFileSync(metrics, 'utf8');
      for (const member of [`${dst}/w`, `${dst}/w/c`])
        assert.equal(sample(text, 'zfs_replicate_last_run_exit_code', member), 4, member);
      assert.equal(sample(text, 'zfs_replicate_last_run_exit_code', dst), 0);

      await tb.zfs('alpha', 'snapshot', '-r', `${src}/w@r2`);
      assertExit(await pull(tb, 'beta', 'alpha', src, dst, 'beta', ['-R', '--metrics-file', metrics]), 0);
      const fine = await check(dst, { recursive: true });
      assertExit(fine, 0);
      assert.match(fine.stdout, /\(all 4 datasets\) \| lag=\d+s;/, 'the container has no lag of its own');
      const table = await observe(['status', '-l', dst]);
      assert.match(table.stdout, /a container: its source has no snapshots, its children are replicated/);

      // A failed run, then one that finds the lock taken: the failure still shows.
      assertExit(await pull(tb, 'beta', 'alpha', `${src}/a`, `${dst}/a`, 'beta', ['-p', '1']), 1);
      const lockFile = `/run/lock/zfs_replicate/${encodeURIComponent(`${dst}/a`)}.lock`;
      const holder = tb.on('beta', ['sh', '-c', `mkdir -p /run/lock/zfs_replicate && exec flock ${lockFile} sleep 6`]);
      await new Promise((resolve) => setTimeout(resolve, 1500));
      assertExit(await pull(tb, 'beta', 'alpha', `${src}/a`, `${dst}/a`, 'beta'), 3);
      await holder;
      const stillFailed = await check(`${dst}/a`);
      assertExit(stillFailed, 1);
      assert.match(stillFailed.stdout, rx`^ZFS_REPLICATE WARNING: ${dst}/a last run failed ESSH`);
    },
  );

  test(
    "the source's clock 2 days ahead: expiry off is a WARNING in check and a series in the metrics",
    { timeout: 180_000 },
    async () => {
      const [src, dst] = ['tank/skew/src', 'tank/skew/dst'];
      const metrics = join(METRICS_DIR, 'skew.prom');
      await pulledReplica(tb, src, dst, ['k1']);
      await snapshotSeries(tb, 'alpha', src, ['k2']);
      // This host's clock 2 days behind is the source's 2 days ahead.
      const behind = { FAKETIME: '-2d', FAKETIME_DONT_FAKE_MONOTONIC: '1', LD_PRELOAD: LIBFAKETIME };
      const run = await tb.on(
        'beta',
        ['node', CLI, '-h', 'alpha', '-r', src, '-l', dst, '-t', 'beta', '--keep', '1s', '--metrics-file', metrics],
        { env: { ...Testbed.cronEnvironment('beta'), ...behind } },
      );
      assertExit(run, 0);
      assert.match(run.stderr, /warning: the clock of alpha is 2 days ahead of this host's .*expiring nothing/);
      assert.ok((await tb.snapshots('beta', dst)).has('k1'), 'nothing expired');
      const skewed = await check(dst, { faketime: '-2d' });
      assertExit(skewed, 1);
      assert.match(
        skewed.stdout,
        rx`^ZFS_REPLICATE WARNING: ${dst} lag \d+s, expiry off \(source clock 2d00h ahead: check NTP\)`,
      );
      await promtool(metrics);
      const text = readFileSync(metrics, 'utf8');
      assert.equal(sample(text, 'zfs_replicate_expiry_withheld', dst), 1);
      assert.ok(Math.abs(sample(text, 'zfs_replicate_source_clock_offset_seconds', dst)! - 2 * 86_400) < 5);
    },
  );

  test(
    '-R: a member whose source is gone is WARNING, one left out with --exclude no longer counts, a new tree that cannot connect has a series',
    { timeout: 180_000 },
    async () => {
      const [src, dst] = ['tank/ogone/src', 'tank/ogone/dst'];
      for (const member of ['a', 'b', 'c']) await tb.zfs('alpha', 'create', '-p', `${src}/${member}`);
      await tb.zfs('alpha', 'snapshot', '-r', `${src}@r1`);
      assertExit(await pull(tb, 'beta', 'alpha', src, dst, 'beta', ['-R']), 0);
      await tb.zfs('alpha', 'release', 'beta', `${src}/a@r1`);
      await tb.destroyTree('alpha', `${src}/a`);
      assertExit(await pull(tb, 'beta', 'alpha', src, dst, 'beta', ['-R', '--exclude', `${src}/b`]), 0);
      const gone = await check(dst, { recursive: true });
      assertExit(gone, 1);
      assert.match(
        gone.stdout,
        rx`^ZFS_REPLICATE WARNING: ${dst}/a source alpha:${src}/a is gone \(not updated\) \(1 of 3 datasets not OK\)`,
      );
      const table = await observe(['status', '-R', '-l', dst]);
      assert.match(table.stdout, rx`from alpha:${src}/a, which is gone: no longer updated`);
      assert.doesNotMatch(table.stdout, rx`${dst}/b`);

      const metrics = join(METRICS_DIR, 'newtree.prom');
      const fresh = 'tank/ogone/fresh';
      assertExit(await pull(tb, 'beta', 'alpha', src, fresh, 'beta', ['-R', '-p', '1', '--metrics-file', metrics]), 1);
      await promtool(metrics);
      assert.equal(sample(readFileSync(metrics, 'utf8'), 'zfs_replicate_last_run_exit_code', fresh), 1);
    },
  );

  test('the example alert rules pass promtool check rules', async () => {
    const result = await execa('promtool', ['check', 'rules', join(PROJECT_ROOT, 'examples/prometheus-alerts.yml')], {
      reject: false,
    });
    assert.equal(result.exitCode, 0, `${result.stdout}${result.stderr}`);
    assert.match(result.stdout, /SUCCESS: 6 rules found/);
  });

  test('a run that cannot write its record warns once and keeps its exit code', { timeout: 120_000 }, async () => {
    const [src, dst] = ['tank/norecord/src', 'tank/norecord/dst'];
    const notADirectory = join(mkdtempSync(join(TESTBED_DIR, 'zr-state-')), 'file');
    writeFileSync(notADirectory, 'a file where the state directory should be\n');
    try {
      await sourceWithSnapshots(tb, 'alpha', src, ['n1']);
      const good = await pull(tb, 'beta', 'alpha', src, dst, 'beta', ['--state-dir', notADirectory]);
      assertExit(good, 0);
      assert.match(
        good.stderr,
        rx`^zfs_replicate\[${dst}\]: warning: could not write the run record in ${notADirectory} \(${notADirectory} exists and is not a directory\): status, check and metrics do not show this run$`,
      );
      await tb.zfs('beta', 'snapshot', `${dst}@local`);
      await snapshotSeries(tb, 'alpha', src, ['n2']);
      const conflict = await pull(tb, 'beta', 'alpha', src, dst, 'beta', ['--state-dir', notADirectory]);
      assertExit(conflict, 4);
      assert.equal(conflict.stderr.match(/could not write the run record/g)?.length, 1);
    } finally {
      rmSync(join(notADirectory, '..'), { recursive: true, force: true });
    }
  });
});
