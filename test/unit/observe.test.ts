import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseArgs } from '../../src/cli/args.js';
import { readCommandLine } from '../../src/cli/command-line.js';
import { type CheckSettings, observerCommand, parseObserverArgs } from '../../src/cli/observe-args.js';
import { runObserver } from '../../src/cli/observe.js';
import { RunRecorder } from '../../src/cli/recorder.js';
import { recordRefusedLine } from '../../src/cli/refused-line.js';
import { FailureError, UsageError } from '../../src/errors/errors.js';
import { CheckState, checkLine, judge } from '../../src/observe/check.js';
import { writeMetricsFile } from '../../src/observe/metrics-file.js';
import { escapeLabel, renderMetrics } from '../../src/observe/metrics.js';
import { type RunRecord, type RunReport, nextRecord, parseRecord, recordFileName } from '../../src/observe/record.js';
import { readRecord, readRecords, writeRecord } from '../../src/observe/state-dir.js';
import { formatAge, goneReplicas, renderTable, selectDatasets, statusRow } from '../../src/observe/status.js';
import { summaryLine, totalEntry } from '../../src/observe/summary.js';

const NOW = 1_800_000_000;
const HOUR = 3600;
const DAY = 24 * HOUR;
const THRESHOLDS = { warnSeconds: 26 * HOUR, critSeconds: 50 * HOUR };

const NOTHING = { receivedSnapshots: 0, receivedBytes: 0, expiredSnapshots: 0 };

function report(overrides: Partial<RunReport> = {}): RunReport {
  return {
    kind: 'dataset',
    localDataset: 'backup/vm',
    remoteHost: 'vmhost',
    remoteDataset: 'tank/vm',
    tag: 'offsite',
    startedAt: NOW - 120,
    endedAt: NOW - 60,
    exitCode: 0,
    outcome: {
      receivedSnapshots: 3,
      receivedBytes: 12_345_678,
      expiredSnapshots: 1,
      newest: { name: 'daily-1', creation: NOW - 2 * HOUR },
      tagAt: 'daily-1',
    },
    ...overrides,
  };
}

const failure = (overrides: Partial<RunReport> = {}) =>
  report({
    exitCode: 4,
    errorCode: 'EDIVERGED',
    error: 'local dataset backup/vm has snapshots newer than the common one',
    outcome: undefined,
    endedAt: NOW - 30,
    ...overrides,
  });

const stateDirModule = fileURLToPath(new URL('../../src/observe/state-dir.js', import.meta.url));

describe('run records', () => {
  test('a failed run replaces the last run but keeps the last success, the newest snapshot and the tag', () => {
    const good = nextRecord(undefined, report());
    const bad = nextRecord(good, failure());
    assert.equal(bad.lastRun.exitCode, 4);
    assert.equal(bad.lastRun.errorCode, 'EDIVERGED');
    assert.equal(bad.lastRun.receivedBytes, 0);
    assert.equal(bad.lastSuccessAt, NOW - 60);
    assert.deepEqual(bad.newest, { name: 'daily-1', creation: NOW - 2 * HOUR });
    assert.equal(bad.tagAt, 'daily-1');
    const never = nextRecord(undefined, failure());
    assert.equal(never.lastSuccessAt, undefined);
    assert.equal(never.newest, undefined);
  });

  test('a run that found the lock taken leaves the last run as it was, and says when it came', () => {
    const bad = nextRecord(nextRecord(undefined, report()), failure());
    const lockedOut = nextRecord(bad, failure({ exitCode: 3, errorCode: 'ELOCKED', endedAt: NOW }));
    assert.deepEqual(lockedOut.lastRun, bad.lastRun, 'the conflict still shows');
    assert.equal(lockedOut.lockedOutAt, NOW);
    assert.equal(nextRecord(undefined, failure({ exitCode: 3 })).lastRun.exitCode, 3, 'the first run has no other');
  });

  test("a crontab line refused at its command line marks its replica's record: check is no longer OK", () => {
    const dir = mkdtempSync(join(tmpdir(), 'zr-records-'));
    try {
      writeRecord(dir, nextRecord(undefined, report({ endedAt: Date.now() / 1000 - 60 })));
      const line = ['-h', 'vmhost', '-r', 'tank/vm', '-l', 'backup/vm', '-t', 'offsite', '-k', '30'];
      const refused = readCommandLine([...line, '-i', '/nonexistent/key'], { ZFS_REPLICATE_STATE_DIR: dir });
      assert.ok(refused.kind === 'usage-error' && refused.replica !== undefined, JSON.stringify(refused));
      assert.equal(recordRefusedLine(refused.replica, refused.message, { ZFS_REPLICATE_STATE_DIR: dir }), undefined);
      const [record] = readRecords(dir).records;
      assert.equal(record?.lastRun.exitCode, 2);
      assert.match(record?.lastRun.error ?? '', /-i\/--identity/);
      assert.equal(record?.tagAt, 'daily-1', 'what earlier runs established stays');
      const row = statusRow('backup/vm', record, Date.now() / 1000);
      assert.equal(judge(row, { warnSeconds: 26 * HOUR, critSeconds: 50 * HOUR }).state, CheckState.Warning);
      // Refused before its options were read (an unknown or repeated option, a bad variable): the same.
      for (const [argv, environment] of [
        [[...line, '--bogus'], {}],
        [[...line, '-k', '30'], {}],
        [line, { ZFS_REPLICATE_TYPO: '1' }],
      ] as const) {
        const early = readCommandLine(argv, environment);
        assert.ok(early.kind === 'usage-error' && early.replica?.localDataset === 'backup/vm', JSON.stringify(early));
      }
      // A dry run changes nothing, so its refusal is no run of the job; nor is a line naming no valid replica.
      const dry = readCommandLine([...line, '--dry-run', '-i', '/nonexistent/key'], {});
      assert.ok(dry.kind === 'usage-error' && dry.replica === undefined);
      const unnamed = readCommandLine([...line.slice(0, 4), '-l', 'bad//name', '-t', 'offsite', '-k', '30'], {});
      assert.ok(unnamed.kind === 'usage-error' && unnamed.replica === undefined);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('records round-trip through a directory; foreign files and one kind per name are kept apart', () => {
    const dir = mkdtempSync(join(tmpdir(), 'zr-records-'));
    try {
      writeRecord(dir, nextRecord(undefined, report({ localDataset: 'backup/a.tree' })));
      writeRecord(
        dir,
        nextRecord(undefined, report({ kind: 'tree', localDataset: 'backup/a', members: ['backup/a'] })),
      );
      writeFileSync(join(dir, 'dataset-broken.json'), '{"version":1');
      writeFileSync(join(dir, 'notes.txt'), 'not a record');
      // Another replica's record that cannot be read at all: damaged too, not a failure to read them all.
      mkdirSync(join(dir, 'dataset-folder.json'));
      const { records, damaged } = readRecords(dir);
      assert.deepEqual(records.map((record) => [record.kind, record.localDataset]).sort(), [
        ['dataset', 'backup/a.tree'],
        ['tree', 'backup/a'],
      ]);
      assert.deepEqual(
        damaged,
        ['dataset-broken.json', 'dataset-folder.json'],
        'a damaged record is named, not taken for none',
      );
      assert.notEqual(recordFileName('dataset', 'backup/a.tree'), recordFileName('tree', 'backup/a'));
      assert.deepEqual(
        readdirSync(dir).filter((name) => name.endsWith('.tmp')),
        [],
        'no temporary file left behind',
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a state directory that cannot be made (under /proc) is an error, not a hang; missing parents are made', () => {
    // Node's recursive mkdir loops for ever under /proc, which hung a run given such a --state-dir: in a child
    // process, so that a hang fails this test instead of the whole tier.
    const child = spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `import { writeRecord } from ${JSON.stringify(stateDirModule)};
         try { writeRecord('/proc/zfs_replicate-no-such/state', {}); } catch { process.exit(3); }`,
      ],
      { encoding: 'utf8', timeout: 20_000 },
    );
    assert.equal(child.signal, null, 'writeRecord under /proc did not return');
    assert.equal(child.status, 3, child.stderr);
    const dir = mkdtempSync(join(tmpdir(), 'zr-records-'));
    try {
      writeRecord(join(dir, 'a/b'), nextRecord(undefined, report()));
      assert.equal(readRecords(join(dir, 'a/b')).records.length, 1);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a file that is not a record reads as none', () => {
    assert.equal(parseRecord('not json'), undefined);
    assert.equal(parseRecord('{"version":2}'), undefined);
    assert.equal(parseRecord('null'), undefined);
    const good = nextRecord(undefined, report());
    assert.ok(parseRecord(JSON.stringify(good)));
    // Fields of the wrong type (edited by hand) would print NaN, or break every replica's metrics file.
    for (const bad of [
      { ...good, newest: { name: 'daily-1' } },
      { ...good, newest: { name: 'daily-1', creation: '1800000000' } },
      { ...good, sourceClockOffsetSeconds: 'x' },
      { ...good, lastSuccessAt: null },
      { ...good, lastRun: { ...good.lastRun, startedAt: 'yesterday' } },
      { ...good, members: ['backup/a', 7] },
      { ...good, container: 'no' },
      { ...good, expiryWithheld: 0 },
    ])
      assert.equal(parseRecord(JSON.stringify(bad)), undefined, JSON.stringify(bad));
  });
});

test("a tree that fails before its members run marks its members' records, not other jobs' replicas under its root", () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'zr-recorder-'));
  try {
    const replica = (localDataset: string, remoteHost: string, remoteDataset: string, tag: string) =>
      writeRecord(stateDir, nextRecord(undefined, report({ localDataset, remoteHost, remoteDataset, tag })));
    replica('bk/src/a', 'alpha', 'tank/src/a', 't1'); // a member
    replica('bk/src/x', 'gamma', 'tank/x', 't9'); // another job's replica, nested under the root
    replica('bk/src/y', 'alpha', 'tank/y', 't1'); // the same host and tag, but not this tree's mapping
    replica('bk/src/n', 'alpha', 'tank/src/n', 't1'); // left out with --exclude: its own job's
    const recorder = new RunRecorder({
      host: 'alpha',
      remoteDataset: 'tank/src',
      localDataset: 'bk/src',
      tag: 't1',
      exclude: ['tank/src/n'],
      stateDir,
      metricsFile: undefined,
      dryRun: false,
    });
    recorder.tree(NOW - 10, { error: new FailureError('ESSH', 'cannot connect to alpha') }, undefined);
    assert.equal(recorder.write(), undefined);
    const lastError = (dataset: string) => readRecord(stateDir, 'dataset', dataset)?.lastRun.errorCode;
    assert.deepEqual(['bk/src/a', 'bk/src/x', 'bk/src/y', 'bk/src/n'].map(lastError), [
      'ESSH',
      undefined,
      undefined,
      undefined,
    ]);
    // A new tree line pointed at another job's replica: no member of its own, and that replica's record is not its.
    const pointedAtX = new RunRecorder({
      host: 'alpha',
      remoteDataset: 'tank/t2',
      localDataset: 'bk/src/x',
      tag: 't1',
      stateDir,
      metricsFile: undefined,
      dryRun: false,
    });
    pointedAtX.tree(NOW - 10, { error: new FailureError('ESSH', 'cannot connect to alpha') }, undefined);
    assert.equal(pointedAtX.write(), undefined);
    assert.equal(readRecord(stateDir, 'dataset', 'bk/src/x')?.remoteHost, 'gamma');
  } finally {
    rmSync(stateDir, { recursive: true, force: true });
  }
});

describe('status rows and the table', () => {
  test('a record becomes a row: lag, result, error line, last success', () => {
    const record = nextRecord(nextRecord(undefined, report()), failure());
    const row = statusRow('backup/vm', record, NOW);
    assert.equal(row.remote, 'vmhost:tank/vm');
    assert.equal(row.newest?.ageSeconds, 2 * HOUR);
    assert.equal(row.lastRun?.result, 'conflict EDIVERGED');
    assert.equal(row.lastSuccess?.ageSeconds, 60);
    assert.deepEqual(statusRow('backup/none', undefined, NOW), { dataset: 'backup/none' });
    assert.equal(
      statusRow('x', nextRecord(undefined, failure({ exitCode: 3, errorCode: 'ELOCKED' })), NOW).lastRun?.result,
      'locked',
    );
  });

  test('a newest snapshot stamped in the future (a clock ahead where it was made) cannot hide a stopped job', () => {
    // The last success was 80 h ago; the origin stamped the newest snapshot 3 days ahead of real time.
    const stopped = nextRecord(
      undefined,
      report({
        startedAt: NOW - 80 * HOUR - 60,
        endedAt: NOW - 80 * HOUR,
        outcome: { ...report().outcome!, newest: { name: 'daily-1', creation: NOW - 80 * HOUR + 72 * HOUR } },
      }),
    );
    const row = statusRow('backup/vm', stopped, NOW);
    assert.equal(row.newest?.ageSeconds, 80 * HOUR);
    assert.equal(judge(row, { warnSeconds: 26 * HOUR, critSeconds: 50 * HOUR }).state, CheckState.Critical);
  });

  test('selection: every replica recorded, or the given ones, with -R their tree members and replicas under them', () => {
    const replica = (localDataset: string, remoteDataset: string) =>
      nextRecord(undefined, report({ localDataset, remoteDataset }));
    const records = [
      replica('backup/vm', 'tank/vm'),
      replica('backup/vm/web', 'tank/other'), // another job's replica under the root
      replica('backup/vm/new', 'tank/vm/new'), // a member that failed before the tree's record listed it
      replica('backup/vm/old', 'tank/vm/old'), // a former member, now left out with --exclude
      replica('backup/vm/gone', 'tank/vm/gone'), // a former member whose source is gone
      replica('backup/vm/gone/child', 'tank/vm/gone/child'),
      replica('backup/vmx', 'tank/vmx'),
      nextRecord(
        undefined,
        report({
          kind: 'tree',
          localDataset: 'backup/vm',
          members: ['backup/vm', 'backup/vm/db'],
          gone: ['backup/vm/gone'],
          excluded: ['backup/vm/old'],
        }),
      ),
    ];
    assert.equal(selectDatasets(records, [], false).length, 7);
    assert.deepEqual(selectDatasets(records, ['backup/vm'], false), ['backup/vm']);
    assert.deepEqual(selectDatasets(records, ['backup/vm'], true), [
      'backup/vm',
      'backup/vm/db',
      'backup/vm/gone',
      'backup/vm/gone/child',
      'backup/vm/new',
      'backup/vm/web',
    ]);
    assert.deepEqual([...goneReplicas(records)].sort(), ['backup/vm/gone', 'backup/vm/gone/child']);
    const gone = statusRow('backup/vm/gone', records[4], NOW, true);
    assert.deepEqual(judge(gone, { warnSeconds: HOUR, critSeconds: 2 * HOUR }), {
      state: CheckState.Warning,
      reason: 'backup/vm/gone source vmhost:tank/vm/gone is gone (not updated)',
    });
  });

  test('ages read at a glance', () => {
    assert.deepEqual([45, 12 * 60, 5 * HOUR + 7 * 60, 3 * 86_400 + 4 * HOUR, -5].map(formatAge), [
      '45s',
      '12m',
      '5h07m',
      '3d04h',
      '0s',
    ]);
  });

  test('the table fits 80 columns: long names on their own line, long error lines wrapped, nothing cut', () => {
    const longName = 'backuppool/offsite/customers/very-long-customer-name/virt/machines';
    const longError = `could not reach ${'x'.repeat(30)} over ssh: ssh: connect to host vmhost port 22: No route to host, and more words to wrap here`;
    const rows = [
      statusRow('backup/vm', nextRecord(undefined, report()), NOW),
      statusRow(
        longName,
        nextRecord(undefined, failure({ localDataset: longName, error: longError, exitCode: 1, errorCode: 'ESSH' })),
        NOW,
      ),
      statusRow('backup/new', undefined, NOW),
      // The widest cells at once: beside them a 34-column name would make 90 columns.
      statusRow(
        'backup/middling/name-of-35-columns',
        nextRecord(
          nextRecord(undefined, report({ endedAt: NOW - 99 * 86_400 })),
          failure({ exitCode: 4, errorCode: 'EREMOTEMISSING', endedAt: NOW - 98 * 86_400 }),
        ),
        NOW,
      ),
    ];
    const lines = renderTable(rows, NOW);
    for (const line of lines) assert.ok(line.length <= 80, `${line.length} columns: ${line}`);
    assert.match(lines[0]!, /^DATASET +LAG +LAST RUN +RESULT +LAST OK$/);
    assert.match(lines[1]!, /^backup\/vm +2h00m +1m ago +ok +1m ago$/);
    assert.ok(lines.includes(longName), 'the long name stands alone');
    assert.match(lines[lines.indexOf(longName) + 1]!, /^ +- +30s ago +failed ESSH +never$/);
    const joined = lines.join(' ').replace(/\s+/g, ' ');
    assert.ok(joined.includes(longError.replace(/\s+/g, ' ')), 'the whole error line is there');
    assert.ok(lines.includes('  never run on this host (no record)'));
    const columns = lines[0]!.indexOf('LAG');
    assert.equal(lines[1]!.indexOf('2h00m'), columns, 'aligned');
  });
});

describe('check: verdict and plugin line', () => {
  const row = (record: RunRecord | undefined, now = NOW) => statusRow('backup/vm', record, now);
  const good = nextRecord(undefined, report());

  test('lag decides: OK, WARNING past warn, CRITICAL past crit', () => {
    assert.equal(judge(row(good), THRESHOLDS).state, CheckState.Ok);
    assert.equal(judge(row(good, NOW + 25 * HOUR), THRESHOLDS).state, CheckState.Warning);
    assert.equal(judge(row(good, NOW + 49 * HOUR), THRESHOLDS).state, CheckState.Critical);
  });

  test('a failed last run is at least WARNING with a small lag; a locked one is not; never replicated is CRITICAL', () => {
    const failed = judge(row(nextRecord(good, failure())), THRESHOLDS);
    assert.deepEqual(failed, { state: CheckState.Warning, reason: 'backup/vm last run conflict EDIVERGED, lag 2h00m' });
    const locked = nextRecord(good, failure({ exitCode: 3, errorCode: 'ELOCKED' }));
    assert.equal(judge(row(locked), THRESHOLDS).state, CheckState.Ok);
    assert.equal(
      judge(row(nextRecord(good, failure())), { warnSeconds: HOUR, critSeconds: 2 * HOUR }).state,
      CheckState.Critical,
    );
    const never = judge(row(nextRecord(undefined, failure({ exitCode: 1, errorCode: 'ESSH' }))), THRESHOLDS);
    assert.deepEqual(never, {
      state: CheckState.Critical,
      reason: 'backup/vm never replicated (last run failed ESSH)',
    });
    assert.equal(judge(row(undefined), THRESHOLDS).reason, 'backup/vm never replicated (no run recorded)');
    const initial = nextRecord(undefined, failure({ exitCode: 3, errorCode: 'ELOCKED' }));
    const lockedOutAt = initial.lastRun.endedAt;
    assert.deepEqual(judge(row(initial, lockedOutAt + HOUR), THRESHOLDS), {
      state: CheckState.Warning,
      reason: 'backup/vm initial sync in progress for 1h00m (no snapshot yet)',
    });
    // Later lock-outs keep the first one's time: past crit, the initial sync is stuck (or its job is gone).
    const later = nextRecord(initial, failure({ exitCode: 3, errorCode: 'ELOCKED', endedAt: lockedOutAt + 49 * HOUR }));
    assert.deepEqual(judge(row(later, lockedOutAt + 50 * HOUR), THRESHOLDS), {
      state: CheckState.Critical,
      reason: 'backup/vm initial sync in progress for 2d02h (no snapshot yet)',
    });
    // The source's clock 2 days ahead: the lag is read by its clock, and expiry being off is a WARNING.
    const ahead = nextRecord(undefined, report({ clock: { offsetSeconds: 2 * DAY, expiryWithheld: true } }));
    assert.deepEqual(judge(row(ahead, NOW + 2 * DAY), THRESHOLDS), {
      state: CheckState.Critical,
      reason: 'backup/vm lag 4d02h >= 2d02h',
    });
    assert.deepEqual(judge(row(ahead, NOW - 2 * DAY), THRESHOLDS), {
      state: CheckState.Warning,
      reason: 'backup/vm lag 2h00m, expiry off (source clock 2d00h ahead: check NTP)',
    });
    const container = nextRecord(undefined, report({ outcome: { ...NOTHING, newest: undefined }, container: true }));
    assert.deepEqual(judge(row(container), THRESHOLDS), { state: CheckState.Ok, reason: 'backup/vm is a container' });
    const failedContainer = nextRecord(container, failure({ exitCode: 1, errorCode: 'ESSH' }));
    assert.equal(judge(row(failedContainer), THRESHOLDS).state, CheckState.Warning, 'a failed run still shows');
  });

  test('one line with perfdata; for a tree the worst member decides and is named', () => {
    assert.deepEqual(checkLine([row(good)], THRESHOLDS), {
      state: CheckState.Ok,
      line: 'ZFS_REPLICATE OK: backup/vm lag 2h00m | lag=7200s;93600;180000;0 last_success_age=60s;;;0',
    });
    const members = [
      row(good),
      statusRow('backup/vm/web', nextRecord(undefined, failure({ localDataset: 'backup/vm/web' })), NOW),
      statusRow('backup/vm/db', nextRecord(undefined, report({ localDataset: 'backup/vm/db' })), NOW + HOUR),
    ];
    assert.deepEqual(checkLine(members, THRESHOLDS), {
      state: CheckState.Critical,
      line: 'ZFS_REPLICATE CRITICAL: backup/vm/web never replicated (last run conflict EDIVERGED) (1 of 3 datasets not OK) | lag=U;93600;180000;0 last_success_age=U;;;0',
    });
  });
});

describe('metrics text', () => {
  test('every family has HELP and TYPE, gauges only, labels escaped, no timestamps, no series for what is unknown', () => {
    const text = renderMetrics([
      nextRecord(undefined, report()),
      nextRecord(undefined, failure({ localDataset: 'backup/we"ird\\name', remoteHost: 'h' })),
    ]);
    const families = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((match) => [match[1], match[2]]);
    assert.equal(families.length, 10);
    assert.ok(families.every(([name, type]) => name?.startsWith('zfs_replicate_') && type === 'gauge'));
    assert.ok(
      families.every(([name]) => !name?.endsWith('_total')),
      '_total is for counters only',
    );
    assert.equal([...text.matchAll(/^# HELP /gm)].length, 10);
    assert.match(
      text,
      /^zfs_replicate_last_run_received_bytes\{dataset="backup\/vm",remote="vmhost:tank\/vm"\} 12345678$/m,
    );
    assert.match(
      text,
      /^zfs_replicate_newest_snapshot_timestamp_seconds\{dataset="backup\/vm",remote="vmhost:tank\/vm"\} 1799992800$/m,
    );
    assert.match(
      text,
      /^zfs_replicate_last_run_exit_code\{dataset="backup\/we\\"ird\\\\name",remote="h:tank\/vm"\} 4$/m,
    );
    assert.doesNotMatch(text, /^zfs_replicate_last_success_timestamp_seconds\{dataset="backup\/we/m);
    assert.doesNotMatch(text, /^zfs_replicate_expiry_withheld\{/m, 'no clock measured, no series');
    for (const line of text.split('\n').filter((line) => line && !line.startsWith('#')))
      assert.match(line, /^\w+\{[^}]*\} -?[\d.]+$/, 'name{labels} value, no timestamp');
    assert.equal(escapeLabel('a\nb'), 'a\\nb');
  });

  test('a shared metrics file shows every replica whose runs name it, and only those', () => {
    const dir = mkdtempSync(join(tmpdir(), 'zr-metrics-'));
    try {
      const file = join(dir, 'zfs_replicate.prom');
      writeRecord(dir, nextRecord(undefined, report({ localDataset: 'backup/a', metricsFile: file })));
      writeRecord(dir, nextRecord(undefined, report({ localDataset: 'backup/b', metricsFile: file })));
      writeRecord(
        dir,
        nextRecord(undefined, report({ localDataset: 'backup/c', metricsFile: join(dir, 'other.prom') })),
      );
      assert.deepEqual(writeMetricsFile(file, dir), { damaged: [] });
      writeFileSync(join(dir, recordFileName('dataset', 'backup/d')), '{"version":1,');
      assert.deepEqual(
        writeMetricsFile(file, dir),
        { damaged: ['dataset-backup%2Fd.json'] },
        'said, not dropped unseen',
      );
      const text = readFileSync(file, 'utf8');
      assert.match(text, /dataset="backup\/a"/);
      assert.match(text, /dataset="backup\/b"/);
      assert.doesNotMatch(text, /dataset="backup\/c"/);
      assert.deepEqual(
        readdirSync(dir).filter((name) => name.endsWith('.tmp')),
        [],
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('summary line', () => {
  test('per dataset and the total of a tree', () => {
    const entry = { receivedSnapshots: 3, receivedBytes: 12_300_000, expiredSnapshots: 1, seconds: 4 };
    assert.equal(summaryLine(entry), 'summary: received 3 snapshots, 12.3 MB in 4.0 s, 3.1 MB/s, expired 1 snapshot');
    const total = totalEntry(
      [
        { ...entry, label: 'a' },
        { ...entry, label: 'b', receivedSnapshots: 1 },
      ],
      9,
    );
    assert.equal(
      summaryLine(total),
      'summary: total (2 datasets): received 4 snapshots, 24.6 MB in 9.0 s, 2.7 MB/s, expired 2 snapshots',
    );
  });
});

describe('subcommands on the command line', () => {
  test('status and check are subcommands; -h HOST is still a pull, also from a host called "status"', () => {
    assert.equal(observerCommand(['status']), 'status');
    assert.equal(observerCommand(['check', '-l', 'backup/vm']), 'check');
    assert.equal(
      observerCommand(['-h', 'status', '-r', 'tank/vm', '-l', 'backup/vm', '-t', 't', '-k', '1']),
      undefined,
    );
    const pull = parseArgs(['-h', 'status', '-r', 'tank/vm', '-l', 'backup/vm', '-t', 't', '-k', '1']);
    assert.ok('host' in pull && pull.host === 'status');
    assert.equal(observerCommand([]), undefined);
  });

  test('check: -l, -R, --warn and --crit as durations or seconds; ZFS_REPLICATE_STATE_DIR applies', () => {
    const parsed = parseObserverArgs('check', ['-l', 'backup/vm', '-R', '--warn', '26h', '--crit', '180000'], {
      ZFS_REPLICATE_STATE_DIR: '/srv/state',
      ZFS_REPLICATE_HOST: 'ignored by check',
    }) as CheckSettings;
    assert.deepEqual(parsed, {
      datasets: ['backup/vm'],
      recursive: true,
      json: false,
      stateDir: '/srv/state',
      warnSeconds: 93_600,
      critSeconds: 180_000,
    });
  });

  test('check -R=yes checks the whole tree: a switch given a value is never a silent "off"', () => {
    const parsed = parseObserverArgs('check', ['-l', 'backup/vm', '-R=yes', '--warn', '1h', '--crit', '2h'], {});
    assert.equal((parsed as CheckSettings).recursive, true);
  });

  test('usage errors: one line each', () => {
    const cases: Array<[Parameters<typeof parseObserverArgs>[0], string[], RegExp]> = [
      ['check', ['--warn', '1h', '--crit', '2h'], /missing required option -l/],
      ['check', ['-l', 'backup/vm', '--crit', '2h'], /missing required option --warn/],
      ['check', ['-l', 'backup/vm', '--warn', 'soon', '--crit', '2h'], /--warn: "soon" is not a duration/],
      ['check', ['-l', 'backup/vm', '--warn', '3h', '--crit', '2h'], /--warn must not be longer than --crit/],
      ['check', ['-l', 'backup/vm', '--warn', '1h', '--warn', '2h', '--crit', '3h'], /--warn was given more than once/],
      ['check', ['-l', 'bad//name', '--warn', '1h', '--crit', '2h'], /-l\/--local: dataset name/],
      ['status', ['--json', '--bogus'], /Unknown argument: --bogus$/],
      ['status', ['-R'], /-R needs -l/],
      ['status', ['--warn', '1h'], /Unknown argument: --warn$/],
      ['check', ['-l', 'backup/vm', '-R=maybe', '--warn', '1h', '--crit', '2h'], /--recursive is a switch/],
      ['check', ['-l', 'backup/vm', '--warn', '1h', '--crit', '2h', '--', '-R'], /unexpected argument "-R"/],
      ['status', ['--json.x=1'], /Unknown argument: --json.x/],
    ];
    for (const [command, argv, message] of cases) {
      assert.throws(
        () => parseObserverArgs(command, argv, {}),
        (error: unknown) => error instanceof UsageError && message.test(error.message) && !error.message.includes('\n'),
        `${command} ${argv.join(' ')}`,
      );
    }
  });
});

describe('check answers UNKNOWN when it cannot decide', () => {
  test('a usage error and unreadable records: exit 3, one UNKNOWN line on stdout', () => {
    const dir = mkdtempSync(join(tmpdir(), 'zr-unknown-'));
    try {
      const notADirectory = join(dir, 'file');
      writeFileSync(notADirectory, '');
      const printed: string[] = [];
      const print = (line: string) => printed.push(line);
      assert.equal(runObserver('check', ['-l', 'backup/vm', '--warn', '1h'], print), 3);
      assert.equal(
        runObserver('check', ['-l', 'backup/vm', '--warn', '1h', '--crit', '2h', '--state-dir', notADirectory], print),
        3,
      );
      assert.deepEqual(printed.length, 2);
      assert.match(printed[0]!, /^ZFS_REPLICATE UNKNOWN: missing required option --crit \(see check --help\)$/);
      assert.match(printed[1]!, /^ZFS_REPLICATE UNKNOWN: cannot read the records in .*file: ENOTDIR/);
      assert.equal(
        runObserver('check', ['-l', 'backup/vm', '--warn', '1h', '--crit', '2h', '--state-dir', dir], print),
        2,
      );
      assert.match(printed[2]!, /^ZFS_REPLICATE CRITICAL: backup\/vm never replicated \(no run recorded\)/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('a damaged record is UNKNOWN for the checks it concerns, and status names it (exit 1); a missing --state-dir is UNKNOWN', () => {
    const dir = mkdtempSync(join(tmpdir(), 'zr-damaged-'));
    try {
      writeRecord(dir, nextRecord(undefined, report({ localDataset: 'backup/fine' })));
      writeFileSync(join(dir, recordFileName('dataset', 'backup/vm')), '{"version":1,"kind":"datas');
      const printed: string[] = [];
      const print = (line: string) => printed.push(line);
      const check = (...argv: string[]) =>
        runObserver('check', [...argv, '--warn', '1h', '--crit', '2h', '--state-dir', dir], print);
      assert.equal(check('-l', 'backup/vm'), 3);
      assert.match(
        printed.at(-1)!,
        /^ZFS_REPLICATE UNKNOWN: damaged record .*dataset-backup%2Fvm\.json: unreadable, or not a record/,
      );
      assert.equal(check('-R', '-l', 'backup'), 3, 'a tree check that covers it');
      assert.equal(check('-l', 'backup/fine'), 0, 'another replica is not concerned');
      const typo = ['-l', 'backup/vm', '--warn', '1h', '--crit', '2h', '--state-dir', join(dir, 'typo')];
      assert.equal(runObserver('check', typo, print), 3);
      assert.match(printed.at(-1)!, /^ZFS_REPLICATE UNKNOWN: no state directory .*typo \(see --state-dir\)$/);
      const table: string[] = [];
      assert.equal(
        runObserver('status', ['--state-dir', dir], (line) => table.push(line)),
        1,
      );
      assert.ok(
        table.some((line) => line.startsWith('backup/fine')),
        table.join('\n'),
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
