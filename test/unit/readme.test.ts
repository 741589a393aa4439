import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
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
