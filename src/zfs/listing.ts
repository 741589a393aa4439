import type { DatasetState, Snapshot } from './types.js';

/** Properties read for every snapshot: the least the planner needs, so 10k snapshots stay one cheap call. */
export const SNAPSHOT_PROPERTIES = ['type', 'guid', 'createtxg', 'creation', 'userrefs'] as const;

/** `zfs list -Hp -o name,type,guid,createtxg,creation,userrefs -t filesystem,volume,snapshot -d 1 DS` (OpenZFS). */
export function listArgv(dataset: string): string[] {
  return ['zfs', 'list', '-Hp', '-o', `name,${SNAPSHOT_PROPERTIES.join(',')}`, '-t', 'filesystem,volume,snapshot', '-d', '1', '-s', 'createtxg', dataset];
}

/** `zfs get -Hp -d 1 ...` for zfs-fuse, which has no `list -p` and prints guids humanized without it. */
export function getArgv(dataset: string): string[] {
  return ['zfs', 'get', '-Hp', '-d', '1', '-o', 'name,property,value', SNAPSHOT_PROPERTIES.join(','), dataset];
}

type Row = Record<(typeof SNAPSHOT_PROPERTIES)[number], string>;

export function parseListOutput(dataset: string, stdout: string): DatasetState {
  const rows = new Map<string, Row>();
  for (const line of stdout.split('\n')) {
    if (line.length === 0) continue;
    const [name, ...values] = line.split('\t');
    if (name === undefined || values.length !== SNAPSHOT_PROPERTIES.length) throw new ListingParseError(line);
    rows.set(name, Object.fromEntries(SNAPSHOT_PROPERTIES.map((property, index) => [property, values[index]!])) as Row);
  }
  return stateFromRows(dataset, rows);
}

export function parseGetOutput(dataset: string, stdout: string): DatasetState {
  const rows = new Map<string, Partial<Row>>();
  for (const line of stdout.split('\n')) {
    if (line.length === 0) continue;
    const fields = line.split('\t');
    if (fields.length !== 3) throw new ListingParseError(line);
    const [name, property, value] = fields as [string, string, string];
    const row = rows.get(name) ?? {};
    row[property as keyof Row] = value;
    rows.set(name, row);
  }
  return stateFromRows(dataset, rows);
}

export class ListingParseError extends Error {
  constructor(line: string) {
    super(`cannot parse zfs output line: ${JSON.stringify(line.slice(0, 200))}`);
  }
}

function stateFromRows(dataset: string, rows: Map<string, Partial<Row>>): DatasetState {
  const own = rows.get(dataset);
  const prefix = `${dataset}@`;
  const snapshots: Snapshot[] = [];
  for (const [name, row] of rows) {
    // `-d 1` also lists child filesystems; only this dataset's snapshots count.
    if (!name.startsWith(prefix)) continue;
    snapshots.push({
      name: name.slice(prefix.length),
      guid: requireNumeric(name, 'guid', row.guid),
      createtxg: Number(requireNumeric(name, 'createtxg', row.createtxg)),
      creation: Number(requireNumeric(name, 'creation', row.creation)),
      userrefs: row.userrefs === undefined || row.userrefs === '-' ? 0 : Number(requireNumeric(name, 'userrefs', row.userrefs)),
    });
  }
  snapshots.sort((a, b) => a.createtxg - b.createtxg);
  return { dataset, exists: own !== undefined, ...(own?.type ? { type: own.type } : {}), snapshots };
}

function requireNumeric(name: string, property: string, value: string | undefined): string {
  if (value === undefined || !/^\d+$/.test(value)) {
    throw new Error(`zfs reported ${property}=${JSON.stringify(value)} for ${name}: expected a number`);
  }
  return value;
}
