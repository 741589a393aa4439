/**
 * ZFS naming rules (zfs_namecheck.c): components of letters, digits and `_ - . : ` (space); no empty component,
 * no `.` or `..`, a pool name that begins with a letter, at most 255 bytes in all. Checked before anything runs, so a typo in a crontab line is a usage
 * error, not a zfs error halfway through a run.
 */
const COMPONENT = /^[A-Za-z0-9_.: -]+$/;
const MAX_NAME_LENGTH = 255;
const MAX_TAG_LENGTH = 255;

export function datasetNameProblem(name: string): string | undefined {
  if (name.length === 0) return 'is empty';
  if (Buffer.byteLength(name) > MAX_NAME_LENGTH) return `is longer than ${MAX_NAME_LENGTH} bytes`;
  if (name.includes('@') || name.includes('#')) return 'must name a filesystem, not a snapshot or bookmark';
  if (name.startsWith('/') || name.endsWith('/')) return 'must not start or end with "/"';
  // Also what keeps a name like "-rf" from being read as options by zfs.
  if (!/^[A-Za-z]/.test(name)) return 'must begin with a pool name, and a pool name begins with a letter';
  for (const component of name.split('/')) {
    if (component.length === 0) return 'has an empty component ("//")';
    if (component === '.' || component === '..') return `has a "${component}" component`;
    const bad = [...component].find((character) => !COMPONENT.test(character));
    if (bad !== undefined) return `has the invalid character ${JSON.stringify(bad)}`;
  }
  return undefined;
}

/** The snapshot names that, received under `dataset`, would make a name longer than ZFS allows. */
export function tooLongUnder(dataset: string, snapshots: readonly string[]): string[] {
  return snapshots.filter((snapshot) => Buffer.byteLength(snapshotName(dataset, snapshot)) > MAX_NAME_LENGTH);
}

/**
 * A tag is given to `zfs hold`/`release` as an argument of its own: one that begins with "-" would be read as
 * an option (`--tag=-r` once received a whole stream, then failed to hold it), and a control character would
 * split log lines and the holds listing.
 */
export function tagProblem(tag: string): string | undefined {
  if (tag.length === 0) return 'is empty';
  if (Buffer.byteLength(tag) > MAX_TAG_LENGTH) return `is longer than ${MAX_TAG_LENGTH} bytes`;
  if (tag.startsWith('-')) return 'must not begin with "-"';
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are exactly what is refused.
  if (/[\x00-\x1f\x7f]/.test(tag)) return 'must not contain control characters (newline, tab, ...)';
  return undefined;
}

export function parentOf(dataset: string): string | undefined {
  const slash = dataset.lastIndexOf('/');
  return slash < 0 ? undefined : dataset.slice(0, slash);
}

/** Strictly below `ancestor` in the dataset hierarchy. */
export function isUnder(name: string, ancestor: string): boolean {
  return name.startsWith(`${ancestor}/`);
}

export function snapshotName(dataset: string, snapshot: string): string {
  return `${dataset}@${snapshot}`;
}
