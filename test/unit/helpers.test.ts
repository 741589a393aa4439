import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { describe, test } from 'node:test';
import { withSbinPath } from '../../src/cli/path.js';
import { localEndpoint } from '../../src/exec/endpoint.js';
import { CommandRunner } from '../../src/exec/runner.js';
import { oneLine } from '../../src/log/logger.js';
import { describePlan } from '../../src/replication/describe.js';
import type { CommonSnapshot, Plan } from '../../src/replication/plan.js';
import { receivedBytes } from '../../src/replication/transfer.js';
import { describeExpiry } from '../../src/retention/describe.js';
import { sshArguments } from '../../src/transport/ssh-master.js';
import { hostKeyAdvice } from '../../src/transport/ssh.js';
import { mbufferBlockBytes, pipefailScript, streamStages } from '../../src/transport/stream.js';
import type { HostFeatures, Snapshot } from '../../src/zfs/types.js';
import { FUSE_FEATURES } from '../fakes/fake-zfs.js';

const snap = (name: string, createtxg: number, creation = 1_000_000): Snapshot => ({
  name,
  guid: String(createtxg * 7),
  createtxg,
  creation,
  userrefs: 0,
});
const base = (snapshot: Snapshot, viaBookmark = false): CommonSnapshot => ({
  local: snapshot,
  remote: snapshot,
  viaBookmark,
});
const describeContext = {
  remoteHost: 'alpha',
  remoteDataset: 'tank/vm',
  localDataset: 'backup/vm',
  tag: 'offsite',
  rollback: false,
  parentMissing: undefined,
};

describe('describePlan (the dry-run lines of a plan)', () => {
  test('initial: parent, full stream, the incremental rest, skipped snapshots, the hold', () => {
    const plan: Plan = {
      kind: 'initial',
      first: snap('b', 2),
      target: snap('d', 4),
      incoming: [snap('b', 2), snap('c', 3), snap('d', 4)],
      skipped: [snap('a', 1)],
    };
    assert.deepEqual(describePlan(plan, { ...describeContext, parentMissing: 'backup' }), [
      'would create parent dataset backup (zfs create -p)',
      'would receive a full stream of alpha:tank/vm@b into the new dataset backup/vm (unmounted), then set readonly=on, canmount=noauto and com.sun:auto-snapshot=false; it holds "offsite" on alpha:tank/vm@b before sending it',
      'would then send alpha:tank/vm@b..@d as one incremental stream (2 snapshots: @c, @d)',
      'would not send 1 older snapshot outside keep (@a)',
      'would hold "offsite" on @d on both sides',
    ]);
  });

  test('incremental with --rollback, and from a bookmark', () => {
    const plan: Plan = {
      kind: 'incremental',
      base: base(snap('a', 1)),
      target: snap('c', 3),
      incoming: [snap('b', 2), snap('c', 3)],
      discard: [snap('x', 2)],
    };
    assert.deepEqual(describePlan(plan, { ...describeContext, rollback: true }), [
      'would roll backup/vm back to @a, destroying @x (--rollback)',
      'would send alpha:tank/vm@a..@c into backup/vm as one incremental stream (2 snapshots: @b, @c)',
      'would hold "offsite" on @c on both sides',
    ]);
    const fromBookmark = describePlan({ ...plan, base: base(snap('a', 1), true), discard: [] }, describeContext);
    assert.match(
      fromBookmark[0] ?? '',
      /^would send alpha:tank\/vm#a\.\.@c into backup\/vm incrementally from the bookmark/,
    );
  });

  test('up to date and conflict', () => {
    assert.match(
      describePlan({ kind: 'up-to-date', base: base(snap('a', 1)) }, describeContext)[0] ?? '',
      /^up to date/,
    );
    assert.deepEqual(describePlan({ kind: 'conflict', code: 'EDIVERGED', message: 'm' }, describeContext), [
      'conflict (EDIVERGED): m',
    ]);
  });
});

describe('describeExpiry (the dry-run lines of expiry)', () => {
  test('what expires, with the remote release, what a clone keeps, and why each survivor survives', () => {
    const now = new Date(100 * 86_400 * 1000);
    const old = { ...snap('old', 1, 10 * 86_400), userrefs: 2 };
    const restored = snap('restored', 2, 15 * 86_400);
    const lines = describeExpiry(
      {
        expire: [
          { snapshot: old, remoteTwin: snap('old', 1) },
          { snapshot: restored, remoteTwin: undefined },
        ],
        survivors: [
          { snapshot: snap('base', 3, 20 * 86_400), reason: 'base' },
          { snapshot: snap('new', 4, 99 * 86_400), reason: 'within-keep' },
        ],
      },
      { tag: 'offsite', remoteHost: 'alpha', keep: '30 days', now, clones: new Map([['restored', ['tank/restore']]]) },
    );
    assert.deepEqual(lines, [
      'would expire @old: 3 months old, older than 30 days, after releasing "offsite" on its twin on alpha (holds: 2; kept if a hold other than "offsite" remains)',
      'would keep @restored past keep (3 months old): tank/restore depends on it (destroy the clone, or zfs promote it, to let it expire)',
      'keeps @base: the newest common snapshot (never expired, whatever its age)',
      'keeps @new: 1 day old, within 30 days',
    ]);
  });
});

describe('mbufferBlockBytes (mbuffer quiet with a big -b)', () => {
  test('128 KiB blocks up to 1 GiB, then bigger blocks, at most 8192 of them', () => {
    const sizes = [1, 256, 1024, 1280, 1536, 2048, 65_536].map((mebibytes) => mebibytes * 1024 ** 2);
    assert.deepEqual(
      sizes.map((bytes) => mbufferBlockBytes(bytes) / 1024),
      [128, 128, 128, 256, 256, 256, 8192],
    );
  });

  test('mbuffer itself prints no warning at 1.5 GiB (it did with 128 KiB blocks)', () => {
    const bytes = 1.5 * 1024 ** 3;
    const run = spawnSync('mbuffer', ['-q', '-s', String(mbufferBlockBytes(bytes)), '-m', String(bytes)], {
      input: 'data',
      encoding: 'utf8',
    });
    assert.equal(run.status, 0, run.stderr);
    assert.equal(run.stderr, '');
    assert.equal(run.stdout, 'data');
  });
});

describe('streamStages (the processes of one stream)', () => {
  const features = (tools: string[]): HostFeatures => ({ ...FUSE_FEATURES, tools: new Set(tools) });
  const remoteEnd = { ...localEndpoint, label: 'alpha', isRemote: true };
  const send = ['zfs', 'send', 'tank/a@b'];
  const recv = ['zfs', 'recv', '-u', 'backup/a'];

  test('compression with a codec both ends have, then mbuffer, then recv', () => {
    const plan = streamStages(
      { endpoint: remoteEnd, features: features(['zstd', 'lz4']) },
      { endpoint: localEndpoint, features: features(['lz4', 'mbuffer']) },
      send,
      recv,
      { compress: true, mbufferBytes: 64 * 1024 ** 2 },
    );
    assert.equal(plan.codec, 'lz4');
    assert.deepEqual(
      plan.stages.map((stage) => stage.name),
      ['send', 'decompress', 'mbuffer', 'recv'],
    );
    assert.deepEqual(plan.stages[2]?.command, {
      argv: ['mbuffer', '-q', '-s', '131072', '-m', String(64 * 1024 ** 2)],
    });
  });

  test('both ends have zstd and lz4: zstd, the codec the benchmark measured faster', () => {
    const both = features(['lz4', 'zstd', 'mbuffer']);
    const plan = streamStages(
      { endpoint: remoteEnd, features: both },
      { endpoint: localEndpoint, features: both },
      send,
      recv,
      {
        compress: true,
        mbufferBytes: 64 * 1024 ** 2,
      },
    );
    assert.equal(plan.codec, 'zstd');
    assert.deepEqual(plan.stages[1]?.command, { argv: ['zstd', '-d', '-q', '-c'] });
  });

  test('no codec shared, -n, or a local source: no compression stage', () => {
    const shared = { endpoint: remoteEnd, features: features(['zstd']) };
    const sink = { endpoint: localEndpoint, features: features(['lz4']) };
    assert.equal(streamStages(shared, sink, send, recv, { compress: true, mbufferBytes: 1024 ** 2 }).codec, undefined);
    const both = { endpoint: remoteEnd, features: features(['lz4']) };
    assert.equal(streamStages(both, sink, send, recv, { compress: false, mbufferBytes: 1024 ** 2 }).codec, undefined);
    const local = { endpoint: localEndpoint, features: features(['lz4']) };
    const plan = streamStages(local, sink, send, recv, { compress: true, mbufferBytes: 1024 ** 2 });
    assert.deepEqual(
      plan.stages.map((stage) => stage.name),
      ['send', 'recv'],
    );
  });
});

describe('pipefailScript under POSIX shells', () => {
  for (const shell of ['sh', 'dash', 'bash']) {
    const run = (producer: string[], consumer: string[]) =>
      spawnSync(shell, ['-c', pipefailScript(producer, consumer)], { encoding: 'utf8', timeout: 10_000 });

    test(`${shell}: the data flows, and the status is the producer's failure or the consumer's`, () => {
      const ok = run(['printf', 'a b\\n'], ['tr', 'a', 'x']);
      assert.equal(ok.status, 0);
      assert.equal(ok.stdout, 'x b\n');
      assert.notEqual(run(['sh', '-c', 'echo partial; exit 3'], ['cat']).status, 0, 'a failing producer fails it');
      assert.notEqual(run(['printf', 'a'], ['false']).status, 0, 'a failing consumer fails it');
      assert.notEqual(run(['no-such-command-zr'], ['cat']).status, 0, 'a missing producer fails it');
    });
  }
});

describe('withSbinPath', () => {
  test("cron's PATH gains the sbin directories; present ones are not repeated", () => {
    assert.equal(withSbinPath('/usr/bin:/bin'), '/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin');
    assert.equal(withSbinPath('/sbin:/usr/bin'), '/sbin:/usr/bin:/usr/local/sbin:/usr/sbin');
    assert.equal(withSbinPath(undefined), '/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin');
    assert.equal(withSbinPath('::/bin:'), '/bin:/usr/local/sbin:/usr/sbin:/sbin');
  });
});

describe('CommandRunner', () => {
  test("a command under way when the run's stop comes is stopped with it; one started after it runs", async () => {
    const stop = new AbortController();
    const runner = new CommandRunner(stop.signal);
    const started = Date.now();
    const hung = runner.attempt(localEndpoint, ['sleep', '30']);
    setTimeout(() => stop.abort(), 200);
    const result = await hung;
    assert.equal(result.spawnError, 'cancelled');
    assert.ok(Date.now() - started < 10_000, 'not after its timeout');
    const cleanup = await runner.attempt(localEndpoint, ['sh', '-c', 'sleep 0.3; echo held']);
    assert.equal(cleanup.stdout, 'held\n', "the run's cleanup after the stop");
  });

  test('a cleanup command after the stop that hangs (a suspended pool) is given up within its short timeout', async () => {
    const stop = new AbortController();
    stop.abort();
    const runner = new CommandRunner(stop.signal, 300);
    const started = Date.now();
    const result = await runner.attempt(localEndpoint, ['sleep', '30']);
    assert.equal(result.spawnError, 'timed out');
    assert.ok(Date.now() - started < 5_000, 'not after the 10-minute timeout');
  });

  test("a killed command whose output another process still holds (the ssh master's end of a session) ends", async () => {
    const stop = new AbortController();
    const runner = new CommandRunner(stop.signal);
    const started = Date.now();
    // The background sleep keeps stdout open after the shell is killed, as the master does a remote command's.
    const hung = runner.attempt(localEndpoint, ['sh', '-c', 'sleep 6 & sleep 6']);
    setTimeout(() => stop.abort(), 200);
    const result = await hung;
    assert.equal(result.spawnError, 'cancelled');
    assert.ok(Date.now() - started < 4_000, `${Date.now() - started} ms: not when the holder let go`);
  });
});

describe('sshArguments', () => {
  test("the user's options come first (ssh keeps the first value), then the safe defaults, then the rest", () => {
    const args = sshArguments(
      { host: 'h', options: ['ConnectTimeout=3'], port: 2222, identity: '/k', cipher: 'aes128-gcm@openssh.com' },
      '/tmp/ctl',
    );
    assert.deepEqual(args.slice(0, 4), ['-o', 'ConnectTimeout=3', '-o', 'BatchMode=yes']);
    assert.ok(args.includes('ConnectTimeout=10'), 'the default follows, and loses');
    assert.ok(args.includes('StrictHostKeyChecking=yes'), 'an ssh_config trusting any host key does not win');
    const acceptNew = sshArguments({ host: 'h', options: [], acceptNewHostKey: true }, '/c');
    assert.ok(
      acceptNew.indexOf('StrictHostKeyChecking=accept-new') < acceptNew.indexOf('StrictHostKeyChecking=yes'),
      '--accept-new-host-key comes first, and wins',
    );
    assert.deepEqual(args.slice(-8), ['-p', '2222', '-i', '/k', '-c', 'aes128-gcm@openssh.com', '-S', '/tmp/ctl']);
    assert.deepEqual(sshArguments({ host: 'h', options: [] }, '/c').slice(-2), ['-S', '/c']);
  });
});

describe('receivedBytes', () => {
  test("sums every snapshot of an -I stream that zfs recv -v reports, in both platforms' words", () => {
    const openzfs =
      'receiving incremental stream of a@b into c@b\nreceived 1.50M stream in 1 seconds (1.50M/sec)\nreceiving incremental stream of a@c into c@c\nreceived 512K stream in 1 seconds (512K/sec)\n';
    assert.equal(receivedBytes(openzfs), 1.5 * 1024 ** 2 + 512 * 1024);
    assert.equal(receivedBytes('received 312KB stream in 1 seconds (312KB/sec)\n'), 312 * 1024);
    assert.equal(receivedBytes('received 96B stream in 1 seconds (96B/sec)\n'), 96);
    assert.equal(receivedBytes('nothing to see'), undefined);
  });
});

describe('oneLine', () => {
  test('one event, one log line: newlines become " | ", other control characters "?"', () => {
    assert.equal(oneLine('cannot receive:\nfirst\r\n  second'), 'cannot receive: | first | second');
    assert.equal(oneLine('tab\tstays, bell\u0007 does not'), 'tab\tstays, bell? does not');
  });
});

describe('hostKeyAdvice', () => {
  test('names the way to pin or forget a key, with the port where there is one ([host]:port in known_hosts)', () => {
    const unknown = 'No ED25519 host key is known for [10.0.2.2]:10023 and you have requested strict checking.';
    assert.match(hostKeyAdvice(unknown, 'src', undefined), /ssh-keyscan src >> ~\/.ssh\/known_hosts/);
    assert.match(
      hostKeyAdvice(unknown, '10.0.2.2', 10023),
      /ssh-keyscan -p 10023 10.0.2.2 >> .* ssh -p 10023 10.0.2.2,/,
    );
    const changed = 'WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!';
    assert.match(hostKeyAdvice(changed, 'src', 2222), /ssh-keygen -R '\[src\]:2222'/);
    assert.equal(hostKeyAdvice('Connection refused', 'src', undefined), '');
  });
});
