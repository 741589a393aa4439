import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parseArgs } from '../../src/cli/args.js';
import { EXIT_CODE_MEANINGS } from '../../src/errors/exit-codes.js';

const README = readFileSync(resolve(dirname(fileURLToPath(import.meta.url)), '../../../README.md'), 'utf8');

test("the README's exit-code table says what --help says, code for code", () => {
  const section = README.slice(README.indexOf('## Exit codes'));
  const rows = [...section.matchAll(/^\| (\d) \| (.+) \|$/gm)].map((match) => [Number(match[1]), match[2]]);
  assert.deepEqual(
    rows,
    EXIT_CODE_MEANINGS.map(([code, meaning]) => [code, meaning]),
  );
  const parsed = parseArgs(['--help']);
  assert.ok('help' in parsed);
  for (const [code, meaning] of EXIT_CODE_MEANINGS) assert.ok(parsed.help.includes(`  ${code}  ${meaning}\n`), meaning);
});

test("the bin's --help wraps at word boundaries, for the run and for status and check", () => {
  const bin = resolve(dirname(fileURLToPath(import.meta.url)), '../../zfs_replicate.mjs');
  const help = (...argv: string[]) => {
    const run = spawnSync(process.execPath, [bin, ...argv, '--help'], { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    return run.stdout.replace(/\s+/g, ' ');
  };
  // yargs' ESM build cuts lines mid-word ("longe r"); the bundle uses its CommonJS cliui, which does not.
  assert.ok(help().includes('when the lock holder has run longer than this'), help());
  assert.ok(help().includes('where each run leaves its record (read by status, check and --metrics-file)'));
  assert.ok(help('check').includes('WARNING at this lag (a duration such as 26h, or seconds)'));
});

test('the bin in a working directory that was removed answers in one line, not with a stack trace', () => {
  const bin = resolve(dirname(fileURLToPath(import.meta.url)), '../../zfs_replicate.mjs');
  const gone = mkdtempSync(join(tmpdir(), 'zr-gone-'));
  const run = spawnSync(
    'sh',
    ['-c', 'cd "$1" && rmdir "$1" && exec "$2" "$3" --no-such-option', 'sh', gone, process.execPath, bin],
    {
      encoding: 'utf8',
    },
  );
  rmSync(gone, { recursive: true, force: true });
  assert.equal(run.status, 2, run.stderr);
  assert.match(run.stderr, /^zfs_replicate: error: Unknown argument: --no-such-option \(see --help\)\n$/);
});
