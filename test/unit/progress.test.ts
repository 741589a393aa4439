import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { UsageError } from '../../src/errors/errors.js';
import { localEndpoint } from '../../src/exec/endpoint.js';
import { type Stage, runPipeline } from '../../src/transport/pipeline.js';
import {
  ProgressDisplay,
  counterLines,
  fitToWidth,
  meterPlan,
  parseRate,
  progressMode,
  pvArgv,
  renderProgress,
} from '../../src/transport/progress.js';
import { streamStages } from '../../src/transport/stream.js';
import { LOCAL_PROBE_SCRIPT, PROBE_SCRIPT, parseProbe } from '../../src/zfs/probe.js';
import type { HostFeatures } from '../../src/zfs/types.js';
import { FUSE_FEATURES } from '../fakes/fake-zfs.js';

describe('parseRate (--bwlimit)', () => {
  test('binary units, as pv and mbuffer read them; a plain number is bytes per second', () => {
    assert.equal(parseRate('65536'), 65536);
    assert.equal(parseRate('500k'), 500 * 1024);
    assert.equal(parseRate('500K'), 500 * 1024);
    assert.equal(parseRate('20M'), 20 * 1024 ** 2);
    assert.equal(parseRate('1.5G'), 1.5 * 1024 ** 3);
  });

  test('anything else is refused, never read as "no limit"', () => {
    for (const bad of ['', '0', '0k', '-5M', '5MB', '5 M', '5M/s', 'M', '1e6', '5T', ' 5M', '0.0001']) {
      assert.equal(parseRate(bad), undefined, JSON.stringify(bad));
    }
  });
});

describe('renderProgress (the progress line)', () => {
  const label = { source: 'alpha:tank/vm', what: '@a..@d', snapshots: 3 };

  test('known size: what moves, bytes of total, percent, rate, elapsed, ETA', () => {
    assert.equal(
      renderProgress({ ...label, expectedBytes: 50_000_000 }, { bytes: 12_500_000, elapsedMs: 5000 }),
      'alpha:tank/vm @a..@d (3 snapshots): 12.5 MB of 50.0 MB (25%), 2.5 MB/s, 0:05, ETA 0:15',
    );
  });

  test('unknown size: no percent, no ETA, and it says so', () => {
    assert.equal(
      renderProgress({ ...label, snapshots: 1 }, { bytes: 2_000_000, elapsedMs: 4000 }),
      'alpha:tank/vm @a..@d (1 snapshot): 2.0 MB of unknown size, 500.0 KB/s, 0:04',
    );
  });

  test('an estimate that falls short: 100% at most and no ETA; the first instant has no rate yet', () => {
    assert.equal(
      renderProgress({ ...label, expectedBytes: 1000 }, { bytes: 1500, elapsedMs: 3_723_000 }),
      'alpha:tank/vm @a..@d (3 snapshots): 1.5 KB of 1.0 KB (100%), 0 B/s, 1:02:03',
    );
    assert.equal(
      renderProgress(
        { source: 'h:d', what: 'the rest of an interrupted receive', expectedBytes: 10 },
        { bytes: 0, elapsedMs: 0 },
      ),
      'h:d the rest of an interrupted receive: 0 B of 10 B (0%), 0 B/s, 0:00',
    );
  });
});

test('fitToWidth: a line wider than the terminal loses its head, never its numbers', () => {
  assert.equal(fitToWidth('alpha:tank/vm @a..@d: 1.0 MB', 40), 'alpha:tank/vm @a..@d: 1.0 MB');
  const cut = fitToWidth('alpha:tank/vm @a..@d: 1.0 MB', 12);
  assert.equal(cut, '…@d: 1.0 MB');
  assert.ok(cut.length < 12, 'shorter than the width: the cursor never wraps');
  assert.equal(fitToWidth('abc', undefined), 'abc');
});

test('progressMode: a live line on a terminal, nothing under cron or -q, plain lines when forced without a terminal', () => {
  assert.equal(progressMode('auto', true, false), 'tty');
  assert.equal(progressMode('auto', false, false), undefined);
  assert.equal(progressMode('auto', true, true), undefined);
  assert.equal(progressMode('on', true, true), 'tty');
  assert.equal(progressMode('on', false, false), 'lines');
  assert.equal(progressMode('off', true, false), undefined);
});

describe('ProgressDisplay', () => {
  const label = { source: 'alpha:tank/vm', what: 'full @a', snapshots: 1 };

  test('on a terminal: one line rewritten in place, padded over a longer one, ended by the total', () => {
    const written: string[] = [];
    const display = new ProgressDisplay({ mode: 'tty', write: (text) => written.push(text) }, label);
    display.update(123_456_789);
    display.update(5);
    display.finish(200_000_000);
    assert.equal(written.length, 3);
    assert.ok(written.every((text) => text.startsWith('\r')));
    assert.ok(written[1]!.length >= written[0]!.length, 'the shorter line covers the longer one');
    assert.match(written[2]!, /: 200\.0 MB of unknown size, .*\n$/);
    assert.equal(written.join('').split('\n').length, 2, 'one newline, at the end');
  });

  test('without a terminal: plain lines, not every count, and the total', () => {
    const written: string[] = [];
    const display = new ProgressDisplay({ mode: 'lines', write: (text) => written.push(text) }, label);
    for (let count = 1; count <= 10; count++) display.update(count * 1000);
    display.finish(10_000);
    assert.equal(written.length, 2, 'the first count and the total (the next plain line is due 5 s later)');
    assert.ok(written.every((text) => !text.includes('\r') && text.endsWith('\n')));
    assert.match(written[1]!, /: 10\.0 KB of unknown size/);
  });

  test('a failed stream only ends the terminal line it drew', () => {
    const written: string[] = [];
    new ProgressDisplay({ mode: 'tty', write: (text) => written.push(text) }, label).finish(undefined);
    assert.equal(written.length, 0);
    const shown = new ProgressDisplay({ mode: 'tty', write: (text) => written.push(text) }, label);
    shown.update(1);
    shown.finish(undefined);
    assert.equal(written.at(-1), '\n');
  });
});

describe('meterPlan and the pv stage', () => {
  test('pv counts when progress is wanted, and limits when it is there', () => {
    const plan = meterPlan(new Set(['pv', 'mbuffer']), { progress: true, bwlimit: 5 * 1024 ** 2 });
    assert.deepEqual(plan, { count: true, limiter: 'pv', warning: undefined });
    assert.deepEqual(pvArgv(plan, 5 * 1024 ** 2), ['pv', '-n', '-b', '-i', '0.5', '-L', '5242880']);
    assert.deepEqual(pvArgv(meterPlan(new Set(['pv']), { progress: false, bwlimit: 1024 }), 1024), [
      'pv',
      '-q',
      '-L',
      '1024',
    ]);
    assert.equal(pvArgv(meterPlan(new Set(['pv']), { progress: false, bwlimit: undefined }), undefined), undefined);
  });

  test('without pv: mbuffer limits; progress is a warning, never a failure', () => {
    const plan = meterPlan(new Set(['mbuffer']), { progress: true, bwlimit: 1000 });
    assert.equal(plan.count, false);
    assert.equal(plan.limiter, 'mbuffer');
    assert.match(plan.warning ?? '', /pv is not installed/);
    assert.equal(pvArgv(plan, 1000), undefined);
  });

  test('a limit nothing can enforce is a usage error, not an unlimited run', () => {
    assert.throws(
      () => meterPlan(new Set(['lz4']), { progress: false, bwlimit: 1000 }),
      (error: unknown) => error instanceof UsageError && /--bwlimit needs pv or mbuffer/.test(error.message),
    );
    assert.deepEqual(meterPlan(new Set(), { progress: false, bwlimit: undefined }), {
      count: false,
      limiter: undefined,
      warning: undefined,
    });
  });

  const features = (tools: string[]): HostFeatures => ({ ...FUSE_FEATURES, tools: new Set(tools) });
  const source = { endpoint: { ...localEndpoint, label: 'alpha', isRemote: true }, features: features(['lz4']) };
  const send = ['zfs', 'send', 'tank/a@b'];
  const recv = ['zfs', 'recv', '-u', 'backup/a'];

  test('the meter sits on the receiving side after decompression, before mbuffer', () => {
    const sink = { endpoint: localEndpoint, features: features(['lz4', 'pv', 'mbuffer']) };
    const settings = { compress: true, mbufferBytes: 1024 ** 2, bwlimit: 2048 };
    const plan = streamStages(
      source,
      sink,
      send,
      recv,
      settings,
      meterPlan(sink.features.tools, { progress: true, bwlimit: 2048 }),
    );
    assert.deepEqual(
      plan.stages.map((stage) => stage.name),
      ['send', 'decompress', 'pv', 'mbuffer', 'recv'],
    );
    assert.equal(plan.meter, plan.stages[2]);
    assert.equal(plan.meter?.endpoint, localEndpoint);
    assert.deepEqual(plan.stages[3]?.command, { argv: ['mbuffer', '-q', '-s', '131072', '-m', '1048576'] });
  });

  test('mbuffer -r limits where there is no pv; no limit, no meter: the stages of old', () => {
    const sink = { endpoint: localEndpoint, features: features(['mbuffer']) };
    const limited = streamStages(source, sink, send, recv, { compress: false, mbufferBytes: 1024 ** 2, bwlimit: 2048 });
    assert.deepEqual(limited.stages[1]?.command, {
      argv: ['mbuffer', '-q', '-s', '131072', '-m', '1048576', '-r', '2048'],
    });
    assert.equal(limited.meter, undefined);
    const plain = streamStages(source, sink, send, recv, { compress: false, mbufferBytes: 1024 ** 2 });
    assert.deepEqual(
      plain.stages.map((stage) => stage.name),
      ['send', 'mbuffer', 'recv'],
    );
  });
});

describe('the meter in a real pipeline', () => {
  test('counter lines go to the counter, its errors stay in stderr', () => {
    assert.deepEqual(counterLines(['1024', ' 2048 ', '', 'pv: write failed: Broken pipe']), {
      counts: [1024, 2048],
      other: ['pv: write failed: Broken pipe'],
    });
  });

  test('a meter stage: its counts reach the counter, split across reads; its other lines stay its stderr', async () => {
    const counts: number[] = [];
    const stage = (name: string, argv: string[]): Stage => ({ name, endpoint: localEndpoint, command: { argv } });
    // A stand-in for pv -n -b (the real one runs on the test bed): the stream passes, counts go to stderr.
    const script = 'cat; printf "10" >&2; sleep 0.2; printf "24\\n" >&2; echo "pv: note" >&2; echo 3000000 >&2';
    const meter: Stage = { ...stage('pv', ['sh', '-c', script]), counter: (bytes) => counts.push(bytes) };
    const outcomes = await runPipeline([
      stage('send', ['head', '-c', '3000000', '/dev/zero']),
      meter,
      stage('recv', ['wc', '-c']),
    ]);
    assert.equal(outcomes[2]!.stderr.trim(), '3000000');
    assert.deepEqual(counts, [1024, 3_000_000]);
    assert.equal(outcomes[1]!.stderr, 'pv: note\n', 'no counter line kept as stderr');
  });

  test("this host's probe looks for pv too; the remote's stays the script zfs_replicate-serve answers", () => {
    const bin = mkdtempSync(join(tmpdir(), 'zr-probe-'));
    for (const tool of ['pv', 'zfs']) writeFileSync(join(bin, tool), '#!/bin/sh\nexit 0\n', { mode: 0o755 });
    const run = (script: string) =>
      parseProbe(
        execFileSync('/bin/sh', ['-c', script], { env: { PATH: `${bin}:/usr/bin:/bin` }, encoding: 'utf8' }),
        'here',
      );
    try {
      assert.ok(run(LOCAL_PROBE_SCRIPT).features.tools.has('pv'));
      assert.ok(!run(PROBE_SCRIPT).features.tools.has('pv'));
      assert.ok(LOCAL_PROBE_SCRIPT.endsWith(PROBE_SCRIPT));
    } finally {
      rmSync(bin, { recursive: true, force: true });
    }
  });
});
