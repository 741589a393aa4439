import assert from 'node:assert/strict';
import { test } from 'node:test';
import { execaSync } from 'execa';
import { shellJoin, shellQuote } from '../../src/exec/quote.js';

const hostile = [
  'plain',
  'with space',
  "it's",
  '$(touch /tmp/pwned)',
  '`id`',
  'a;b&&c||d|e',
  '"double"',
  "'; rm -rf / #",
  'new\nline',
  '',
  '*?[glob]',
  '~root',
  'back\\slash',
];

test('shellQuote leaves plain words alone', () => {
  assert.equal(shellQuote('tank/data@snap-1_2:3.4'), 'tank/data@snap-1_2:3.4');
});

test('a POSIX shell parses every quoted word back to itself', () => {
  const script = `printf '%s\\0' ${shellJoin(hostile)}`;
  const out = execaSync('sh', ['-c', script], { encoding: 'utf8' }).stdout;
  assert.deepEqual(out.split('\0').slice(0, -1), hostile);
});

test('bash parses them the same way (a remote root shell may be bash)', () => {
  const script = `printf '%s\\0' ${shellJoin(hostile)}`;
  const out = execaSync('bash', ['-c', script], { encoding: 'utf8' }).stdout;
  assert.deepEqual(out.split('\0').slice(0, -1), hostile);
});
