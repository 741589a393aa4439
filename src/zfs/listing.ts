import type { DatasetState, Snapshot } from './types.js';

/** Properties read for every snapshot: the least the planner needs, so 10k snapshots stay one cheap call. */
const SNAPSHOT_PROPERTIES = ['type', 'guid', 'createtxg', 'creation', 'userrefs'] as const;
/** Read on OpenZFS only (zfs-fuse rejects unknown properties): the dataset's resume token and encryption. */
const OPENZFS_PROPERTIES = [...SNAPSHOT_PROPERTIES, 'receive_resume_token', 'encryption'] as const;

type Property = (typeof OPENZFS_PROPERTIES)[number];
type Row = Partial<Record<Property, string>>;

/** OpenZFS: the dataset, its snapshots and bookmarks in one `zfs list -Hp` call. */
export function listArgv(dataset: string): string[] {
  return ['zfs', 'list', '-Hp', '-o', `name,${OPENZFS_PROPERTIES.join(',')}`, '-t', 'filesystem,volume,snapshot,bookmark', '-d', '1', '-s', 'createtxg', dataset];
}

/** zfs-fuse has no `list -p` and prints guids humanized without it: `zfs get -Hp -d 1` instead. */
export function getArgv(dataset: string): string[] {
  return ['zfs', 'get', '-Hp', '-d', '1', '-o', 'name,property,value', SNAPSHOT_PROPERTIES.join(','), dataset];
}

export function parseListOutput(dataset: string, stdout: string): DatasetState {
  const rows = new Map<string, Row>();
  for (const line of stdout.split('\n')) {
    if (line.length === 0) continue;
    const [name, ...values] = line.split('\t');
    if (name === undefined || values.length !== OPENZFS_PROPERTIES.length) throw new ListingParseError(line);
    rows.set(name, Object.fromEntries(OPENZFS_PROPERTIES.map((property, index) => [property, values[index]!])));
  }
  return stateFromRows(dataset, rows);
}

export function parseGetOutput(dataset: string, stdout: string): DatasetState {
  const rows = new Map<string, Row>();
  for (const line of stdout.split('\n')) {
    if (line.length === 0) continue;
    const fields = line.split('\t');
    if (fields.length !== 3) throw new ListingParseError(line);
    const [name, property, value] = fields as [string, string, string];
    const row = rows.get(name) ?? {};
    row[property as Property] = value;
    rows.set(name, row);
  }
  return stateFromRows(dataset, rows);
}

export class ListingParseError extends Error {
  constructor(line: string) {
    super(`cannot parse zfs output line: ${JSON.stringify(line.slice(0, 200))}`);
  }
}

function stateFromRows(dataset: string, rows: Map<string, Row>): DatasetState {
  const own = rows.get(dataset);
  const snapshots: Snapshot[] = [];
  const bookmarks: Snapshot[] = [];
  for (const [name, row] of rows) {
    // `-d 1` also lists child filesystems; only this dataset's snapshots and bookmarks count.
    if (name.startsWith(`${dataset}@`)) snapshots.push(snapshotFromRow(name, dataset.length + 1, row));
    else if (name.startsWith(`${dataset}#`)) bookmarks.push(snapshotFromRow(name, dataset.length + 1, row));
  }
  const byTxg = (a: Snapshot, b: Snapshot) => a.createtxg - b.createtxg;
  const token = own?.receive_resume_token;
  return {
    dataset,
    exists: own !== undefined,
    ...(own?.type ? { type: own.type } : {}),
    snapshots: snapshots.sort(byTxg),
    bookmarks: bookmarks.sort(byTxg),
    ...(token !== undefined && token !== '-' && token !== '' ? { resumeToken: token } : {}),
    ...(own?.encryption !== undefined ? { encrypted: own.encryption !== 'off' && own.encryption !== '-' } : {}),
  };
}

function snapshotFromRow(name: string, prefixLength: number, row: Row): Snapshot {
  return {
    name: name.slice(prefixLength),
    guid: requireNumeric(name, 'guid', row.guid),
    createtxg: Number(requireNumeric(name, 'createtxg', row.createtxg)),
    creation: Number(requireNumeric(name, 'creation', row.creation)),
    userrefs: row.userrefs === undefined || row.userrefs === '-' ? 0 : Number(requireNumeric(name, 'userrefs', row.userrefs)),
  };
}

function requireNumeric(name: string, property: string, value: string | undefined): string {
  if (value === undefined || !/^\d+$/.test(value)) {
    throw new Error(`zfs reported ${property}=${JSON.stringify(value)} for ${name}: expected a number`);
  }
  return value;
}
