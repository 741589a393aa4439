import { FailureError } from '../errors/errors.js';
import type { DatasetState, Snapshot } from './types.js';

/** Properties read for every snapshot: the least the planner needs, so 10k snapshots stay one cheap call. */
const SNAPSHOT_PROPERTIES = ['type', 'guid', 'createtxg', 'creation', 'userrefs'] as const;
/** Read on OpenZFS only (zfs-fuse rejects unknown properties): the dataset's resume token and encryption. */
const OPENZFS_PROPERTIES = [...SNAPSHOT_PROPERTIES, 'receive_resume_token', 'encryption'] as const;

type Property = (typeof OPENZFS_PROPERTIES)[number];
type Row = Partial<Record<Property, string>>;

/** One dataset (its snapshots and bookmarks, and its direct children's rows), or the whole tree under it. */
export type ListingScope = 'dataset' | 'tree';

/** Every dataset a listing saw, by name, with its own snapshots and bookmarks. */
export type Listing = ReadonlyMap<string, DatasetState>;

function depthArguments(scope: ListingScope): string[] {
  return scope === 'tree' ? ['-r'] : ['-d', '1'];
}

/** OpenZFS: datasets, snapshots and bookmarks in one `zfs list -Hp` call. */
export function listArgv(dataset: string, scope: ListingScope): string[] {
  return [
    'zfs',
    'list',
    '-Hp',
    '-o',
    `name,${OPENZFS_PROPERTIES.join(',')}`,
    '-t',
    'filesystem,volume,snapshot,bookmark',
    ...depthArguments(scope),
    '-s',
    'createtxg',
    dataset,
  ];
}

/** zfs-fuse has no `list -p` and prints guids humanized without it: `zfs get -Hp` instead. */
export function getArgv(dataset: string, scope: ListingScope): string[] {
  return [
    'zfs',
    'get',
    '-Hp',
    ...depthArguments(scope),
    '-o',
    'name,property,value',
    SNAPSHOT_PROPERTIES.join(','),
    dataset,
  ];
}

export function parseListOutput(stdout: string, root: string): Listing {
  const rows = new Map<string, Row>();
  for (const line of stdout.split('\n')) {
    if (line.length === 0) continue;
    const [name, ...values] = line.split('\t');
    if (name === undefined || values.length !== OPENZFS_PROPERTIES.length) throw unparsableLine(line);
    rows.set(name, Object.fromEntries(OPENZFS_PROPERTIES.map((property, index) => [property, values[index]!])));
  }
  return listingFromRows(rows, root);
}

export function parseGetOutput(stdout: string, root: string): Listing {
  const rows = new Map<string, Row>();
  for (const line of stdout.split('\n')) {
    if (line.length === 0) continue;
    const fields = line.split('\t');
    if (fields.length !== 3) throw unparsableLine(line);
    const [name, property, value] = fields as [string, string, string];
    const row = rows.get(name) ?? {};
    row[property as Property] = value;
    rows.set(name, row);
  }
  return listingFromRows(rows, root);
}

/** A dataset's state from a listing; a dataset the listing did not see does not exist. */
export function datasetState(listing: Listing, dataset: string): DatasetState {
  return listing.get(dataset) ?? { dataset, exists: false, snapshots: [], bookmarks: [] };
}

/** zfs printed something this tool does not understand: stop before acting on a misread listing. */
export class ListingParseError extends FailureError {
  constructor(detail: string) {
    super('EPARSE', `cannot parse the zfs listing: ${detail}`);
  }
}

function unparsableLine(line: string): ListingParseError {
  return new ListingParseError(`unexpected line ${JSON.stringify(line.slice(0, 200))}`);
}

interface DatasetRows {
  own?: Row;
  snapshots: Snapshot[];
  bookmarks: Snapshot[];
  /** Its snapshots' guids so far. */
  guids: Set<string>;
}

/**
 * Groups rows by the dataset they belong to in one pass, so a tree of any size costs one walk over its rows.
 * A listing is acted on (holds, destroys), so one that cannot be what was asked for is refused whole: a row
 * outside the requested dataset, or two snapshots of one dataset with one guid. Across datasets a guid may
 * repeat: a received copy keeps it (`zfs send web@x | zfs recv web-restore` inside a replicated tree).
 */
function listingFromRows(rows: Map<string, Row>, root: string): Listing {
  const datasets = new Map<string, DatasetRows>();
  const entry = (dataset: string) => {
    const found = datasets.get(dataset);
    if (found !== undefined) return found;
    const created: DatasetRows = { snapshots: [], bookmarks: [], guids: new Set() };
    datasets.set(dataset, created);
    return created;
  };
  for (const [name, row] of rows) {
    const separator = name.search(/[@#]/);
    const dataset = separator < 0 ? name : name.slice(0, separator);
    if (dataset !== root && !dataset.startsWith(`${root}/`)) {
      throw new ListingParseError(`${JSON.stringify(name.slice(0, 200))} is not under the requested ${root}`);
    }
    if (separator < 0) {
      entry(name).own = row;
      continue;
    }
    const owner = entry(dataset);
    if (name[separator] === '@' && row.guid !== undefined) {
      if (owner.guids.has(row.guid)) throw new ListingParseError(`two snapshots have the guid ${row.guid} (${name})`);
      owner.guids.add(row.guid);
    }
    (name[separator] === '@' ? owner.snapshots : owner.bookmarks).push(snapshotFromRow(name, separator + 1, row));
  }
  const listing = new Map<string, DatasetState>();
  for (const [dataset, { own, snapshots, bookmarks }] of datasets) {
    if (own !== undefined) listing.set(dataset, stateFromRows(dataset, own, snapshots, bookmarks));
  }
  return listing;
}

function stateFromRows(dataset: string, own: Row, snapshots: Snapshot[], bookmarks: Snapshot[]): DatasetState {
  const byTxg = (a: Snapshot, b: Snapshot) => a.createtxg - b.createtxg;
  const token = own.receive_resume_token;
  return {
    dataset,
    exists: true,
    ...(own.guid ? { guid: own.guid } : {}),
    ...(own.type ? { type: own.type } : {}),
    snapshots: snapshots.sort(byTxg),
    bookmarks: bookmarks.sort(byTxg),
    ...(token !== undefined && token !== '-' && token !== '' ? { resumeToken: token } : {}),
    ...(own.encryption !== undefined ? { encrypted: own.encryption !== 'off' && own.encryption !== '-' } : {}),
  };
}

function snapshotFromRow(name: string, prefixLength: number, row: Row): Snapshot {
  return {
    name: name.slice(prefixLength),
    guid: requireNumeric(name, 'guid', row.guid),
    createtxg: Number(requireNumeric(name, 'createtxg', row.createtxg)),
    creation: Number(requireNumeric(name, 'creation', row.creation)),
    userrefs:
      row.userrefs === undefined || row.userrefs === '-' ? 0 : Number(requireNumeric(name, 'userrefs', row.userrefs)),
  };
}

function requireNumeric(name: string, property: string, value: string | undefined): string {
  if (value === undefined || !/^\d+$/.test(value)) {
    throw new ListingParseError(`${property}=${JSON.stringify(value)} for ${name}: expected a number`);
  }
  return value;
}
