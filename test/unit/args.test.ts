import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type CliSettings, parseArgs } from '../../src/cli/args.js';
import { UsageError } from '../../src/errors/errors.js';

const base = [
  '-h',
  'backuphost',
  '-r',
  'backuppool/virt/machines',
  '-l',
  'offsite/virt/machines',
  '-t',
  'offsite',
  '-k',
  '30',
];

function settings(argv: string[]): CliSettings {
  const parsed = parseArgs(argv);
  assert.ok(!('help' in parsed) && !('version' in parsed));
  return parsed as CliSettings;
}

/** Runs `check` with these ZFS_REPLICATE_* variables set, then removes them. */
function withEnvironment(variables: Record<string, string>, check: () => void): void {
  Object.assign(process.env, variables);
  try {
    check();
  } finally {
    for (const name of Object.keys(variables)) delete process.env[name];
  }
}

function usageError(argv: string[], message: RegExp): void {
  assert.throws(
    () => parseArgs(argv),
    (error: unknown) => {
      assert.ok(error instanceof UsageError, String(error));
      assert.equal(error.exitCode, 2);
      assert.match(error.message, message);
      assert.ok(!error.message.includes('\n'), 'one line');
      return true;
    },
  );
}

test("the ancestor's crontab line parses unchanged: -h is the host, not help", () => {
  const parsed = settings(base);
  assert.equal(parsed.host, 'backuphost');
  assert.equal(parsed.remoteDataset, 'backuppool/virt/machines');
  assert.equal(parsed.localDataset, 'offsite/virt/machines');
  assert.equal(parsed.tag, 'offsite');
  assert.equal(parsed.keepSeconds, 30 * 86_400);
  assert.equal(parsed.compress, true);
  assert.equal(parsed.dryRun, false);
  assert.equal(parsed.verbosity, 'warn');
});

test("the ancestor's long options are accepted as aliases", () => {
  const parsed = settings([
    '--remote-host',
    'h1',
    '--remote-fs',
    'p/a',
    '--local-fs',
    'q/b',
    '--tag',
    'x',
    '--keep-days',
    '7',
    '--port',
    '2222',
    '--mbuffer',
    '1G',
    '--no-pigz',
  ]);
  assert.deepEqual(
    [
      parsed.host,
      parsed.remoteDataset,
      parsed.localDataset,
      parsed.tag,
      parsed.keepSeconds,
      parsed.port,
      parsed.mbufferBytes,
      parsed.compress,
    ],
    ['h1', 'p/a', 'q/b', 'x', 7 * 86_400, 2222, 1024 ** 3, false],
  );
});

test('-n means no compression and never dry-run; dry-run is --dry-run only', () => {
  const parsed = settings([...base, '-n']);
  assert.equal(parsed.compress, false);
  assert.equal(parsed.dryRun, false);
  assert.equal(settings([...base, '--dry-run']).dryRun, true);
});

test('--help and --version are long options only', () => {
  assert.ok('help' in parseArgs(['--help']));
  assert.match((parseArgs(['--help']) as { help: string }).help, /Exit codes:\n\s+0\s+success/);
  assert.ok('version' in parseArgs(['--version']));
});

test('--ssh-option repeats; other options with a value given twice are an error; a switch twice is itself once', () => {
  assert.deepEqual(
    settings([...base, '--ssh-option', 'ServerAliveInterval=1', '--ssh-option', 'ConnectTimeout=2']).sshOptions,
    ['ServerAliveInterval=1', 'ConnectTimeout=2'],
  );
  usageError([...base, '-t', 'other'], /option --tag was given more than once/);
  const twice = settings([...base, '-q', '-q', '--rollback', '--rollback']);
  assert.equal(twice.verbosity, 'error');
  assert.equal(twice.rollback, true);
});

test('--keep takes durations and overrides -k', () => {
  assert.equal(settings([...base, '--keep', '36h']).keepSeconds, 36 * 3600);
  assert.equal(settings([...base, '--keep', '90m']).keepSeconds, 90 * 60);
  assert.equal(settings([...base, '--keep', '1.5d']).keepSeconds, 1.5 * 86_400);
  assert.equal(settings([...base, '--keep', '0']).keepSeconds, 0, 'a bare 0 needs no unit, as -k 0');
  usageError([...base, '--keep', '36'], /--keep: "36" is not a duration/);
});

test('-v, -vv and -q set the verbosity', () => {
  assert.equal(settings([...base, '-v']).verbosity, 'info');
  assert.equal(settings([...base, '-vv']).verbosity, 'debug');
  assert.equal(settings([...base, '-q']).verbosity, 'error');
});

test('bad input is one clear line', () => {
  usageError([...base, '--bogus'], /Unknown argument: --bogus$/);
  usageError(['-r', 'a/b', '-l', 'c/d', '-t', 'x', '-k', '1'], /missing required option -h\/--host/);
  usageError(['-h', 'x', '-l', 'c/d', '-t', 'x', '-k', '1'], /missing required option -r\/--remote/);
  usageError(['-h', 'x', '-r', 'a/b', '-l', 'c/d', '-t', 'x'], /missing required option -k\/--keep-days/);
  usageError([...base.slice(0, 8), '-k', '-3'], /-k\/--keep-days: "-3" is not a non-negative number of days/);
  usageError([...base.slice(0, 8), '-k', 'ten'], /-k\/--keep-days: "ten" is not a non-negative number of days/);
  usageError(
    ['-h', 'x', '-r', 'a/b', '-l', 'tank/$(reboot)', '-t', 'x', '-k', '1'],
    /-l\/--local: dataset name "tank\/\$\(reboot\)" has the invalid character "\$"/,
  );
  usageError(
    ['-h', 'x', '-r', 'a/b@snap', '-l', 'c/d', '-t', 'x', '-k', '1'],
    /must name a filesystem, not a snapshot/,
  );
  // A pool name begins with a letter: "-rf" is no dataset, and must not reach zfs as options.
  for (const name of ['-rf', '1pool/a', '_x/y'])
    usageError(
      ['-h', 'x', '-r', 'a/b', `--local=${name}`, '-t', 'x', '-k', '1'],
      /-l\/--local: dataset name .* must begin with a pool name, and a pool name begins with a letter/,
    );
  usageError(
    ['-h', '-oProxyCommand=evil', '-r', 'a/b', '-l', 'c/d', '-t', 'x', '-k', '1'],
    /invalid host|Unknown argument/,
  );
  usageError([...base, '-p', '70000'], /not a port number/);
  usageError([...base, '-b', 'lots'], /-b\/--mbuffer: "lots" is not a size/);
  // mbuffer would refuse these only once the source's send has begun.
  for (const size of ['0', '1k', '640k', '0.5M'])
    usageError([...base, '-b', size], /-b\/--mbuffer: ".*" is too small \(at least 1M\)/);
  usageError([...base, '-b', '100000G'], /-b\/--mbuffer: "100000G" is more than half of this host's memory/);
  usageError([...base, 'extra'], /Unknown argument: extra/);
  usageError([...base.slice(0, 6), '-t', 'x'.repeat(256), '-k', '1'], /hold tag is longer than 255 bytes/);
  usageError([...base.slice(0, 6), '--tag=-r', '-k', '1'], /hold tag must not begin with "-"/);
  usageError([...base.slice(0, 6), '-t', 'a\nb', '-k', '1'], /hold tag must not contain control characters/);
  usageError([...base.slice(0, 6), '-t', 'a\tb', '-k', '1'], /hold tag must not contain control characters/);
  usageError([...base, '--lock-dir', ''], /^--lock-dir: the value is empty$/);
  usageError([...base, '--metrics-file', ''], /^--metrics-file: the value is empty$/);
  usageError([...base, '--log-file', ''], /^--log-file: the value is empty$/);
  usageError([...base, '-j', '2'], /^-j\/--jobs only applies with -R\/--recursive$/);
  // A negative duration is a bad value, not unknown options "-1" and "-m".
  usageError([...base, '--max-clock-skew', '-1m'], /^--max-clock-skew: "-1m" is not a duration/);
  usageError([...base, '--lock-warn', '-5m'], /^--lock-warn: "-5m" is not a duration/);
});

test('-j/--jobs: 4 members at once by default, 1 to 5 allowed, also from ZFS_REPLICATE_JOBS', () => {
  assert.equal(settings([...base, '-R']).jobs, 4);
  assert.equal(settings([...base, '-R', '-j', '1']).jobs, 1);
  assert.equal(settings([...base, '-R', '--jobs', '5']).jobs, 5);
  usageError([...base, '-R', '-j', '0'], /-j\/--jobs: "0" is not a number of jobs \(1-5\)/);
  usageError([...base, '-R', '-j', '6'], /-j\/--jobs: "6" is not a number of jobs/);
  usageError([...base, '-R', '-j', '2x'], /-j\/--jobs: "2x" is not a number of jobs/);
  process.env.ZFS_REPLICATE_JOBS = '2';
  try {
    assert.equal(settings([...base, '-R']).jobs, 2);
  } finally {
    delete process.env.ZFS_REPLICATE_JOBS;
  }
});

test('values can come from ZFS_REPLICATE_* variables; the command line wins', () => {
  process.env.ZFS_REPLICATE_HOST = 'envhost';
  process.env.ZFS_REPLICATE_KEEP_DAYS = '3';
  try {
    const parsed = settings(['-r', 'a/b', '-l', 'c/d', '-t', 'x']);
    assert.equal(parsed.host, 'envhost');
    assert.equal(parsed.keepSeconds, 3 * 86_400);
    assert.equal(settings(['-h', 'cli', '-r', 'a/b', '-l', 'c/d', '-t', 'x']).host, 'cli');
  } finally {
    delete process.env.ZFS_REPLICATE_HOST;
    delete process.env.ZFS_REPLICATE_KEEP_DAYS;
  }
});

test('a flag from the environment: 1/yes/true switch it on, 0/no/false/empty leave it off, anything else is an error', () => {
  for (const on of ['1', 'yes', 'true', 'ON']) {
    withEnvironment({ ZFS_REPLICATE_DRY_RUN: on, ZFS_REPLICATE_NO_COMPRESS: on, ZFS_REPLICATE_RECURSIVE: on }, () => {
      const parsed = settings(base);
      assert.deepEqual([parsed.dryRun, parsed.compress, parsed.recursive], [true, false, true], `value ${on}`);
    });
  }
  for (const off of ['0', 'no', 'false', '']) {
    withEnvironment({ ZFS_REPLICATE_DRY_RUN: off }, () =>
      assert.equal(settings(base).dryRun, false, `value ${JSON.stringify(off)}`),
    );
  }
  withEnvironment({ ZFS_REPLICATE_DRY_RUN: '0' }, () =>
    assert.equal(settings([...base, '--dry-run']).dryRun, true, 'the command line wins'),
  );
  withEnvironment({ ZFS_REPLICATE_DRY_RUN: 'maybe' }, () =>
    usageError(base, /ZFS_REPLICATE_DRY_RUN="maybe": expected 1 or 0/),
  );
});

test('a switch given a value (--dry-run=yes) takes the same words as the environment, never a silent "off"', () => {
  for (const on of ['1', 'yes', 'true', 'ON']) {
    const parsed = settings([...base, `--dry-run=${on}`, `-R=${on}`, `--no-compress=${on}`]);
    assert.deepEqual([parsed.dryRun, parsed.recursive, parsed.compress], [true, true, false], `value ${on}`);
  }
  for (const off of ['0', 'no', 'false']) assert.equal(settings([...base, `--rollback=${off}`]).rollback, false);
  assert.equal(settings([...base, '--verbose=2']).verbosity, 'debug');
  usageError([...base, '--dry-run=maybe'], /--dry-run is a switch: "--dry-run=maybe"/);
  usageError([...base, '--rollback='], /--rollback is a switch/);
  usageError([...base, '--verbose=5'], /expected 0, 1 or 2/);
});

test('a switch turned off on the command line beats the environment; every spelling of a switch is read alike', () => {
  withEnvironment({ ZFS_REPLICATE_ROLLBACK: '1', ZFS_REPLICATE_VERBOSE: '2', ZFS_REPLICATE_NO_PIGZ: '1' }, () => {
    const parsed = settings([...base, '--rollback=no', '-v=0', '--no-compress=0']);
    assert.deepEqual([parsed.rollback, parsed.verbosity, parsed.compress], [false, 'warn', true]);
  });
  assert.equal(settings([...base, '--dryRun=yes']).dryRun, true, "yargs' camelCase spelling");
  assert.equal(settings([...base, '--noPigz=yes']).compress, false);
  const combined = settings([...base, '-vR=yes']);
  assert.deepEqual([combined.verbosity, combined.recursive], ['info', true], 'the value is the last flag’s');
  usageError([...base, '-vR=maybe'], /--recursive is a switch/);
  usageError([...base, '--DRY-RUN=no'], /Unknown argument: --DRY-RUN \(the option is --dry-run\)/);
  usageError([...base, '---dry-run=no'], /Unknown argument: ---dry-run/);
  usageError([...base, '-R=1', '-R=0'], /--recursive is both on and off in this line/);
  usageError([...base, '--recursive=no', '-R'], /--recursive is both on and off/);
  assert.equal(settings([...base, '-R', '-R']).recursive, true, 'a switch given twice means it once');
});

test('nothing of the line is silently ignored: words after --, a -k beside --keep, options with dots', () => {
  usageError([...base, '--', '-R'], /unexpected argument "-R"/);
  usageError([...base.slice(0, -2), '-k', '-5', '--keep', '30d'], /-k\/--keep-days: "-5" is not/);
  usageError([...base, '--ssh-option.x=1'], /Unknown argument: --ssh-option.x/);
  usageError([...base.slice(0, -4), '--tag.x=1', '-k', '30'], /Unknown argument: --tag.x/);
});

test("a variable may use an option's other name (the ancestor's): ZFS_REPLICATE_NO_PIGZ, _REMOTE_FS, _LOCAL_FS, _REMOTE_HOST", () => {
  const variables = {
    ZFS_REPLICATE_NO_PIGZ: '1',
    ZFS_REPLICATE_REMOTE_FS: 'a/b',
    ZFS_REPLICATE_LOCAL_FS: 'c/d',
    ZFS_REPLICATE_REMOTE_HOST: 'envhost',
  };
  Object.assign(process.env, variables);
  try {
    const parsed = settings(['-t', 'x', '-k', '1']);
    assert.deepEqual(
      [parsed.compress, parsed.remoteDataset, parsed.localDataset, parsed.host],
      [false, 'a/b', 'c/d', 'envhost'],
    );
    assert.equal(settings(['-t', 'x', '-k', '1', '-h', 'cli']).host, 'cli', 'the command line still wins');
  } finally {
    for (const name of Object.keys(variables)) delete process.env[name];
  }
});

test('one option set by two of its spellings in the environment is a usage error, not a matter of order', () => {
  process.env.ZFS_REPLICATE_REMOTE = 'tank/c5';
  process.env.ZFS_REPLICATE_REMOTE_FS = 'tank/c4';
  try {
    usageError(
      ['-h', 'x', '-l', 'c/d', '-t', 'x', '-k', '1'],
      /^ZFS_REPLICATE_REMOTE(_FS)? and ZFS_REPLICATE_REMOTE(_FS)? both set --remote: keep one$/,
    );
  } finally {
    delete process.env.ZFS_REPLICATE_REMOTE;
    delete process.env.ZFS_REPLICATE_REMOTE_FS;
  }
});

test('--log-format is text or json, on the command line and from the environment', () => {
  usageError([...base, '--log-format'], /^--log-format needs a value: text or json$/);
  assert.equal(settings([...base, '--log-format', 'json']).logFormat, 'json');
  usageError([...base, '--log-format', 'xml'], /^--log-format: "xml" is not one of text, json$/);
  usageError([...base, '--log-format=JSON'], /^--log-format: "JSON" is not one of text, json$/);
  process.env.ZFS_REPLICATE_LOG_FORMAT = 'xml';
  try {
    usageError(base, /^--log-format: "xml" is not one of text, json$/);
  } finally {
    delete process.env.ZFS_REPLICATE_LOG_FORMAT;
  }
});

test('an unknown option is named as it was typed, not camelCased', () => {
  usageError([...base, '--bogus-opt'], /^Unknown argument: --bogus-opt$/);
  usageError([...base, '--bogus-opt=3', '-Z'], /^Unknown arguments: --bogus-opt, -Z$/);
});

test('an unknown ZFS_REPLICATE_* variable is named in a usage error', () => {
  process.env.ZFS_REPLICATE_KEEP_DAZE = '3';
  try {
    usageError(base, /unknown environment variable ZFS_REPLICATE_KEEP_DAZE: no option --keep-daze/);
  } finally {
    delete process.env.ZFS_REPLICATE_KEEP_DAZE;
  }
  // Names of Object.prototype's members are no options either.
  for (const name of ['CONSTRUCTOR', 'TO_STRING', 'HAS_OWN_PROPERTY']) {
    process.env[`ZFS_REPLICATE_${name}`] = '1';
    try {
      usageError(base, new RegExp(`unknown environment variable ZFS_REPLICATE_${name}`));
    } finally {
      delete process.env[`ZFS_REPLICATE_${name}`];
    }
  }
});

test('-R replicates the tree; --exclude (repeatable) takes full remote names under -r, and only with -R', () => {
  const parsed = settings([
    ...base,
    '-R',
    '--exclude',
    'backuppool/virt/machines/swap',
    '--exclude',
    'backuppool/virt/machines/scratch space',
  ]);
  assert.equal(parsed.recursive, true);
  assert.deepEqual(parsed.exclude, ['backuppool/virt/machines/swap', 'backuppool/virt/machines/scratch space']);
  assert.equal(settings(base).recursive, false);
  usageError([...base, '--exclude', 'backuppool/virt/machines/swap'], /--exclude only applies with -R/);
  usageError(
    [...base, '-R', '--exclude', 'swap'],
    /--exclude: "swap" is not a dataset under -r backuppool\/virt\/machines/,
  );
  usageError([...base, '-R', '--exclude', 'backuppool/virt/machines'], /is not a dataset under -r/);
  usageError(
    [...base, '-R', '--exclude', 'backuppool/virt/machines/a@b'],
    /--exclude: dataset name .* must name a filesystem/,
  );
});

test('one precedence for every pair: the command line over the environment, then --keep over -k and -q over -v', () => {
  const with_ = (environment: Record<string, string>, argv: string[]) => {
    const parsed = parseArgs(argv, environment);
    assert.ok(!('help' in parsed) && !('version' in parsed));
    return parsed;
  };
  const core = base.slice(0, 8);
  assert.equal(
    with_({ ZFS_REPLICATE_KEEP: '1s' }, [...core, '-k', '30']).keepSeconds,
    30 * 86_400,
    'env --keep vs cli -k',
  );
  assert.equal(
    with_({ ZFS_REPLICATE_KEEP_DAYS: '1' }, [...core, '--keep', '2h']).keepSeconds,
    7200,
    'env -k vs cli --keep',
  );
  assert.equal(
    with_({ ZFS_REPLICATE_KEEP: '2h', ZFS_REPLICATE_KEEP_DAYS: '1' }, core).keepSeconds,
    7200,
    '--keep over -k',
  );
  assert.equal(with_({}, [...core, '-k', '1', '--keep', '2h']).keepSeconds, 7200, '--keep over -k, same source');
  assert.equal(with_({ ZFS_REPLICATE_QUIET: '1' }, [...core, '-k', '1', '-v']).verbosity, 'info', 'env -q vs cli -v');
  assert.equal(
    with_({ ZFS_REPLICATE_VERBOSE: '2' }, [...core, '-k', '1', '-q']).verbosity,
    'error',
    'env -v vs cli -q',
  );
  assert.equal(with_({ ZFS_REPLICATE_VERBOSE: '2' }, [...core, '-k', '1']).verbosity, 'debug', 'VERBOSE is honoured');
  assert.equal(with_({ ZFS_REPLICATE_VERBOSE: '1' }, [...core, '-k', '1', '-vv']).verbosity, 'debug', 'cli -vv wins');
  assert.equal(with_({ ZFS_REPLICATE_DRY_RUN: '1' }, base).dryRun, true, 'env --dry-run is honoured');
  assert.equal(with_({ ZFS_REPLICATE_DRY_RUN: '0' }, [...base, '--dry-run']).dryRun, true, 'cli --dry-run wins');
  const tree = with_({ ZFS_REPLICATE_RECURSIVE: '1' }, [...base, '--exclude', 'backuppool/virt/machines/swap']);
  assert.deepEqual(
    [tree.recursive, tree.exclude],
    [true, ['backuppool/virt/machines/swap']],
    'env -R with cli --exclude',
  );
  const excluded = with_({ ZFS_REPLICATE_EXCLUDE: 'backuppool/virt/machines/a' }, [
    ...base,
    '-R',
    '--exclude',
    'backuppool/virt/machines/b',
  ]);
  assert.deepEqual(excluded.exclude, ['backuppool/virt/machines/b'], 'cli --exclude replaces the env one');
  assert.throws(
    () => parseArgs(base, { ZFS_REPLICATE_EXCLUDE: 'backuppool/virt/machines/a' }),
    /--exclude only applies with -R/,
  );
});

test('ZFS_REPLICATE_VERBOSE takes 0-2, and help or version cannot come from the environment', () => {
  assert.throws(
    () => parseArgs(base, { ZFS_REPLICATE_VERBOSE: 'abc' }),
    /ZFS_REPLICATE_VERBOSE="abc": expected 0, 1 or 2/,
  );
  for (const [name, value] of [
    ['ZFS_REPLICATE_HELP', 'true'],
    ['ZFS_REPLICATE_HELP', '1'],
    ['ZFS_REPLICATE_VERSION', '1'],
  ]) {
    assert.throws(
      () => parseArgs(base, { [name as string]: value as string }),
      (error: unknown) => error instanceof UsageError && /cannot come from the environment/.test(error.message),
      `${name}=${value}`,
    );
  }
});

test('an -i identity file that cannot be read is a usage error, not a silent fallback to the default key', () => {
  usageError(
    [...base, '-i', '/nonexistent/id_ed25519'],
    /-i\/--identity: cannot read "\/nonexistent\/id_ed25519" \(ENOENT\)/,
  );
  assert.equal(settings([...base, '-i', '/etc/hostname']).identity, '/etc/hostname');
});

test('--progress and --no-progress force the progress line on and off; both at once is an error', () => {
  assert.equal(settings(base).progress, 'auto');
  assert.equal(settings([...base, '--progress']).progress, 'on');
  assert.equal(settings([...base, '--no-progress']).progress, 'off');
  usageError([...base, '--progress', '--no-progress'], /--progress and --no-progress contradict/);
  const fromEnvironment = parseArgs([...base, '--no-progress'], { ZFS_REPLICATE_PROGRESS: '1' }) as CliSettings;
  assert.equal(fromEnvironment.progress, 'off', 'the command line wins over the other option of the pair');
});

test('--bwlimit takes a rate in bytes per second (binary units); anything else is a usage error', () => {
  assert.equal(settings(base).bwlimit, undefined);
  assert.equal(settings([...base, '--bwlimit', '20M']).bwlimit, 20 * 1024 * 1024);
  assert.equal(settings([...base, '--bwlimit', '500k']).bwlimit, 500 * 1024);
  assert.equal((parseArgs(base, { ZFS_REPLICATE_BWLIMIT: '1G' }) as CliSettings).bwlimit, 1024 ** 3);
  for (const bad of ['0', '20MB', 'fast', '1.5.2M', '']) {
    usageError([...base, '--bwlimit', bad], /--bwlimit: .* is not a rate in bytes per second/);
  }
});

test('no --lock-dir: the default is chosen when the lock is taken', () => {
  assert.equal(settings(base).lockDir, undefined);
  assert.equal(settings([...base, '--lock-dir', '/tmp/locks']).lockDir, '/tmp/locks');
});
