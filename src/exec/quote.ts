const SAFE_WORD = /^[A-Za-z0-9_/.,:@%+=-]+$/;

/**
 * Quote one argument for a POSIX shell. ssh joins its command arguments into a single string that the remote
 * shell parses again, so every remote argument must survive that parse unchanged (names can hold spaces, quotes,
 * `$(...)`, `;`).
 */
export function shellQuote(word: string): string {
  if (SAFE_WORD.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

export function shellJoin(argv: readonly string[]): string {
  return argv.map(shellQuote).join(' ');
}
