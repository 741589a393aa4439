import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, beforeEach, describe, test } from 'node:test';
import { shellJoin } from '../../src/exec/quote.js';
import { assertExit, sleep } from '../integration/helpers.js';
import type { CommandOutcome } from '../testbed/testbed.js';
import { Guest, HOST_FROM_GUEST, PROJECT_ROOT } from './guest.js';

/** `zfs send -nvP` size of a send, as the guest's OpenZFS estimates it. */
async function estimate(guest: Guest, sendArguments: string): Promise<number> {
  const output = await guest.sh(`zfs send -nvP ${sendArguments} 2>&1`);
  return Number(/^size\s+(\d+)$/m.exec(output)![1]);
}

/** Parses the size `zfs recv -v` reported ("4.05M", "812K") into bytes. */
/** "31.1 MB" (the log's decimal units) or "31.1M" (zfs's binary ones) to bytes. */
function bytes(text: string): number {
  const match = /^([\d.]+) ?([KMGT]?)(B?)/.exec(text)!;
  const base = match[3] === 'B' ? 1000 : 1024;
  return Number(match[1]) * base ** ' KMGT'.indexOf(match[2] || ' ');
}

const pull = (guest: Guest, source: Guest, remote: string, local: string, tag: string, extra: string[] = []) =>
  guest.cli([...Guest.from(source), '-r', remote, '-l', local, '-t', tag, '-k', '30', ...extra]);

for (const version of ['2.3', '2.1'] as const) {
  describe(`real OpenZFS ${version} in a QEMU guest (the CLI pulls over ssh from the same guest)`, () => {
    let guest: Guest;
    // Booted by the first test that runs, so that a --test-name-pattern run boots only the guests it needs.
    beforeEach(async () => {
      guest ??= await Guest.up(version);
    });
    after(async () => {
      await guest?.down();
    });

    test(`${version}: zfs list -p, zfs holds, send -L -e -c, recv -s -o, size estimates, a bookmark of the base`, async () => {
      await guest.sh(
        'zfs create src/t1 && head -c 4000000 /dev/urandom > /src/t1/a && zfs snapshot src/t1@a && head -c 2000000 /dev/urandom > /src/t1/b && zfs snapshot src/t1@b',
      );
      const dry = await pull(guest, guest, 'src/t1', 'backup/r/t1', 'tag1', ['--dry-run']);
      assertExit(dry, 0);
      const estimated = /estimated stream size: ([\d.]+) MB \(zfs send -L -e -c\)/.exec(dry.stdout);
      assert.ok(estimated && Number(estimated[1]) > 5.5 && Number(estimated[1]) < 7, dry.stdout);

      const run = await pull(guest, guest, 'src/t1', 'backup/r/t1', 'tag1', ['-vv']);
      assertExit(run, 0);
      assert.match(
        run.stderr,
        /local\$ zfs list -Hp -o name,type,guid,createtxg,creation,userrefs,receive_resume_token,encryption -t filesystem,volume,snapshot,bookmark/,
      );
      assert.match(
        run.stderr,
        /pipeline: .*zfs send -L -e -c src\/t1@a.*zfs recv -u -v -s -o readonly=on -o com.sun:auto-snapshot=false -o canmount=noauto backup\/r\/t1/,
      );
      assert.match(run.stderr, /received full @a \([\d.]+ [KM]B\)/);
      const properties = await guest.sh(
        'zfs get -H -o property,value,source readonly,canmount,com.sun:auto-snapshot backup/r/t1',
      );
      assert.match(properties, /readonly\ton\tlocal/);
      assert.match(properties, /canmount\tnoauto\tlocal/);
      assert.match(properties, /com.sun:auto-snapshot\tfalse\tlocal/);
      assert.deepEqual(await guest.guids('backup/r/t1'), await guest.guids('src/t1'));
      assert.deepEqual([...(await guest.holds('src/t1')).entries()], [['b', ['tag1']]]);
      assert.deepEqual([...(await guest.holds('backup/r/t1')).entries()], [['b', ['tag1']]]);
      const bookmarks = () =>
        guest.sh('zfs list -Hp -t bookmark -o name,guid -d 1 src/t1 | grep zfs_replicate-tag1- || true');
      assert.match(
        await bookmarks(),
        new RegExp(`^src/t1#zfs_replicate-tag1-\\w+-\\d+\\t${(await guest.guids('src/t1')).get('b')}$`),
      );

      await guest.sh('head -c 1000000 /dev/urandom > /src/t1/c && zfs snapshot src/t1@c');
      const again = await pull(guest, guest, 'src/t1', 'backup/r/t1', 'tag1', ['-vv']);
      assertExit(again, 0);
      assert.match(again.stderr, /zfs holds -H src\/t1@b/, 'holds are read with zfs holds where it exists');
      assert.deepEqual([...(await guest.holds('src/t1')).entries()], [['c', ['tag1']]]);
      const lines = (await bookmarks()).trim().split('\n');
      assert.equal(lines.length, 1, 'the old bookmark is replaced');
      assert.ok(lines[0]!.endsWith(`\t${(await guest.guids('src/t1')).get('c')}`));
    });

    test(`${version}: a receive cut part-way resumes with zfs send -t and sends only the rest`, async (context) => {
      await guest.sh('zfs create src/t2 && echo a > /src/t2/a && zfs snapshot src/t2@a');
      assertExit(await pull(guest, guest, 'src/t2', 'backup/t2', 'tag2'), 0);
      await guest.sh('head -c 48000000 /dev/urandom > /src/t2/big && zfs snapshot src/t2@b');
      const full = await estimate(guest, '-L -e -c -I src/t2@a src/t2@b');
      // A slow link, so the transfer is under way when the run is stopped.
      await guest.sh('tc qdisc replace dev eth0 root tbf rate 24mbit burst 32kb latency 400ms');
      let cut: CommandOutcome;
      try {
        const running = pull(guest, guest, 'src/t2', 'backup/t2', 'tag2');
        await guest.sh(
          'for i in $(seq 600); do pgrep -f "zfs rec[v] .*backup/t2" >/dev/null && break; sleep 0.1; done; sleep 6; pkill -TERM -f "zfs_replicate.mj[s] .*backup/t2"',
        );
        cut = await running;
      } finally {
        await guest.sh('tc qdisc del dev eth0 root || true');
      }
      assertExit(cut, 5, 'stopped mid-transfer');
      const token = (await guest.sh('zfs get -H -o value receive_resume_token backup/t2')).trim();
      assert.notEqual(token, '-', 'a resumable receive leaves a token');
      const remaining = await estimate(guest, `-t ${token}`);
      assert.ok(remaining > 0 && remaining < full * 0.9, `remaining ${remaining} of ${full}`);

      const resumed = await pull(guest, guest, 'src/t2', 'backup/t2', 'tag2', ['-v']);
      assertExit(resumed, 0);
      const received = /received the rest of an interrupted receive \(([\d.]+ [KMGT]?B)\)/.exec(resumed.stderr);
      assert.ok(received, resumed.stderr);
      assert.ok(bytes(received[1]!) < full * 0.9, `resume sent ${received[1]} of ${full} bytes`);
      context.diagnostic(
        `stream ${full} bytes; cut with ${remaining} bytes left (zfs send -nvP -t); the resume received ${received[1]}`,
      );
      assert.equal((await guest.sh('zfs get -H -o value receive_resume_token backup/t2')).trim(), '-');
      assert.equal((await guest.guids('backup/t2')).get('b'), (await guest.guids('src/t2')).get('b'));
      await guest.sh('zfs mount backup/t2 && cmp /src/t2/big /backup/t2/big && zfs unmount backup/t2');
    });

    test(`${version}: a token that can no longer be resumed is aborted (zfs recv -A) and the run goes on`, async () => {
      await guest.sh('zfs create src/t3 && echo a > /src/t3/a && zfs snapshot src/t3@a');
      assertExit(await pull(guest, guest, 'src/t3', 'backup/t3', 'tag3'), 0);
      await guest.sh('head -c 48000000 /dev/urandom > /src/t3/big && zfs snapshot src/t3@b');
      await guest.sh('tc qdisc replace dev eth0 root tbf rate 24mbit burst 32kb latency 400ms');
      try {
        const running = pull(guest, guest, 'src/t3', 'backup/t3', 'tag3');
        await guest.sh(
          'for i in $(seq 600); do pgrep -f "zfs rec[v] .*backup/t3" >/dev/null && break; sleep 0.1; done; sleep 5; pkill -TERM -f "zfs_replicate.mj[s] .*backup/t3"',
        );
        assertExit(await running, 5);
      } finally {
        await guest.sh('tc qdisc del dev eth0 root || true');
      }
      assert.notEqual((await guest.sh('zfs get -H -o value receive_resume_token backup/t3')).trim(), '-');
      // The snapshot the interrupted stream was bringing stays held for the resume: pruning cannot take it.
      // 2.3 says "it's being held", 2.1 "dataset is busy".
      assert.match((await guest.run('zfs destroy src/t3@b')).stderr, /being held|dataset is busy/);
      // An admin who releases it and destroys it all the same leaves a token that is dead.
      await guest.sh(
        'zfs release tag3 src/t3@b && zfs destroy src/t3@b && echo c > /src/t3/c && zfs snapshot src/t3@c',
      );
      const run = await pull(guest, guest, 'src/t3', 'backup/t3', 'tag3');
      assertExit(run, 0);
      assert.match(
        run.stderr,
        /warning: the interrupted receive into backup\/t3 cannot be resumed .*aborted it \(zfs recv -A\)/,
      );
      assert.deepEqual([...(await guest.guids('backup/t3')).keys()], ['a', 'c']);
      assert.equal((await guest.sh('zfs get -H -o value receive_resume_token backup/t3')).trim(), '-');
    });

    test(`${version}: the base destroyed on the remote: the next run sends from its bookmark, not in full`, async () => {
      await guest.sh(
        'zfs create src/t4 && echo a > /src/t4/a && zfs snapshot src/t4@a && echo b > /src/t4/b && zfs snapshot src/t4@b',
      );
      assertExit(await pull(guest, guest, 'src/t4', 'backup/t4', 'tag4'), 0);
      // An admin releases our hold and destroys the base anyway. Until the source snapshots again the bookmark is
      // the base: up to date, and --rollback must not take the replica's @b, the only copy left.
      await guest.sh('zfs release tag4 src/t4@b && zfs destroy src/t4@b');
      const meanwhile = await pull(guest, guest, 'src/t4', 'backup/t4', 'tag4', ['--rollback', '-v']);
      assertExit(meanwhile, 0, 'up to date on the bookmark');
      assert.match(meanwhile.stderr, /keeps the common snapshot @b only as the bookmark/);
      assert.deepEqual([...(await guest.guids('backup/t4')).keys()], ['a', 'b']);
      assert.deepEqual([...(await guest.holds('backup/t4')).entries()], [['b', ['tag4']]]);
      await guest.sh('echo c > /src/t4/c && zfs snapshot src/t4@c && echo d > /src/t4/d && zfs snapshot src/t4@d');
      const dry = await pull(guest, guest, 'src/t4', 'backup/t4', 'tag4', ['--dry-run']);
      assert.match(dry.stdout, /incrementally from the bookmark \(the common snapshot @b is gone on 10.0.2.2\)/);
      const run = await pull(guest, guest, 'src/t4', 'backup/t4', 'tag4', ['-vv']);
      assertExit(run, 0);
      assert.match(run.stderr, /pipeline: .*zfs send -L -e -c -i 'src\/t4#zfs_replicate-tag4-\w+-\d+' src\/t4@c/);
      assert.doesNotMatch(run.stderr, /receiving full/);
      const source = await guest.guids('src/t4');
      const replica = await guest.guids('backup/t4');
      assert.equal(replica.get('c'), source.get('c'));
      assert.equal(replica.get('d'), source.get('d'));
      assert.deepEqual([...(await guest.holds('src/t4')).entries()], [['d', ['tag4']]]);
    });

    test(`${version}: expiry destroys in one batch (fs@a,b,c); a held snapshot makes it fall back to one by one`, async () => {
      await guest.sh(
        'zfs create src/t5 && for s in e1 e2 e3 e4; do echo $s > /src/t5/$s; zfs snapshot src/t5@$s; done',
      );
      assertExit(await pull(guest, guest, 'src/t5', 'backup/t5', 'tag5'), 0);
      await sleep(3000);
      await guest.sh('echo e5 > /src/t5/e5 && zfs snapshot src/t5@e5');
      const batch = await pull(guest, guest, 'src/t5', 'backup/t5', 'tag5', ['--keep', '2s', '-vv']);
      assertExit(batch, 0);
      assert.match(batch.stderr, /local\$ zfs destroy backup\/t5@e1,e2,e3,e4\n/);
      assert.deepEqual([...(await guest.guids('backup/t5')).keys()], ['e5']);

      await guest.sh('for s in f1 f2 f3; do echo $s > /src/t5/$s; zfs snapshot src/t5@$s; done');
      assertExit(await pull(guest, guest, 'src/t5', 'backup/t5', 'tag5'), 0);
      await guest.sh('zfs hold other backup/t5@f2');
      await sleep(3000);
      await guest.sh('echo f4 > /src/t5/f4 && zfs snapshot src/t5@f4');
      const fallback = await pull(guest, guest, 'src/t5', 'backup/t5', 'tag5', ['--keep', '2s', '-vv']);
      assertExit(fallback, 0);
      assert.match(fallback.stderr, /local\$ zfs destroy backup\/t5@e5,f1,f2,f3\n/);
      assert.match(fallback.stderr, /kept backup\/t5@f2 past keep: another hold protects it/);
      assert.deepEqual([...(await guest.guids('backup/t5')).keys()], ['f2', 'f4']);
    });

    test(`${version}: an encrypted source is sent raw (-w): the backup holds it encrypted, without the key`, async () => {
      await guest.sh(`head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > /root/t6.key
        zfs create -o encryption=aes-256-gcm -o keyformat=hex -o keylocation=file:///root/t6.key src/enc
        head -c 2000000 /dev/urandom > /src/enc/secret && zfs snapshot src/enc@a`);
      const run = await pull(guest, guest, 'src/enc', 'backup/enc', 'tag6', ['-vv']);
      assertExit(run, 0);
      assert.match(run.stderr, /pipeline: .*zfs send -w src\/enc@a/);
      await guest.sh('echo more >> /src/enc/secret && zfs snapshot src/enc@b');
      assertExit(await pull(guest, guest, 'src/enc', 'backup/enc', 'tag6'), 0);
      assert.match(
        await guest.sh('zfs get -H -o property,value encryption,keystatus backup/enc'),
        /encryption\taes-256-gcm\nkeystatus\tunavailable/,
      );
      await guest.sh(
        'zfs load-key -L file:///root/t6.key backup/enc && zfs mount backup/enc && cmp /src/enc/secret /backup/enc/secret && zfs unmount backup/enc',
      );
    });

    test(`${version}: a zvol replicates like a filesystem`, async () => {
      await guest.sh(
        'zfs create -V 16M src/vol && udevadm settle && head -c 8000000 /dev/urandom | dd of=/dev/zvol/src/vol bs=1M oflag=direct status=none && zfs snapshot src/vol@a && head -c 1000000 /dev/urandom | dd of=/dev/zvol/src/vol bs=1M seek=10 oflag=direct status=none && zfs snapshot src/vol@b',
      );
      assertExit(await pull(guest, guest, 'src/vol', 'backup/vol', 'tag7'), 0);
      assert.deepEqual(await guest.guids('backup/vol'), await guest.guids('src/vol'));
      assert.equal((await guest.sh('zfs get -H -o value type,readonly backup/vol')).trim(), 'volume\non');
      const digest = (device: string) => guest.sh(`udevadm settle; dd if=${device} bs=1M status=none | sha256sum`);
      assert.equal(await digest('/dev/zvol/backup/vol'), await digest('/dev/zvol/src/vol'));
    });

    test(`${version}: -R replicates a tree with a zvol child, each member from its own base`, async () => {
      await guest.sh(`zfs create src/tree && zfs create src/tree/fs && zfs create -V 16M src/tree/disk && udevadm settle
        head -c 3000000 /dev/urandom > /src/tree/fs/a && head -c 4000000 /dev/urandom | dd of=/dev/zvol/src/tree/disk bs=1M oflag=direct status=none
        zfs snapshot -r src/tree@a
        head -c 1000000 /dev/urandom | dd of=/dev/zvol/src/tree/disk bs=1M seek=8 oflag=direct status=none && zfs snapshot src/tree/disk@disk-only`);
      const run = await pull(guest, guest, 'src/tree', 'backup/r/tree', 'tag8', ['-R', '-vv']);
      assertExit(run, 0);
      assert.match(
        run.stderr,
        /local\$ zfs list -Hp .* -r -s createtxg backup\/r\/tree/,
        'one listing for the whole tree',
      );
      await guest.sh(
        'head -c 1000000 /dev/urandom | dd of=/dev/zvol/src/tree/disk bs=1M seek=12 oflag=direct status=none && echo b > /src/tree/fs/b && zfs snapshot -r src/tree@b',
      );
      assertExit(await pull(guest, guest, 'src/tree', 'backup/r/tree', 'tag8', ['-R']), 0);
      for (const member of ['', '/fs', '/disk']) {
        assert.deepEqual(await guest.guids(`backup/r/tree${member}`), await guest.guids(`src/tree${member}`), member);
        assert.deepEqual(
          [...(await guest.holds(`src/tree${member}`)).entries()],
          [['b', ['tag8']]],
          `src/tree${member}`,
        );
        assert.deepEqual(
          [...(await guest.holds(`backup/r/tree${member}`)).entries()],
          [['b', ['tag8']]],
          `backup/r/tree${member}`,
        );
      }
      assert.deepEqual([...(await guest.guids('backup/r/tree/disk')).keys()], ['a', 'disk-only', 'b']);
      assert.equal((await guest.sh('zfs get -H -o value type,readonly backup/r/tree/disk')).trim(), 'volume\non');
      const digest = (device: string) => guest.sh(`udevadm settle; dd if=${device} bs=1M status=none | sha256sum`);
      assert.equal(await digest('/dev/zvol/backup/r/tree/disk'), await digest('/dev/zvol/src/tree/disk'));
      assert.match(
        await guest.sh('zfs list -H -t bookmark -o name -d 1 src/tree/disk'),
        /^src\/tree\/disk#zfs_replicate-tag8-/m,
        'each member bookmarks its own base',
      );
    });

    test(`${version}: no root on either end (zfs allow, the forced command): a whole cycle; other destroys refused`, async () => {
      // The README's setup, by its example scripts: zrbak runs the CLI here, zrsrc is the source's login,
      // restricted to zfs_replicate-serve on src/u. Both reach this guest's sshd through the host.
      const keyscan = `ssh-keyscan -p ${guest.port} ${HOST_FROM_GUEST} >>~/.ssh/known_hosts`;
      await guest.sh(`cd ${shellJoin([PROJECT_ROOT])}
        zfs create src/u && zfs create src/u/app && zfs create src/other && zfs snapshot src/other@x && zfs create backup/keep
        for s in a b; do head -c 100000 /dev/urandom > /src/u/app/$s; zfs snapshot src/u/app@$s; done
        ZR_USER=zrbak sh examples/setup-backup.sh backup/zr >/dev/null
        ZR_USER=zrsrc ZR_TAG=bk ZR_SERVE=${shellJoin([join(PROJECT_ROOT, 'bin/zfs_replicate-serve')])} sh examples/setup-source.sh "$(cat /home/zrbak/.ssh/id_ed25519.pub)" ${HOST_FROM_GUEST} src/u >/dev/null
        su zrbak -s /bin/sh -c ${shellJoin([keyscan])} 2>/dev/null`);
      const unprivileged = (extra: string[] = []) =>
        guest.cli(
          [
            ...['--user', 'zrsrc', ...Guest.from(guest)],
            ...['-r', 'src/u/app', '-l', 'backup/zr/sub/app', '-t', 'bk', '-k', '30', ...extra],
          ],
          'zrbak',
        );
      const replicaSnapshots = async () => [...(await guest.guids('backup/zr/sub/app')).keys()];
      const assertSame = async (snapshot: string) =>
        assert.equal(
          (await guest.guids('backup/zr/sub/app')).get(snapshot),
          (await guest.guids('src/u/app')).get(snapshot),
          `@${snapshot}`,
        );

      const initial = await unprivileged(['-v']);
      assertExit(initial, 0, 'initial');
      assert.match(initial.stderr, /created parent dataset backup\/zr\/sub/, 'zfs create -p without mounting');
      assert.deepEqual(await guest.guids('backup/zr/sub/app'), await guest.guids('src/u/app'));
      assert.deepEqual([...(await guest.holds('src/u/app')).entries()], [['b', ['bk']]]);
      assert.deepEqual([...(await guest.holds('backup/zr/sub/app')).entries()], [['b', ['bk']]]);
      // No --lock-dir nor --state-dir: a non-root user's defaults are under its home.
      const status = await guest.cli(['status', '-l', 'backup/zr/sub/app'], 'zrbak');
      assertExit(status, 0, 'status');
      assert.match(status.stdout, /^backup\/zr\/sub\/app +\S+ +\S+ ago +ok /m);
      await guest.sh('test -d /home/zrbak/.local/state/zfs_replicate/locks');
      // zfs recv -o skips, without a word, a property the user may not set: each needs its permission.
      assert.equal(
        await guest.sh('zfs get -H -o value,source readonly,canmount,com.sun:auto-snapshot backup/zr/sub/app'),
        'on\tlocal\nnoauto\tlocal\nfalse\tlocal',
      );

      // The base is lost on the source: the incremental goes from its bookmark, through the wrapper.
      await guest.sh(
        'zfs release bk src/u/app@b && zfs destroy src/u/app@b && echo d > /src/u/app/d && zfs snapshot src/u/app@d',
      );
      const fromBookmark = await unprivileged(['-vv']);
      assertExit(fromBookmark, 0, 'incremental, from the bookmark');
      assert.match(fromBookmark.stderr, /zfs send -L -e -c -i 'src\/u\/app#zfs_replicate-bk-\w+-\d+' src\/u\/app@d/);
      await assertSame('d');
      assert.match(
        await guest.sh('zfs list -Hp -t bookmark -o name,guid -d 1 src/u/app'),
        new RegExp(`^src/u/app#zfs_replicate-bk-\\w+-\\d+\\t${(await guest.guids('src/u/app')).get('d')}$`),
        'the old bookmark is replaced by one of @d',
      );

      // A receive cut short (here by root, with head): the unprivileged run resumes it with zfs send -t.
      await guest.sh(`head -c 2000000 /dev/urandom > /src/u/app/e && zfs snapshot src/u/app@e
        zfs send -L -e -c -i src/u/app@d src/u/app@e | head -c 300000 | zfs recv -s -u backup/zr/sub/app || true`);
      assert.notEqual((await guest.sh('zfs get -H -o value receive_resume_token backup/zr/sub/app')).trim(), '-');
      const resumed = await unprivileged(['-vv']);
      assertExit(resumed, 0, 'resume');
      assert.match(resumed.stderr, /zfs send -t 1-[0-9a-f]+-/);
      assert.match(resumed.stderr, /received the rest of an interrupted receive/);
      assert.equal((await guest.sh('zfs get -H -o value receive_resume_token backup/zr/sub/app')).trim(), '-');
      await assertSame('e');

      await sleep(3000);
      await guest.sh('echo f > /src/u/app/f && zfs snapshot src/u/app@f');
      assertExit(await unprivileged(['--keep', '2s']), 0, 'expiry');
      assert.deepEqual(await replicaSnapshots(), ['f']);
      assert.deepEqual([...(await guest.holds('src/u/app')).entries()], [['f', ['bk']]]);

      // A snapshot made on the replica: a conflict, and nothing is destroyed until --rollback is asked for.
      await guest.sh('zfs snapshot backup/zr/sub/app@local && echo g > /src/u/app/g && zfs snapshot src/u/app@g');
      const conflict = await unprivileged();
      assertExit(conflict, 4, 'diverged');
      assert.match(conflict.stderr, /has diverged/);
      assert.deepEqual(await replicaSnapshots(), ['f', 'local']);
      assertExit(await unprivileged(['--rollback']), 0, '--rollback');
      assert.deepEqual(await replicaSnapshots(), ['f', 'g']);

      // The same users cannot destroy anything else: zfs refuses the backup user outside backup/zr and the
      // source user outside src/u, and the key cannot even ask (the wrapper refuses).
      const attempts = await guest.run(`su zrbak -s /bin/sh -c 'zfs destroy backup/keep'; echo "backup: $?"
        su zrsrc -s /bin/sh -c 'zfs destroy src/other@x'; echo "source: $?"
        su zrbak -s /bin/sh -c 'ssh -p ${guest.port} zrsrc@${HOST_FROM_GUEST} zfs destroy src/other@x'; echo "key, outside: $?"
        su zrbak -s /bin/sh -c 'ssh -p ${guest.port} zrsrc@${HOST_FROM_GUEST} zfs destroy src/u/app@f'; echo "key, a snapshot: $?"
        su zrbak -s /bin/sh -c 'ssh -p ${guest.port} zrsrc@${HOST_FROM_GUEST} zfs release -- other src/u/app@g'; echo "key, another tag: $?"`);
      assert.match(
        attempts.stdout,
        /^backup: [1-9]\d*\nsource: [1-9]\d*\nkey, outside: 126\nkey, a snapshot: 126\nkey, another tag: 126$/,
      );
      assert.equal(attempts.stderr.match(/permission denied/g)?.length, 2, attempts.stderr);
      assert.equal(attempts.stderr.match(/^zfs_replicate-serve: refused: /gm)?.length, 3, attempts.stderr);
      await guest.sh('zfs list backup/keep src/other@x src/u/app@f >/dev/null');
    });
  });
}

describe('real OpenZFS across versions', () => {
  let v21: Guest;
  let v23: Guest;
  beforeEach(async () => {
    v23 ??= await Guest.up('2.3');
    v21 ??= await Guest.up('2.1');
  });
  after(async () => {
    await v21?.down();
    await v23?.down();
  });

  test('2.1 pulls from 2.3, and 2.3 pulls from 2.1', async () => {
    assert.match(await v21.sh('zfs version'), /zfs-2\.1\./);
    await v23.sh(
      'zfs create src/x && echo a > /src/x/a && zfs snapshot src/x@a && echo b > /src/x/b && zfs snapshot src/x@b',
    );
    await v21.sh(
      'zfs create src/y && echo a > /src/y/a && zfs snapshot src/y@a && echo b > /src/y/b && zfs snapshot src/y@b',
    );
    for (const [guest, source, remote, local] of [
      [v21, v23, 'src/x', 'backup/from23'],
      [v23, v21, 'src/y', 'backup/from21'],
    ] as const) {
      // Each guest pins its own host key at boot; the other's is pinned here, as README's setup step 4 does.
      await guest.sh(`ssh-keyscan -p ${source.port} ${HOST_FROM_GUEST} >>~/.ssh/known_hosts 2>/dev/null`);
      assertExit(
        await pull(guest, source, remote, local, `to${guest.version}`),
        0,
        `${source.version} -> ${guest.version}`,
      );
      assert.deepEqual(await guest.guids(local), await source.guids(remote));
      assert.deepEqual([...(await source.holds(remote)).entries()], [['b', [`to${guest.version}`]]]);
      assert.deepEqual([...(await guest.holds(local)).entries()], [['b', [`to${guest.version}`]]]);
    }
    await v23.sh('echo c > /src/x/c && zfs snapshot src/x@c');
    assertExit(await pull(v21, v23, 'src/x', 'backup/from23', 'to2.1'), 0);
    assert.equal((await v21.guids('backup/from23')).get('c'), (await v23.guids('src/x')).get('c'));
  });
});
