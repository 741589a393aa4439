import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { shellJoin } from '../../src/exec/quote.js';
import { formatBytes } from '../../src/transport/progress.js';
import { CLI, type CommandOutcome, Testbed } from '../testbed/testbed.js';
import { assertExit, pull, pullArgs, snapshotSeries, sourceWithSnapshots } from './helpers.js';

/** Runs zfs_replicate on beta under a pseudo-terminal (`script`), as an operator at a shell would. */
function pullOnTerminal(tb: Testbed, args: string[]): Promise<CommandOutcome> {
  return tb.on('beta', ['script', '-qfec', shellJoin(['node', CLI, ...args]), '/dev/null'], {
    env: Testbed.cronEnvironment('beta'),
  });
}

/** The byte counts of the progress lines for `what`, in the order they were drawn. */
function shownCounts(output: string, what: string): string[] {
  const line = new RegExp(`^alpha:tank/prog/src ${what.replace(/[.()]/g, '\\$&')}: ([\\d.]+ [KMGT]?B) of `);
  return output
    .split(/[\r\n]+/)
    .map((text) => line.exec(text.trim())?.[1])
    .filter((count): count is string => count !== undefined);
}

/** The transfer's own duration, from the -v line "received full @x (...) in 9.8 s". */
function transferSeconds(outcome: CommandOutcome): number {
  const match = /received full @\S+ .*in ([\d.]+) s/.exec(outcome.stderr);
  assert.ok(match, `no "received" line in: ${outcome.stderr}`);
  return Number(match[1]);
}

describe('progress and --bwlimit on real zfs-fuse hosts', () => {
  let tb: Testbed;
  before(async () => {
    tb = await Testbed.up(['alpha', 'beta']);
  });
  after(async () => {
    await tb?.down();
  });

  test(
    'on a terminal: one live line that updates and ends with the bytes of the stream; silent without one',
    { timeout: 240_000 },
    async () => {
      const [src, dst] = ['tank/prog/src', 'tank/prog/dst'];
      await sourceWithSnapshots(tb, 'alpha', src, ['s1']);
      assertExit(await pull(tb, 'beta', 'alpha', src, dst, 'beta'), 0, 'initial');
      for (const name of ['s2', 's3', 's4']) await tb.writeAndSnapshot('alpha', src, name, 4);
      const streamBytes = Number(await tb.sh('alpha', `zfs send -I ${src}@s1 ${src}@s4 | wc -c`));
      // 12 MB at 2 MB/s: the transfer lasts about six seconds, so pv reports a dozen counts.
      await tb.rate('alpha', '16mbit');
      let run: CommandOutcome;
      try {
        run = await pullOnTerminal(tb, pullArgs('alpha', src, dst, 'beta'));
      } finally {
        await tb.rate('alpha', 'off');
      }
      assertExit(run, 0, 'on a terminal');
      const counts = shownCounts(run.stdout, '@s1..@s4 (3 snapshots)');
      console.log(`progress counts drawn: ${counts.join(', ')} (stream: ${streamBytes} bytes)`);
      assert.ok(new Set(counts).size >= 3, `the line updates: ${counts.join(', ')}\n${JSON.stringify(run.stdout)}`);
      assert.equal(counts.at(-1), formatBytes(streamBytes), `the last count is the stream's ${streamBytes} bytes`);
      assert.match(run.stdout, /@s1\.\.@s4 \(3 snapshots\): [^\r\n]* of unknown size, [\d.]+ [KMG]?B\/s, 0:0\d/);
      assert.ok(run.stdout.includes('\r'), 'rewritten in place');
      assert.equal((await tb.snapshots('beta', dst)).size, 4);

      // Under cron: no terminal, no progress, nothing printed.
      await tb.writeAndSnapshot('alpha', src, 's5', 2);
      const quiet = await pull(tb, 'beta', 'alpha', src, dst, 'beta');
      assertExit(quiet, 0, 'cron');
      assert.equal(quiet.stdout + quiet.stderr, '', 'a successful run is silent');

      // --progress without a terminal: plain lines (no \r), the last with the stream's size.
      await tb.writeAndSnapshot('alpha', src, 's6', 2);
      const sixBytes = Number(await tb.sh('alpha', `zfs send -I ${src}@s5 ${src}@s6 | wc -c`));
      const forced = await pull(tb, 'beta', 'alpha', src, dst, 'beta', ['--progress']);
      assertExit(forced, 0, '--progress');
      assert.ok(!forced.stderr.includes('\r'), JSON.stringify(forced.stderr));
      const lines = forced.stderr.trim().split('\n');
      assert.ok(
        lines.length >= 1 && lines.every((line) => line.startsWith('alpha:tank/prog/src @s5..@s6 ')),
        forced.stderr,
      );
      assert.equal(shownCounts(forced.stderr, '@s5..@s6 (1 snapshot)').at(-1), formatBytes(sixBytes));
      assert.equal(forced.stdout, '');
    },
  );

  test(
    '--bwlimit 5M holds a 50 MB stream to about 10 s, several times an unlimited one',
    { timeout: 240_000 },
    async () => {
      const src = 'tank/bw/src';
      await tb.zfs('alpha', 'create', '-p', src);
      await tb.writeAndSnapshot('alpha', src, 'big', 50);
      const free = await pull(tb, 'beta', 'alpha', src, 'tank/bw/free', 'free', ['-v', '--no-compress']);
      assertExit(free, 0, 'unlimited');
      const limited = await pull(tb, 'beta', 'alpha', src, 'tank/bw/limited', 'limited', [
        '-v',
        '--no-compress',
        '--bwlimit',
        '5M',
      ]);
      assertExit(limited, 0, 'limited');
      const [unlimitedSeconds, limitedSeconds] = [transferSeconds(free), transferSeconds(limited)];
      console.log(`50 MB: unlimited ${unlimitedSeconds} s, --bwlimit 5M ${limitedSeconds} s`);
      assert.ok(
        limitedSeconds >= 2 * unlimitedSeconds,
        `${limitedSeconds} s limited vs ${unlimitedSeconds} s unlimited`,
      );
      assert.ok(limitedSeconds >= 7 && limitedSeconds <= 25, `${limitedSeconds} s`);
      assert.match(limited.stderr, /limit: 5242880 B\/s \(pv\)/);
    },
  );

  test(
    'without pv or mbuffer here: --bwlimit stops the run before anything changes; --progress warns once and pulls',
    { timeout: 120_000 },
    async () => {
      await snapshotSeries(tb, 'alpha', 'tank/bw/src', ['more']);
      const before = await tb.snapshots('beta', 'tank/bw/free');
      // A PATH with what a pull needs but neither pv nor mbuffer (zfs comes from the sbin directories the CLI adds).
      await tb.sh(
        'beta',
        'mkdir -p /tmp/zr-bin && for t in ssh flock sh date head mkfifo; do ln -sf "$(command -v $t)" /tmp/zr-bin/; done',
      );
      const withoutMeters = (extra: string[]) =>
        tb.on(
          'beta',
          [
            'env',
            'PATH=/tmp/zr-bin',
            process.execPath,
            CLI,
            ...pullArgs('alpha', 'tank/bw/src', 'tank/bw/free', 'free'),
            ...extra,
          ],
          { env: Testbed.cronEnvironment('beta') },
        );
      const limited = await withoutMeters(['--bwlimit', '1M']);
      assertExit(limited, 2, 'no limiter');
      assert.match(limited.stderr, /--bwlimit needs pv or mbuffer on this host/);
      assert.equal(limited.stderr.trim().split('\n').length, 1);
      assert.deepEqual([...(await tb.snapshots('beta', 'tank/bw/free')).keys()], [...before.keys()]);

      const progress = await withoutMeters(['--progress']);
      assertExit(progress, 0, 'no pv');
      assert.match(
        progress.stderr,
        /^zfs_replicate\[tank\/bw\/free\]: warning: no progress shown: pv is not installed/,
      );
      assert.equal(progress.stderr.trim().split('\n').length, 1, progress.stderr);
      assert.ok((await tb.snapshots('beta', 'tank/bw/free')).has('more'));
    },
  );
});
