import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type RunningCli, startCli } from '../faults/harness.js';
import { CLI, Testbed } from '../testbed/testbed.js';
import { assertExit, poolSnapshot, pull, pulledReplica, rx, sleep, sourceWithSnapshots } from './helpers.js';

// The promises of issue 9 and 14 that the fault suite does not cover row by row: each test here failed on the
// code before the fix it names.

describe('safety: every promise holds on the worst day', () => {
  let tb: Testbed;
  before(async () => {
    tb = await Testbed.up(['alpha', 'beta']);
  });
  after(async () => {
    await tb?.down();
  });
  /** A pull from alpha to beta with tag "beta", watched line by line while it runs. */
  const startPull = (remote: string, local: string, extra: string[]) =>
    startCli('beta', ['-h', 'alpha', '-r', remote, '-l', local, '-t', 'beta', ...extra]);
  const pools = async () => [await poolSnapshot(tb, 'alpha'), await poolSnapshot(tb, 'beta')];
  const lines = (text: string) => text.split('\n').filter((line) => line !== '');

  test(
    'an unusable --log-file never changes the exit code: one line says so, no hang',
    { timeout: 120_000 },
    async () => {
      await pulledReplica(tb, 'tank/lg/src', 'tank/lg/dst', ['s1']);
      await tb.sh(
        'beta',
        'mkdir -p /tmp/zr-full && mount -t tmpfs -o size=64k zr-full /tmp/zr-full && dd if=/dev/zero of=/tmp/zr-full/fill bs=4k count=100 2>/dev/null || true; mkfifo /tmp/zr-full/fifo',
      );
      try {
        // The FIFO has no reader: opening it for writing would wait for one for ever.
        for (const logFile of ['/tmp', '/proc/version', '/tmp/zr-full/log', '/tmp/zr-full/fifo']) {
          // A conflict (exit 4): the remote dataset does not exist.
          const run = await pull(tb, 'beta', 'alpha', 'tank/lg/none', 'tank/lg/dst', 'beta', ['--log-file', logFile]);
          assertExit(run, 4, logFile);
          assert.match(run.stderr, rx`warning: --log-file ${logFile} failed`, logFile);
          assert.match(run.stderr, /error: remote dataset alpha:tank\/lg\/none does not exist/);
          assert.doesNotMatch(run.stderr, /at .*\.js:\d+/, 'no stack trace');
          assert.equal(lines(run.stderr).length, 2, run.stderr);
        }
      } finally {
        await tb.sh('beta', 'umount /tmp/zr-full');
      }
    },
  );

  test(
    'an unusable $TMPDIR (missing, read-only) fails the run in one line naming it; nothing changes',
    { timeout: 120_000 },
    async () => {
      await pulledReplica(tb, 'tank/tmpd/src', 'tank/tmpd/dst', ['s1']);
      await tb.writeAndSnapshot('alpha', 'tank/tmpd/src', 's2');
      // A same-host pull needs no ssh, but its stream's pipes are made in $TMPDIR too.
      await tb.zfs('beta', 'create', 'tank/tmpd/local');
      await tb.zfs('beta', 'snapshot', 'tank/tmpd/local@l1');
      await tb.sh('beta', 'mkdir -p /tmp/zr-ro-tmp && mount -t tmpfs -o ro zr-ro-tmp /tmp/zr-ro-tmp');
      const withTmpdir = (tmpdir: string, host: string, remote: string, local: string) =>
        tb.on(
          'beta',
          ['env', `TMPDIR=${tmpdir}`, 'node', CLI, '-h', host, '-r', remote, '-l', local, '-t', 'beta', '-k', '30'],
          {
            env: Testbed.cronEnvironment('beta'),
          },
        );
      try {
        for (const tmpdir of ['/nonexistent', '/tmp/zr-ro-tmp']) {
          const before = await pools();
          const remote = await withTmpdir(tmpdir, 'alpha', 'tank/tmpd/src', 'tank/tmpd/dst');
          assertExit(remote, 1, tmpdir);
          assert.match(
            remote.stderr,
            rx`cannot connect to alpha over ssh: no room for the control socket in ${tmpdir} \(set TMPDIR\)`,
          );
          assert.equal(lines(remote.stderr).length, 1, remote.stderr);
          const local = await withTmpdir(tmpdir, 'localhost', 'tank/tmpd/local', 'tank/tmpd/copy');
          assertExit(local, 1, `${tmpdir}, localhost`);
          assert.match(local.stderr, rx`cannot make the stream's pipes in ${tmpdir} \(set TMPDIR\)`);
          assert.equal(lines(local.stderr).length, 1, local.stderr);
          assert.deepEqual(await pools(), before, 'nothing changed on either host');
        }
      } finally {
        await tb.sh('beta', 'umount /tmp/zr-ro-tmp');
      }
      assertExit(await pull(tb, 'beta', 'alpha', 'tank/tmpd/src', 'tank/tmpd/dst', 'beta'), 0, 'with TMPDIR usable');
    },
  );

  test(
    'lock directory problems are ELOCK (exit 1) naming --lock-dir; an empty --lock-dir is a usage error',
    { timeout: 120_000 },
    async () => {
      // A file where the directory should be; a path under /proc; a read-only file system.
      await tb.sh('beta', 'touch /tmp/zr-lock-file; mkdir -p /tmp/zr-ro && mount -t tmpfs -o ro zr-ro /tmp/zr-ro');
      try {
        for (const lockDir of ['/tmp/zr-lock-file', '/proc/zr-lock', '/tmp/zr-ro/locks']) {
          const run = await pull(tb, 'beta', 'alpha', 'tank/x', 'tank/y', 'beta', ['--lock-dir', lockDir]);
          assertExit(run, 1, lockDir);
          assert.match(run.stderr, /cannot open the lock file .*\(choose a writable directory with --lock-dir\)/);
          assert.doesNotMatch(run.stderr, /unexpected internal error/);
        }
      } finally {
        await tb.sh('beta', 'umount /tmp/zr-ro');
      }
      // Not root, no XDG_RUNTIME_DIR, HOME=/: the system lock directory is root's, and there is no other.
      const unprivilegedArgs = ['-h', 'alpha', '-r', 'tank/x', '-l', 'tank/y', '-t', 'beta', '-k', '1'];
      const unprivileged = await tb.on(
        'beta',
        ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', 'node', CLI, ...unprivilegedArgs],
        { env: { PATH: '/usr/bin:/bin', HOME: '/' } },
      );
      assertExit(unprivileged, 1, 'as nobody');
      assert.match(
        unprivileged.stderr,
        /no lock directory: cannot use \/run\/lock\/zfs_replicate \(E[A-Z]+\).*--lock-dir/,
      );
      // Not root, with a runtime directory of its own: the lock lives there (the run then fails later, not on the lock).
      await tb.sh('beta', 'rm -rf /tmp/zr-xdg && mkdir -m 700 /tmp/zr-xdg && chown 65534:65534 /tmp/zr-xdg');
      const withRuntimeDir = await tb.on(
        'beta',
        ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', 'node', CLI, ...unprivilegedArgs],
        { env: { PATH: '/usr/bin:/bin', HOME: '/', XDG_RUNTIME_DIR: '/tmp/zr-xdg' } },
      );
      assert.doesNotMatch(withRuntimeDir.stderr, /lock/);
      assert.equal((await tb.sh('beta', 'stat -c %u /tmp/zr-xdg/zfs_replicate/tank%2Fy.lock')).trim(), '65534');
      // Not root, under cron (a HOME, no runtime directory): the lock lives under the user's home.
      await tb.sh('beta', 'rm -rf /tmp/zr-home && mkdir -m 700 /tmp/zr-home && chown 65534:65534 /tmp/zr-home');
      const withHome = await tb.on(
        'beta',
        ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', 'node', CLI, ...unprivilegedArgs],
        { env: { PATH: '/usr/bin:/bin', HOME: '/tmp/zr-home' } },
      );
      assert.doesNotMatch(withHome.stderr, /lock/);
      assert.equal(
        (await tb.sh('beta', 'stat -c %u /tmp/zr-home/.local/state/zfs_replicate/locks/tank%2Fy.lock')).trim(),
        '65534',
      );
      assertExit(await pull(tb, 'beta', 'alpha', 'tank/x', 'tank/y', 'beta', ['--lock-dir', '']), 2);
    },
  );

  test(
    'the longest legal dataset names replicate: their lock file fits the 255-byte name limit',
    { timeout: 120_000 },
    async () => {
      const long = `tank/${'l'.repeat(240)}`;
      await sourceWithSnapshots(tb, 'alpha', 'tank/longsrc', ['s1']);
      assertExit(await pull(tb, 'beta', 'alpha', 'tank/longsrc', long, 'beta'), 0);
      assert.ok((await tb.snapshots('beta', long)).has('s1'));
    },
  );

  test(
    'a tag that begins with "-" or holds a newline is refused before anything moves',
    { timeout: 60_000 },
    async () => {
      await sourceWithSnapshots(tb, 'alpha', 'tank/tg/src', ['s1']);
      const before = await pools();
      for (const tag of ['--tag=-r', '--tag=a\nb']) {
        const run = await tb.cli('beta', ['-h', 'alpha', '-r', 'tank/tg/src', '-l', 'tank/tg/dst', tag, '-k', '30']);
        assertExit(run, 2, tag);
      }
      assert.deepEqual(await pools(), before);
    },
  );

  test(
    'a remote that is the local dataset itself is refused by guid, whatever the host is called',
    { timeout: 120_000 },
    async () => {
      await pulledReplica(tb, 'tank/self/src', 'tank/self/dst', ['s1', 's2']);
      const address = (await tb.sh('beta', "getent hosts beta | awk '{print $1}'")).trim();
      const before = await pools();
      for (const host of ['localhost', 'beta', address]) {
        const run = await pull(tb, 'beta', host, 'tank/self/dst', 'tank/self/dst', 'other', ['--keep', '1s']);
        assertExit(run, 2, host);
        assert.match(run.stderr, /are the same dataset/);
      }
      assert.deepEqual(await pools(), before, 'nothing expired, nothing held');
    },
  );

  test(
    'a -R tree into a place inside itself is refused (exit 2) on its first run too, dry or not, by guid',
    { timeout: 120_000 },
    async () => {
      await tb.zfs('beta', 'create', '-p', 'tank/loop/x');
      await tb.zfs('beta', 'snapshot', '-r', 'tank/loop@1');
      const before = await pools();
      for (const [host, local] of [
        ['beta', 'tank/loop/x/copy'],
        ['localhost', 'tank/loop/x/deeper/copy'],
      ] as const) {
        for (const extra of [['-R'], ['-R', '--dry-run']]) {
          const run = await pull(tb, 'beta', host, 'tank/loop', local, 'loop', extra);
          assertExit(run, 2, `${host} ${extra.join(' ')}`);
          assert.match(
            run.stderr,
            /contains tank\/loop\/x itself \(as tank\/loop\/x\): a tree cannot be replicated into itself/,
          );
        }
      }
      assert.deepEqual(await pools(), before, 'nothing created, nothing held');
    },
  );

  test(
    'one tag per replica: a second replica of the same source under the same tag is refused',
    { timeout: 120_000 },
    async () => {
      await pulledReplica(tb, 'tank/tag/src', 'tank/tag/first', ['s1']);
      await tb.writeAndSnapshot('alpha', 'tank/tag/src', 's2');
      const run = await pull(tb, 'beta', 'alpha', 'tank/tag/src', 'tank/tag/second', 'beta');
      assertExit(run, 2);
      assert.match(
        run.stderr,
        /tank\/tag\/first already replicates alpha:tank\/tag\/src with tag "beta".* \(EUSAGE\)$/m,
      );
      assert.equal(await tb.hasHold('alpha', 'tank/tag/src@s1', 'beta'), true, "the first replica's hold stays");
      assertExit(await pull(tb, 'beta', 'alpha', 'tank/tag/src', 'tank/tag/second', 'beta2'), 0);
    },
  );

  test(
    'a replica renamed while its old crontab line still runs: that line is refused, the renamed one goes on',
    { timeout: 120_000 },
    async () => {
      await pulledReplica(tb, 'tank/moved/src', 'tank/moved/old', ['s1']);
      await tb.zfs('beta', 'create', '-o', 'canmount=off', 'tank/moved/old/child');
      await tb.zfs('beta', 'rename', 'tank/moved/old', 'tank/moved/new');
      await tb.writeAndSnapshot('alpha', 'tank/moved/src', 's2');
      const old = await pull(tb, 'beta', 'alpha', 'tank/moved/src', 'tank/moved/old', 'beta');
      assertExit(old, 2);
      assert.match(
        old.stderr,
        /tank\/moved\/new \(renamed from tank\/moved\/old\) already replicates .*-l tank\/moved\/new/,
      );
      assert.equal((await tb.listing('beta', 'tank/moved/old')).exists, false, 'no second replica');
      assert.equal(
        await tb.hasHold('alpha', 'tank/moved/src@s1', 'beta'),
        true,
        "the renamed replica's base stays held",
      );
      assertExit(await pull(tb, 'beta', 'alpha', 'tank/moved/src', 'tank/moved/new', 'beta'), 0);
      assertExit(await pull(tb, 'beta', 'alpha', 'tank/moved/src', 'tank/moved/old', 'beta'), 2);
    },
  );

  test(
    'when the source loses our base, the newest common snapshot is held; --rollback then works',
    { timeout: 120_000 },
    async () => {
      await pulledReplica(tb, 'tank/lost/src', 'tank/lost/dst', ['s1', 's2', 's3']);
      await tb.zfs('alpha', 'release', 'beta', 'tank/lost/src@s3');
      await tb.zfs('alpha', 'destroy', 'tank/lost/src@s3');
      await tb.writeAndSnapshot('alpha', 'tank/lost/src', 's4');
      const conflict = await pull(tb, 'beta', 'alpha', 'tank/lost/src', 'tank/lost/dst', 'beta');
      assertExit(conflict, 4);
      assert.equal(await tb.hasHold('alpha', 'tank/lost/src@s2', 'beta'), true, 'source holds the common @s2');
      assert.equal(await tb.hasHold('beta', 'tank/lost/dst@s2', 'beta'), true, 'replica holds the common @s2');
      const rollback = await pull(tb, 'beta', 'alpha', 'tank/lost/src', 'tank/lost/dst', 'beta', ['--rollback']);
      assertExit(rollback, 0, 'our own tag on the local-only @s3 does not block --rollback');
      assert.deepEqual([...(await tb.snapshots('beta', 'tank/lost/dst')).keys()], ['s1', 's2', 's4']);
      assert.equal(await tb.hasHold('alpha', 'tank/lost/src@s4', 'beta'), true);
    },
  );

  test(
    'an initial sync whose incremental rest is cut leaves the first snapshot held on both sides',
    { timeout: 180_000 },
    async () => {
      await sourceWithSnapshots(tb, 'alpha', 'tank/init/src', ['s1']);
      await tb.writeAndSnapshot('alpha', 'tank/init/src', 's2', 8);
      await tb.rate('alpha', '8mbit');
      try {
        const run = startPull('tank/init/src', 'tank/init/dst', [
          '-k',
          '30',
          '-v',
          '--ssh-option',
          'ServerAliveInterval=1',
        ]);
        await run.waitForLine(/receiving @s1\.\.@s2/);
        await sleep(500);
        await tb.link('alpha', 'down');
        const outcome = await run.done;
        assertExit(outcome, 1);
        assert.match(outcome.stderr, /ssh connection to alpha lost/);
      } finally {
        await tb.link('alpha', 'up');
        await tb.rate('alpha', 'off');
      }
      assert.equal(await tb.hasHold('alpha', 'tank/init/src@s1', 'beta'), true);
      assert.equal(await tb.hasHold('beta', 'tank/init/dst@s1', 'beta'), true);
      assertExit(await pull(tb, 'beta', 'alpha', 'tank/init/src', 'tank/init/dst', 'beta'), 0);
    },
  );

  test(
    "the source's pruning while a stream flows cannot take the snapshot it goes to; the pair goes on",
    { timeout: 180_000 },
    async () => {
      await pulledReplica(tb, 'tank/prune/src', 'tank/prune/dst', ['p1']);
      await tb.writeAndSnapshot('alpha', 'tank/prune/src', 'p2', 8);
      await tb.writeAndSnapshot('alpha', 'tank/prune/src', 'p3', 0);
      await tb.rate('alpha', '8mbit');
      let pruned: Awaited<ReturnType<Testbed['on']>> | undefined;
      let outcome: Awaited<RunningCli['done']>;
      try {
        const run = startPull('tank/prune/src', 'tank/prune/dst', ['-k', '30', '-v']);
        await run.waitForLine(/receiving @p1\.\.@p3/);
        let ended = false;
        void run.done.then(() => {
          ended = true;
        });
        // zfs-auto-snapshot's "frequent" pruning, or in a chain the upstream hop's expiry, tried again and again:
        // zfs send holds its snapshots only while it reads them, and the stream is in buffers long after.
        while (!ended && pruned?.exitCode !== 0) {
          pruned = await tb.on('alpha', ['zfs', 'destroy', 'tank/prune/src@p3']);
          await sleep(200);
        }
        outcome = await run.done;
      } finally {
        await tb.rate('alpha', 'off');
      }
      assert.notEqual(pruned?.exitCode, 0, 'the snapshot on its way is held at the source');
      assertExit(outcome, 0);
      assert.equal(await tb.hasHold('alpha', 'tank/prune/src@p3', 'beta'), true);
      assert.equal(await tb.hasHold('beta', 'tank/prune/dst@p3', 'beta'), true);
      await tb.writeAndSnapshot('alpha', 'tank/prune/src', 'p4', 0);
      assertExit(await pull(tb, 'beta', 'alpha', 'tank/prune/src', 'tank/prune/dst', 'beta'), 0);
      assert.ok((await tb.snapshots('beta', 'tank/prune/dst')).has('p4'));
    },
  );

  test(
    'after a cut stream, expiry keeps the newest snapshot that arrived and moves the hold to it',
    { timeout: 180_000 },
    async () => {
      await pulledReplica(tb, 'tank/part/src', 'tank/part/dst', ['s1']);
      await tb.writeAndSnapshot('alpha', 'tank/part/src', 's2');
      await tb.writeAndSnapshot('alpha', 'tank/part/src', 's3', 12);
      await sleep(4000); // every snapshot is now older than --keep 3s
      await tb.rate('alpha', '8mbit');
      try {
        const run = startPull('tank/part/src', 'tank/part/dst', [
          '--keep',
          '3s',
          '--ssh-option',
          'ServerAliveInterval=1',
        ]);
        for (let tries = 0; tries < 200 && !(await tb.snapshots('beta', 'tank/part/dst')).has('s2'); tries++)
          await sleep(100);
        await tb.link('alpha', 'down');
        assertExit(await run.done, 1);
      } finally {
        await tb.link('alpha', 'up');
        await tb.rate('alpha', 'off');
      }
      const replica = await tb.snapshots('beta', 'tank/part/dst');
      assert.ok(replica.has('s2'), `the newest common snapshot was expired: ${[...replica.keys()]}`);
      assert.ok(replica.has('s1'), 'the old base, still held at the unreachable source, stays too');
      // With the link back, the next run moves the hold on from there.
      assertExit(await startPull('tank/part/src', 'tank/part/dst', ['--keep', '3s']).done, 0);
      assert.equal(await tb.hasHold('beta', 'tank/part/dst@s3', 'beta'), true);
    },
  );

  test(
    'the command line wins over the environment for every pair: ZFS_REPLICATE_KEEP=1s with -k 30 keeps',
    { timeout: 120_000 },
    async () => {
      await pulledReplica(tb, 'tank/env/src', 'tank/env/dst', ['s1', 's2']);
      await sleep(1500);
      const env = (variables: string[], args: string[]) =>
        tb.on('beta', ['env', ...variables, 'node', CLI, ...args], {
          env: { PATH: '/usr/bin:/bin', HOME: '/root', ZFS_REPLICATE_STATE_DIR: Testbed.stateDir('beta') },
        });
      const args = ['-h', 'alpha', '-r', 'tank/env/src', '-l', 'tank/env/dst', '-t', 'beta', '-k', '30'];
      assertExit(await env(['ZFS_REPLICATE_KEEP=1s'], args), 0);
      assert.deepEqual([...(await tb.snapshots('beta', 'tank/env/dst')).keys()], ['s1', 's2']);
      assertExit(await env(['ZFS_REPLICATE_HELP=true'], args), 2, 'help from the environment');
      assertExit(await env(['ZFS_REPLICATE_VERBOSE=abc'], args), 2, 'VERBOSE is checked');
    },
  );

  test('output to a closed pipe ends the run quietly, with its cleanup', { timeout: 120_000 }, async () => {
    await pulledReplica(tb, 'tank/pipe/src', 'tank/pipe/dst', ['s1']);
    await tb.writeAndSnapshot('alpha', 'tank/pipe/src', 's2');
    // A TMPDIR of its own: the count of control directories must not see other runs' on this machine.
    const out = await tb.sh(
      'beta',
      `export TMPDIR=$(mktemp -d); node ${CLI} -h alpha -r tank/pipe/src -l tank/pipe/dst -t beta -k 30 --dry-run 2>/tmp/zr-pipe.err | head -1 >/dev/null; echo "rc=\${PIPESTATUS[0]}"; cat /tmp/zr-pipe.err; find "$TMPDIR" -maxdepth 1 -name 'zfs_replicate-ssh-*' | wc -l`,
    );
    assert.match(out.trim(), /^rc=0\n0$/, out); // exit 0, nothing on stderr, no control directory left
  });

  test(
    'a SIGKILLed run leaves no ssh control directory for ever: the next run removes it',
    { timeout: 120_000 },
    async () => {
      await pulledReplica(tb, 'tank/kill/src', 'tank/kill/dst', ['s1']);
      await tb.writeAndSnapshot('alpha', 'tank/kill/src', 's2', 8);
      // A TMPDIR of its own: only this test's control directories are counted.
      const tmp = (await tb.sh('beta', 'mktemp -d')).trim();
      const inTmp = { wrapper: ['env', `TMPDIR=${tmp}`] };
      const controlDirectories = async () =>
        (await tb.sh('beta', `find ${tmp} -maxdepth 1 -name 'zfs_replicate-ssh-*' | wc -l`)).trim();
      await tb.rate('alpha', '8mbit');
      try {
        const run = startCli(
          'beta',
          ['-h', 'alpha', '-r', 'tank/kill/src', '-l', 'tank/kill/dst', '-t', 'beta', '-k', '30', '-v'],
          inTmp,
        );
        await run.waitForLine(/receiving/);
        // The bracket keeps pkill from matching the shell that runs it.
        await tb.sh('beta', 'pkill -KILL -f "[d]ist/zfs_replicate.mjs -h alpha -r tank/kill/src" || true');
        await run.done;
      } finally {
        await tb.rate('alpha', 'off');
      }
      assert.notEqual(await controlDirectories(), '0');
      await sleep(2000); // the killed run's orphaned stream processes end with the link back at full rate
      const next = startCli(
        'beta',
        ['-h', 'alpha', '-r', 'tank/kill/src', '-l', 'tank/kill/dst', '-t', 'beta', '-k', '30'],
        inTmp,
      );
      assertExit(await next.done, 0);
      assert.equal(await controlDirectories(), '0');
    },
  );

  test(
    'a receive that fails is named, not the mbuffer before it that saw the broken pipe',
    { timeout: 180_000 },
    async () => {
      await pulledReplica(tb, 'tank/stage/src', 'tank/stage/dst', ['s1']);
      await tb.writeAndSnapshot('alpha', 'tank/stage/src', 'big', 8);
      await tb.zfs('beta', 'set', 'quota=2M', 'tank/stage/dst');
      try {
        // The race was about 1 run in 10: ten runs, every one must name recv and its own error.
        for (let round = 1; round <= 10; round++) {
          const run = await pull(tb, 'beta', 'alpha', 'tank/stage/src', 'tank/stage/dst', 'beta');
          assertExit(run, 1, `round ${round}`);
          assert.match(run.stderr, /transfer failed: recv on local .*(quota|space)/i, `round ${round}`);
        }
      } finally {
        await tb.zfs('beta', 'set', 'quota=none', 'tank/stage/dst');
      }
    },
  );

  test('the received size is the whole stream, not its first snapshot', { timeout: 120_000 }, async () => {
    await pulledReplica(tb, 'tank/size/src', 'tank/size/dst', ['s1']);
    for (const name of ['s2', 's3', 's4']) await tb.writeAndSnapshot('alpha', 'tank/size/src', name, 2);
    const run = await pull(tb, 'beta', 'alpha', 'tank/size/src', 'tank/size/dst', 'beta', ['-v']);
    assertExit(run, 0);
    const size = /received @s1\.\.@s4 \(([\d.]+) MB\)/.exec(run.stderr);
    assert.ok(size && Number(size[1]) >= 6, run.stderr);
  });
});

describe('safety: trees never destroy what another job protects', () => {
  let tb: Testbed;
  before(async () => {
    tb = await Testbed.up(['alpha', 'beta']);
  });
  after(async () => {
    await tb?.down();
  });
  const treeArgs = (root: string, replica: string, extra: string[] = []) => [
    '-R',
    '-h',
    'alpha',
    '-r',
    root,
    '-l',
    replica,
    '-t',
    'beta',
    '--keep',
    '2s',
    ...extra,
  ];

  test(
    'a tree run and a job on one member, racing for rounds: no failed receive, the base always held',
    { timeout: 300_000 },
    async () => {
      await tb.zfs('alpha', 'create', '-p', 'tank/race/src/m');
      await tb.zfs('alpha', 'snapshot', '-r', 'tank/race/src@r0');
      assertExit(await tb.cli('beta', treeArgs('tank/race/src', 'tank/race/dst')), 0);
      for (let round = 1; round <= 5; round++) {
        await tb.writeAndSnapshot('alpha', 'tank/race/src/m', `m${round}`, 0);
        await tb.zfs('alpha', 'snapshot', '-r', `tank/race/src@r${round}`);
        const [tree, member] = await Promise.all([
          tb.cli('beta', treeArgs('tank/race/src', 'tank/race/dst')),
          tb.cli('beta', [
            '-h',
            'alpha',
            '-r',
            'tank/race/src/m',
            '-l',
            'tank/race/dst/m',
            '-t',
            'beta',
            '--keep',
            '2s',
          ]),
        ]);
        assert.ok([0, 3].includes(tree.exitCode), `round ${round}: tree exit ${tree.exitCode}: ${tree.stderr}`);
        assert.ok([0, 3].includes(member.exitCode), `round ${round}: member exit ${member.exitCode}: ${member.stderr}`);
        const replica = await tb.snapshots('beta', 'tank/race/dst/m');
        const newest = [...replica.keys()].at(-1);
        assert.ok(newest !== undefined, `round ${round}: the replica has no snapshot left`);
        assert.equal(
          await tb.hasHold('beta', `tank/race/dst/m@${newest}`, 'beta'),
          true,
          `round ${round}: replica base held`,
        );
        assert.equal(
          await tb.hasHold('alpha', `tank/race/src/m@${newest}`, 'beta'),
          true,
          `round ${round}: source base held`,
        );
        await sleep(2100);
      }
    },
  );

  test(
    'a member without snapshots holds back its children, with one warning; dry-run says the same',
    { timeout: 180_000 },
    async () => {
      await tb.zfs('alpha', 'create', '-p', 'tank/wait/src');
      await tb.zfs('alpha', 'snapshot', 'tank/wait/src@r1');
      await tb.zfs('alpha', 'create', 'tank/wait/src/new');
      await tb.zfs('alpha', 'create', 'tank/wait/src/new/child');
      await tb.zfs('alpha', 'snapshot', 'tank/wait/src/new/child@c1');
      const dry = await tb.cli('beta', treeArgs('tank/wait/src', 'tank/wait/dst', ['--dry-run']));
      assertExit(dry, 0);
      assert.doesNotMatch(dry.stdout, /new\/child/);
      const run = await tb.cli('beta', treeArgs('tank/wait/src', 'tank/wait/dst'));
      assertExit(run, 0);
      assert.match(
        run.stderr,
        /tank\/wait\/dst\/new: not replicated yet: its source has no snapshot .* wait for it: tank\/wait\/dst\/new\/child/,
      );
      assert.equal((await tb.on('beta', ['zfs', 'list', 'tank/wait/dst/new'])).exitCode, 1, 'not made by zfs create');
      await tb.zfs('alpha', 'snapshot', '-r', 'tank/wait/src@r2');
      assertExit(await tb.cli('beta', treeArgs('tank/wait/src', 'tank/wait/dst')), 0);
      assert.ok((await tb.snapshots('beta', 'tank/wait/dst/new/child')).has('r2'));
      assert.ok((await tb.snapshots('beta', 'tank/wait/dst/new')).has('r2'), 'the member became a real replica');
    },
  );

  test(
    'a member destroyed at the source while an earlier member transfers is an info line, and the run exits 0',
    { timeout: 180_000 },
    async () => {
      await tb.zfs('alpha', 'create', '-p', 'tank/gone/src/a');
      await tb.zfs('alpha', 'create', 'tank/gone/src/b');
      await tb.zfs('alpha', 'snapshot', '-r', 'tank/gone/src@r1');
      assertExit(await tb.cli('beta', treeArgs('tank/gone/src', 'tank/gone/dst')), 0);
      await tb.writeAndSnapshot('alpha', 'tank/gone/src/a', 'big', 8);
      await tb.zfs('alpha', 'snapshot', '-r', 'tank/gone/src@r2');
      await tb.rate('alpha', '8mbit');
      try {
        // -j 1: b is planned only after a's transfer (with -j 4 it would transfer beside a, before the destroy).
        const run = startCli('beta', treeArgs('tank/gone/src', 'tank/gone/dst', ['-v', '-j', '1']));
        await run.waitForLine(/receiving .* into tank\/gone\/dst\/a /);
        await tb.zfs('alpha', 'release', 'beta', 'tank/gone/src/b@r1');
        await tb.destroyTree('alpha', 'tank/gone/src/b');
        const outcome = await run.done;
        assertExit(outcome, 0);
        assert.match(
          outcome.stderr,
          /tank\/gone\/dst\/b: alpha:tank\/gone\/src\/b is gone \(destroyed or renamed during this run\)/,
        );
      } finally {
        await tb.rate('alpha', 'off');
      }
      assert.ok((await tb.snapshots('beta', 'tank/gone/dst/b')).has('r1'), 'its replica is left as it is');
    },
  );

  test(
    'one member whose lock cannot be taken is its own failure only; an --exclude matching nothing warns',
    { timeout: 120_000 },
    async () => {
      await tb.zfs('alpha', 'create', '-p', 'tank/lk/src/a');
      await tb.zfs('alpha', 'create', 'tank/lk/src/b');
      await tb.zfs('alpha', 'snapshot', '-r', 'tank/lk/src@r1');
      await tb.sh('beta', 'mkdir -p /run/lock/zfs_replicate/tank%2Flk%2Fdst%2Fa.lock');
      try {
        const run = await tb.cli('beta', treeArgs('tank/lk/src', 'tank/lk/dst', ['--exclude', 'tank/lk/src/typo']));
        assertExit(run, 1);
        assert.match(run.stderr, /1 of 3 datasets not replicated: tank\/lk\/dst\/a \(ELOCK\)/);
        assert.match(run.stderr, /--exclude tank\/lk\/src\/typo matches no dataset/);
        assert.ok((await tb.snapshots('beta', 'tank/lk/dst/b')).has('r1'));
      } finally {
        await tb.sh('beta', 'rmdir /run/lock/zfs_replicate/tank%2Flk%2Fdst%2Fa.lock');
      }
    },
  );
});
