import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { Testbed } from '../testbed/testbed.js';
import { assertExit, pull, pulledReplica, sourceWithSnapshots } from './helpers.js';

describe('life under cron: output, log destinations, exit codes', () => {
  let tb: Testbed;
  const scratch = mkdtempSync('/var/tmp/zr-cron-test-');
  before(async () => {
    tb = await Testbed.up(['alpha', 'beta']);
  });
  after(async () => {
    await tb?.down();
    rmSync(scratch, { recursive: true, force: true });
  });

  test('success is silent on the console while --log-file records what happened', { timeout: 120_000 }, async () => {
    const logFile = join(scratch, 'run.log');
    await sourceWithSnapshots(tb, 'alpha', 'tank/silent/src', ['s1']);
    const run = await pull(tb, 'beta', 'alpha', 'tank/silent/src', 'tank/silent/dst', 'beta', ['--log-file', logFile]);
    assertExit(run, 0);
    assert.equal(run.stdout + run.stderr, '');
    const log = readFileSync(logFile, 'utf8');
    assert.match(
      log,
      /^\S+Z \[tank\/silent\/dst\] info: receiving full @s1 from alpha:tank\/silent\/src into tank\/silent\/dst/m,
    );
    assert.match(log, /info: received full @s1 \([\d.]+ [KMG]?B\) in [\d.]+ s/, 'with the size zfs recv reports');
  });

  test('-q shows errors only; a conflict is one error line with exit 4', { timeout: 120_000 }, async () => {
    await sourceWithSnapshots(tb, 'alpha', 'tank/quiet/src', ['s1']);
    await tb.zfs('beta', 'create', '-p', 'tank/quiet/not-a-replica');
    const run = await pull(tb, 'beta', 'alpha', 'tank/quiet/src', 'tank/quiet/not-a-replica', 'beta', ['-q']);
    assertExit(run, 4);
    assert.match(
      run.stderr,
      /^zfs_replicate\[tank\/quiet\/not-a-replica\]: error: local dataset tank\/quiet\/not-a-replica exists but has no snapshots/,
    );
    assert.equal(run.stderr.trim().split('\n').length, 1);
  });

  test(
    '--log-format json gives one JSON object per line, with the dataset and the error code',
    { timeout: 120_000 },
    async () => {
      const run = await pull(tb, 'beta', 'alpha', 'tank/nope', 'tank/dst2', 'beta', ['--log-format', 'json']);
      assertExit(run, 4);
      const entry = JSON.parse(run.stderr.trim()) as Record<string, string>;
      assert.equal(entry.level, 'error');
      assert.match(entry.message ?? '', /remote dataset alpha:tank\/nope does not exist/);
      assert.equal(entry.dataset, 'tank/dst2');
      assert.equal(entry.code, 'EREMOTEMISSING');
      assert.ok(!Number.isNaN(Date.parse(entry.timestamp ?? '')));
      const text = await pull(tb, 'beta', 'alpha', 'tank/nope', 'tank/dst2', 'beta');
      assert.match(text.stderr, /^zfs_replicate\[tank\/dst2\]: error: remote dataset .* \(EREMOTEMISSING\)$/m);
    },
  );

  test(
    "--syslog without a syslog socket does not break the run: one line says so, the exit code is the run's",
    { timeout: 120_000 },
    async () => {
      const missing = join(scratch, 'no-such-socket');
      await pulledReplica(tb, 'tank/nosyslog/src', 'tank/nosyslog/dst', ['s1']);
      await tb.writeAndSnapshot('alpha', 'tank/nosyslog/src', 's2');
      const run = await pull(tb, 'beta', 'alpha', 'tank/nosyslog/src', 'tank/nosyslog/dst', 'beta', [
        '--syslog',
        '--syslog-socket',
        missing,
      ]);
      assertExit(run, 0);
      const lines = run.stderr.split('\n').filter((line) => line !== '');
      assert.equal(lines.length, 1, run.stderr);
      assert.match(lines[0] ?? '', /warning: --syslog \(.*no-such-socket\) failed \(.*\); logging there stopped$/);
      assert.ok(!existsSync(missing));
    },
  );

  test(
    '--syslog sends info lines and errors to the syslog socket, tagged with the dataset',
    { timeout: 120_000 },
    async () => {
      await pulledReplica(tb, 'tank/syslog/src', 'tank/syslog/dst', ['s1']);
      const socket = join(scratch, 'log.sock');
      const received = join(scratch, 'syslog.txt');
      const listener = spawn(
        'python3',
        [
          '-c',
          `
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(${JSON.stringify(socket)})
print('ready', flush=True)
with open(${JSON.stringify(received)}, 'ab', buffering=0) as out:
    while True:
        out.write(s.recv(65536) + b'\\n')
`,
        ],
        { stdio: ['ignore', 'pipe', 'inherit'] },
      );
      try {
        await new Promise<void>((resolve) => listener.stdout!.once('data', () => resolve()));
        await tb.writeAndSnapshot('alpha', 'tank/syslog/src', 's2');
        const syslog = ['--syslog', '--syslog-socket', socket];
        assertExit(await pull(tb, 'beta', 'alpha', 'tank/syslog/src', 'tank/syslog/dst', 'beta', syslog), 0);
        assertExit(await pull(tb, 'beta', 'alpha', 'tank/gone', 'tank/dst3', 'beta', syslog), 4);
        const lines = readFileSync(received, 'utf8');
        assert.match(
          lines,
          /^<14>.*zfs_replicate\[tank\/syslog\/dst\]\[\d+\]: receiving @s1\.\.@s2 from alpha:tank\/syslog\/src/m,
        );
        assert.match(
          lines,
          /^<11>.*zfs_replicate\[tank\/dst3\]\[\d+\]: remote dataset alpha:tank\/gone does not exist/m,
        );
      } finally {
        listener.kill();
      }
    },
  );
});
