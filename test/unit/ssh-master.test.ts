import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { readCommandLine } from '../../src/cli/command-line.js';
import { sshSettings, startInvocation, startedMaster } from '../../src/cli/run-start.js';
import { LockedError } from '../../src/errors/errors.js';
import { acquireLock } from '../../src/lock/lock.js';
import { SshMaster } from '../../src/transport/ssh-master.js';
import { SshEndpoint } from '../../src/transport/ssh.js';

// A stand-in `ssh` first on PATH: it logs each call's arguments, then does what FAKE_SSH says.
let bin: string;
let calls: string;
const savedPath = process.env.PATH;

function fakeSsh(behaviour: string): void {
  writeFileSync(join(bin, 'ssh'), `#!/bin/sh\necho "$*" >> ${calls}\n${behaviour}\n`);
  chmodSync(join(bin, 'ssh'), 0o755);
  writeFileSync(calls, '');
}

function loggedCalls(): string[] {
  return readFileSync(calls, 'utf8').split('\n').filter(Boolean);
}

describe('SshMaster', () => {
  before(() => {
    bin = mkdtempSync(join(tmpdir(), 'zr-fake-ssh-'));
    calls = join(bin, 'calls');
    process.env.PATH = `${bin}:${savedPath}`;
  });
  after(() => {
    process.env.PATH = savedPath;
    rmSync(bin, { recursive: true, force: true });
  });

  test('a refused connection fails open() with what ssh said, and close() still cleans up', async () => {
    fakeSsh(
      'case "$*" in *"-O exit"*) exit 255;; esac; echo "root@alpha: Permission denied (publickey)." >&2; exit 255',
    );
    const master = new SshMaster({ host: 'alpha', options: [] });
    const endpoint = new SshEndpoint(master);
    await assert.rejects(endpoint.open(), /cannot connect to alpha over ssh: root@alpha: Permission denied/);
    await endpoint.close();
    assert.equal(existsSync(dirname(master.controlPath)), false, 'the control directory is removed');
    assert.match(loggedCalls()[0] ?? '', /ControlMaster=yes .*-f -N -- alpha$/);
  });

  test('closing while the handshake is still under way stops it at once', async () => {
    fakeSsh('case "$*" in *"-O exit"*) exit 0;; esac; exec sleep 30');
    const master = new SshMaster({ host: 'alpha', user: 'backup', options: [] });
    const started = Date.now();
    await master.close();
    assert.ok(Date.now() - started < 10_000, 'not the 30 s of the stalled connection');
    assert.equal((await master.outcome).exitCode, null, 'killed by a signal');
    assert.match(loggedCalls().at(-1) ?? '', /-O exit -- backup@alpha$/, 'in case a master got up meanwhile');
    assert.equal(existsSync(dirname(master.controlPath)), false);
  });

  test('a connected master whose pid is not known is ended with -O exit on its own control socket', async () => {
    fakeSsh('exit 0');
    const master = new SshMaster({ host: 'alpha', port: 2222, options: ['Ciphers=aes128-gcm@openssh.com'] });
    const endpoint = new SshEndpoint(master);
    await endpoint.open();
    assert.deepEqual(endpoint.wrap(['zfs', 'list']).args.slice(-3), ['--', 'alpha', 'zfs list']);
    await endpoint.close();
    const [start] = loggedCalls();
    assert.match(start ?? '', new RegExp(`-p 2222 -S ${master.controlPath} `));
    assert.match(loggedCalls().at(-1) ?? '', new RegExp(`-S ${master.controlPath} -O exit -- alpha$`));
  });

  test('a master that says its pid is ended by a signal, not by one more ssh; a pid not its own never is', async () => {
    // The stand-in master is a process whose command line names the control socket, as a real master's does.
    const pids = join(bin, 'pids');
    fakeSsh(
      `case "$*" in *"-O check"*) for word; do [ "$prev" = -S ] && socket=$word; prev=$word; done; perl -e 'sleep 30' -- "$socket" & echo $! >> ${pids}; echo "Master running (pid=$!)" >&2;; esac; exit 0`,
    );
    const master = new SshMaster({ host: 'alpha', options: [] });
    await new SshEndpoint(master).open();
    await master.close();
    assert.deepEqual(
      loggedCalls().map((call) => /-O \w+/.exec(call)?.[0]),
      [undefined, '-O check'],
    );
    // Ended: gone, or a zombie until init reaps it.
    const stat = `/proc/${readFileSync(pids, 'utf8').trim()}/stat`;
    const ended = () => !existsSync(stat) || readFileSync(stat, 'utf8').split(' ')[2] === 'Z';
    for (let tries = 0; tries < 50 && !ended(); tries++) await sleep(20);
    assert.ok(ended(), 'the master was ended');

    // A pid whose process is not the master (reused, or a lie): -O exit instead, and that process lives on.
    fakeSsh(`case "$*" in *"-O check"*) echo "Master running (pid=${process.pid})" >&2;; esac; exit 0`);
    const other = new SshMaster({ host: 'alpha', options: [] });
    await new SshEndpoint(other).open();
    await other.close();
    assert.match(loggedCalls().at(-1) ?? '', /-O exit -- alpha$/);
  });

  test('an ssh stopped by a signal says which', async () => {
    fakeSsh('case "$*" in *"-O exit"*) exit 255;; esac; kill -TERM $$');
    const master = new SshMaster({ host: 'alpha', options: [] });
    await assert.rejects(
      new SshEndpoint(master).open(),
      /cannot connect to alpha over ssh: ssh was stopped by SIGTERM$/,
    );
    await master.close();
  });

  test('a ProxyCommand that keeps the stderr of ssh open does not hold up the run', async () => {
    fakeSsh('sleep 3 2>&2 & exit 0');
    const master = new SshMaster({ host: 'alpha', options: [] });
    const started = Date.now();
    await new SshEndpoint(master).open();
    assert.ok(Date.now() - started < 2000, `open() took ${Date.now() - started} ms`);
    await master.close();
  });

  test('a run whose replica is locked by another run never connects', async () => {
    fakeSsh('exit 0');
    const lockDir = mkdtempSync(join(tmpdir(), 'zr-locks-'));
    const holder = acquireLock(lockDir, 'tank/dst', () => new Date());
    try {
      const commandLine = readCommandLine(
        ['-h', 'alpha', '-r', 'tank/src', '-l', 'tank/dst', '-t', 'bk', '-k', '30', '--lock-dir', lockDir],
        {},
      );
      const invocation = startInvocation(commandLine);
      assert.ok(invocation.kind === 'run' && 'refusal' in invocation.start);
      assert.ok(invocation.start.refusal instanceof LockedError);
      assert.equal(startedMaster(invocation), undefined);
      assert.deepEqual(loggedCalls(), [], 'no ssh was started');
      holder.release();
      const unlocked = startInvocation(commandLine);
      const master = startedMaster(unlocked);
      assert.ok(master !== undefined, 'with the lock free, the connection starts at once');
      await master.close();
      if (unlocked.kind === 'run' && 'lock' in unlocked.start) unlocked.start.lock.release();
    } finally {
      holder.release();
      rmSync(lockDir, { recursive: true, force: true });
    }
  });

  test('a $TMPDIR that does not exist fails open() naming it, starts no ssh, and close() is quiet', async () => {
    fakeSsh('exit 0');
    const saved = process.env.TMPDIR;
    process.env.TMPDIR = join(bin, 'missing');
    try {
      const master = new SshMaster({ host: 'alpha', options: [] });
      await assert.rejects(
        new SshEndpoint(master).open(),
        /cannot connect to alpha over ssh: no room for the control socket in .*missing \(set TMPDIR\): ENOENT/,
      );
      await master.close();
      assert.deepEqual(loggedCalls(), [], 'no ssh was started');
    } finally {
      if (saved === undefined) delete process.env.TMPDIR;
      else process.env.TMPDIR = saved;
    }
  });

  test('stopHandshake() ends a stalled handshake at once, and open() says it was stopped', async () => {
    fakeSsh('case "$*" in *"-O exit"*) exit 0;; esac; exec sleep 30');
    const master = new SshMaster({ host: 'alpha', options: [] });
    const opened = new SshEndpoint(master).open();
    await sleep(100);
    const stoppedAt = Date.now();
    master.stopHandshake();
    await assert.rejects(opened, /cannot connect to alpha over ssh: ssh was stopped by SIGTERM/);
    assert.ok(Date.now() - stoppedAt < 5_000, 'not the 30 s of the stalled handshake');
    await master.close();
  });

  test('without ssh installed, open() says so', async () => {
    process.env.PATH = bin;
    rmSync(join(bin, 'ssh'), { force: true });
    try {
      const master = new SshMaster({ host: 'alpha', options: [] });
      await assert.rejects(new SshEndpoint(master).open(), /cannot connect to alpha over ssh: .*ENOENT/);
      await master.close();
    } finally {
      process.env.PATH = `${bin}:${savedPath}`;
    }
  });
});

describe('readCommandLine', () => {
  const run = ['-h', 'alpha', '-r', 'tank/src', '-l', 'tank/dst', '-t', 'bk', '-k', '30'];

  test('a run with a remote host is what gets an early ssh connection; anything else gets none', () => {
    const remote = readCommandLine(run, {});
    assert.equal(remote.kind, 'run');
    if (remote.kind === 'run') {
      assert.deepEqual(sshSettings(remote.settings), {
        host: 'alpha',
        user: undefined,
        port: undefined,
        identity: undefined,
        cipher: undefined,
        options: [],
        acceptNewHostKey: false,
      });
    }
    const local = readCommandLine(['-h', 'localhost', ...run.slice(2)], {});
    assert.ok(local.kind === 'run' && sshSettings(local.settings) === undefined);
    assert.equal(readCommandLine(['--help'], {}).kind, 'help');
    assert.equal(readCommandLine(['--version'], {}).kind, 'version');
    assert.equal(readCommandLine(['status'], {}).kind, 'observer');
    const bad = readCommandLine([...run, '--no-such-option'], {});
    assert.equal(bad.kind, 'usage-error', 'bad input connects nowhere');
  });
});
