import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, beforeEach, describe, test } from 'node:test';
import { execa } from 'execa';
import { PipelineError, runPipeline } from '../../src/transport/pipeline.js';
import { TESTBED_DIR, TESTBED_NS, Testbed } from '../testbed/testbed.js';

const HOSTS = ['alpha', 'beta', 'gamma'];

describe('the test bed', () => {
  let tb: Testbed;
  let up = false;
  const bringUp = async () => {
    tb = await Testbed.up(HOSTS);
    up = true;
  };
  before(bringUp);
  // The teardown test takes the bed down: a test that runs after it gets a new one.
  beforeEach(async () => {
    if (!up) await bringUp();
  });
  after(async () => {
    if (up) await tb.down();
  });

  /** A new dataset on alpha with one snapshot @s1 of `bytes` random bytes. */
  async function bigSnapshot(dataset: string, bytes: number): Promise<void> {
    await tb.zfs('alpha', 'create', dataset);
    await tb.sh('alpha', `head -c ${bytes} /dev/urandom > '${await tb.mountpoint('alpha', dataset)}/blob'`);
    await tb.zfs('alpha', 'snapshot', `${dataset}@s1`);
  }

  test('hosts are isolated: each has its own hostname, network and pool', { timeout: 120_000 }, async () => {
    const seen = new Map<string, string>();
    for (const host of HOSTS) {
      assert.equal((await tb.sh(host, 'hostname')).trim(), host);
      seen.set(host, (await tb.sh(host, 'zpool list -H -o guid tank')).trim());
    }
    assert.equal(new Set(seen.values()).size, HOSTS.length, `pool guids must differ: ${[...seen.values()].join(' ')}`);
    await tb.zfs('alpha', 'create', 'tank/only-on-alpha');
    const onBeta = await tb.on('beta', ['zfs', 'list', 'tank/only-on-alpha']);
    assert.notEqual(onBeta.exitCode, 0);
    assert.match(onBeta.stderr, /dataset does not exist/);
    const route = await tb.on('alpha', ['ip', 'route', 'get', '192.0.2.1']);
    assert.notEqual(route.exitCode, 0, 'a test host must have no route out of the test bed');
  });

  test('ssh works between every pair of hosts, and reaches the other host', { timeout: 120_000 }, async () => {
    for (const from of HOSTS) {
      for (const to of HOSTS) {
        const outcome = await tb.on(from, ['ssh', '-o', 'BatchMode=yes', to, 'hostname; zpool list -H -o guid tank']);
        assert.equal(outcome.exitCode, 0, `${from} -> ${to}: ${outcome.stderr}`);
        const [name, guid] = outcome.stdout.trim().split('\n');
        assert.equal(name, to);
        assert.equal(guid, (await tb.sh(to, 'zpool list -H -o guid tank')).trim());
      }
    }
  });

  test(
    'our pipeline module moves a 200 MB+ snapshot from alpha to beta with its guid preserved',
    { timeout: 180_000 },
    async () => {
      await bigSnapshot('tank/big', 220_000_000);
      const outcomes = await runPipeline([
        {
          name: 'send',
          endpoint: tb.endpoint('beta'),
          command: { argv: ['ssh', 'alpha', 'zfs', 'send', 'tank/big@s1'] },
        },
        { name: 'mbuffer', endpoint: tb.endpoint('beta'), command: { argv: ['mbuffer', '-q', '-m', '64M'] } },
        { name: 'recv', endpoint: tb.endpoint('beta'), command: { argv: ['zfs', 'recv', '-u', 'tank/big'] } },
      ]);
      assert.deepEqual(
        outcomes.map((outcome) => outcome.exitStatus),
        [0, 0, 0],
      );
      const source = await tb.snapshots('alpha', 'tank/big');
      const copy = await tb.snapshots('beta', 'tank/big');
      assert.equal(copy.get('s1')?.guid, source.get('s1')?.guid);
      assert.equal(await tb.contentDigest('beta', 'tank/big'), await tb.contentDigest('alpha', 'tank/big'));
    },
  );

  test('a cut link fails the transfer within seconds, naming the ssh stage', { timeout: 120_000 }, async () => {
    // 60 MB: at 40 mbit the stream is still under way when the link goes down after 1.5 s.
    await bigSnapshot('tank/to-cut', 60_000_000);
    await tb.rate('alpha', '40mbit');
    try {
      const started = Date.now();
      const transfer = runPipeline([
        {
          name: 'send',
          endpoint: tb.endpoint('gamma'),
          command: {
            argv: [
              'ssh',
              '-o',
              'BatchMode=yes',
              '-o',
              'ServerAliveInterval=1',
              '-o',
              'ServerAliveCountMax=2',
              'alpha',
              'zfs',
              'send',
              'tank/to-cut@s1',
            ],
          },
        },
        { name: 'recv', endpoint: tb.endpoint('gamma'), command: { argv: ['zfs', 'recv', '-u', 'tank/cut'] } },
      ]);
      await new Promise((resolve) => setTimeout(resolve, 1500));
      await tb.link('alpha', 'down');
      await assert.rejects(transfer, (error: unknown) => {
        assert.ok(error instanceof PipelineError);
        assert.equal(error.failedStage.name, 'send');
        assert.match(error.message, /Timeout, server alpha not responding/);
        return true;
      });
      const seconds = (Date.now() - started) / 1000;
      assert.ok(seconds < 15, `took ${seconds} s`);
      const partial = await tb.on('gamma', ['zfs', 'list', 'tank/cut']);
      assert.notEqual(partial.exitCode, 0, 'a cut full stream must leave no dataset');
    } finally {
      await tb.link('alpha', 'up');
      await tb.rate('alpha', 'off');
    }
  });

  test(
    'teardown leaves no process, mount or namespace of this bed behind, even with an ssh session in flight',
    { timeout: 120_000 },
    async () => {
      // Only what this bed started: another bed (or a developer's) may run on the same machine.
      const ownPids = (
        await execa('sh', ['-c', `cat ${TESTBED_DIR}/hosts/*/zfs-fuse.pid ${TESTBED_DIR}/hosts/*/holder.pid`])
      ).stdout
        .split(/\s+/)
        .filter((pid) => /^\d+$/.test(pid));
      assert.ok(ownPids.length >= 2, `no pids recorded: ${ownPids}`);
      const lingering = tb.on('beta', ['ssh', 'alpha', 'sleep 60']);
      await new Promise((resolve) => setTimeout(resolve, 500));
      up = false;
      await tb.down();
      await lingering;
      const namespaces = (await execa('ip', ['netns', 'list'])).stdout;
      assert.doesNotMatch(namespaces, new RegExp(`^${TESTBED_NS}-`, 'm'));
      // A killed daemon stays a zombie until PID 1 reaps it (1-3 s on these machines).
      const present = () => ownPids.filter((pid) => existsSync(`/proc/${pid}`));
      for (let tries = 0; tries < 50 && present().length > 0; tries++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
      assert.deepEqual(present(), [], 'a daemon of this bed is still running or was never reaped');
      const mounts = (await execa('cat', ['/proc/mounts'])).stdout;
      assert.ok(!mounts.includes(`${TESTBED_DIR}/`), 'a mount of this bed is left');
      const left = (await execa('pgrep', ['-f', `${TESTBED_DIR}/`], { reject: false })).stdout;
      assert.equal(left.trim(), '', `processes left: ${left}`);
    },
  );
});
