import { FailureError } from '../../src/errors/errors.js';
import type { Logger } from '../../src/log/logger.js';
import { PipelineError, type StageOutcome } from '../../src/transport/pipeline.js';
import type { StreamOptions, StreamRunner } from '../../src/transport/stream.js';
import type { DestroyResult, HoldResult, ReleaseResult, ZfsOperations } from '../../src/zfs/host.js';
import type { Listing } from '../../src/zfs/listing.js';
import type { DatasetState, HostFeatures, Snapshot } from '../../src/zfs/types.js';

/**
 * In-memory stand-ins for a host's zfs and for the stream between two hosts, so the orchestration (runOnce,
 * runTree, holds, expiry, bookmarks) runs without root. They keep zfs's own rules that the orchestration
 * relies on: a held snapshot cannot be destroyed, an incremental must start at the replica's newest snapshot,
 * guids travel with a stream. Every change is recorded in `events` and reported to `onChange`, so a test can
 * check an invariant at every instant of a run, not only at its end.
 */

interface FakeSnapshot {
  name: string;
  guid: string;
  createtxg: number;
  creation: number;
  holds: string[];
  /** Datasets cloned from this snapshot: it cannot be destroyed while they exist. */
  clones?: string[];
}

interface FakeDataset {
  type: 'filesystem' | 'volume';
  snapshots: FakeSnapshot[];
  bookmarks: Omit<FakeSnapshot, 'holds'>[];
  /** Written to since its newest snapshot: an incremental receive is refused. */
  modified: boolean;
  properties: Map<string, string>;
  guid: string;
  resumeToken?: string;
  encrypted?: boolean;
}

export const FUSE_FEATURES: HostFeatures = {
  zfsVersion: undefined,
  parsableList: false,
  holdsCommand: false,
  openzfs: false,
  tools: new Set(),
};
export const OPENZFS_FEATURES: HostFeatures = {
  zfsVersion: 'zfs-2.3.2',
  parsableList: true,
  holdsCommand: true,
  openzfs: true,
  tools: new Set(['mbuffer', 'lz4']),
};

let nextGuid = 1000;

export class FakeZfsHost implements ZfsOperations {
  readonly datasets = new Map<string, FakeDataset>();
  readonly events: string[] = [];
  /** How often each dataset or tree was listed. */
  listings = 0;
  /** The gathered hold and release commands (holdAll, releaseAll), each with its number of snapshots. */
  readonly gatheredCommands: string[] = [];
  onChange: (() => void) | undefined;
  /** Throws from the named operation (e.g. 'release'), to play an unreachable host or a zfs error. */
  failing: Set<string> = new Set();
  private txg = 1;

  constructor(
    readonly label: string,
    readonly features: HostFeatures = FUSE_FEATURES,
    /** Shared by the hosts of one test, so the order of changes across hosts can be asserted. */
    readonly journal: string[] = [],
  ) {}

  // Test set-up, which bypasses `events`.

  create(dataset: string, type: FakeDataset['type'] = 'filesystem'): this {
    this.datasets.set(dataset, {
      type,
      snapshots: [],
      bookmarks: [],
      modified: false,
      properties: new Map(),
      guid: String(nextGuid++),
    });
    return this;
  }

  snapshot(dataset: string, name: string, creation: number): Snapshot {
    const snapshot = { name, guid: String(nextGuid++), createtxg: this.txg++, creation, holds: [] };
    this.dataset(dataset).snapshots.push(snapshot);
    return toSnapshot(snapshot);
  }

  /** Records `clone` as cloned from `dataset@snapshot` (the clone itself is not listed). */
  clone(dataset: string, snapshot: string, clone: string): void {
    const found = this.find(dataset, snapshot);
    if (found === undefined) throw new Error(`no ${dataset}@${snapshot}`);
    found.clones = [...(found.clones ?? []), clone];
  }

  /** The tags on `dataset@snapshot`. */
  tagsOf(dataset: string, snapshot: string): string[] {
    return this.find(dataset, snapshot)?.holds ?? [];
  }

  snapshotNames(dataset: string): string[] {
    return this.datasets.get(dataset)?.snapshots.map((snapshot) => snapshot.name) ?? [];
  }

  // ZfsOperations

  async state(dataset: string): Promise<DatasetState> {
    this.check('state');
    this.listings++;
    return this.stateOf(dataset);
  }

  async tree(root: string): Promise<Listing> {
    this.check('tree');
    this.listings++;
    const listing = new Map<string, DatasetState>();
    for (const name of this.datasets.keys()) {
      if (name === root || name.startsWith(`${root}/`)) listing.set(name, this.stateOf(name));
    }
    return listing;
  }

  async propertySources(dataset: string, properties: readonly string[]): Promise<Map<string, string>> {
    const set = this.dataset(dataset).properties;
    return new Map(
      properties.map((property) => [property, set.has(property) ? 'local' : property.includes(':') ? '-' : 'default']),
    );
  }

  async datasetNames(root: string): Promise<string[]> {
    this.check('datasetNames');
    return [...this.datasets.keys()].filter((name) => name === root || name.startsWith(`${root}/`));
  }

  async exists(dataset: string): Promise<boolean> {
    return this.datasets.has(dataset);
  }

  async hold(tag: string, dataset: string, snapshot: string): Promise<HoldResult> {
    this.check('hold');
    const found = this.require(dataset, snapshot);
    if (found.holds.includes(tag)) return 'present';
    found.holds.push(tag);
    this.changed(`hold ${tag} ${dataset}@${snapshot}`);
    return 'added';
  }

  async release(tag: string, dataset: string, snapshot: string): Promise<ReleaseResult> {
    this.check('release');
    const found = this.find(dataset, snapshot);
    if (found === undefined || !found.holds.includes(tag)) return 'absent';
    found.holds = found.holds.filter((held) => held !== tag);
    this.changed(`release ${tag} ${dataset}@${snapshot}`);
    return 'released';
  }

  async holds(dataset: string, snapshots: readonly string[]): Promise<Map<string, string[]>> {
    if (!this.features.holdsCommand) throw new Error('fake: zfs holds is not available on this host');
    return new Map(snapshots.map((name) => [name, [...this.tagsOf(dataset, name)]]));
  }

  async tagsOn(snapshots: readonly string[]): Promise<Map<string, string[]>> {
    if (!this.features.holdsCommand) throw new Error('fake: zfs holds is not available on this host');
    return new Map(snapshots.map((name) => [name, [...this.tagsOf(...split(name, '@'))]]));
  }

  /** Like zfs: tries every snapshot, then fails if any failed. */
  async holdAll(tag: string, snapshots: readonly string[]): Promise<void> {
    this.gatheredCommands.push(`hold ${snapshots.length}`);
    await this.eachOf(snapshots, async (dataset, snapshot) => {
      if ((await this.hold(tag, dataset, snapshot)) === 'present') throw new Error('tag already exists');
    });
  }

  async releaseAll(tag: string, snapshots: readonly string[]): Promise<void> {
    this.gatheredCommands.push(`release ${snapshots.length}`);
    await this.eachOf(snapshots, async (dataset, snapshot) => {
      if ((await this.release(tag, dataset, snapshot)) === 'absent') throw new Error('no such tag on this dataset');
    });
  }

  async createParents(dataset: string): Promise<void> {
    const parts = dataset.split('/');
    for (let depth = 1; depth <= parts.length; depth++) {
      const name = parts.slice(0, depth).join('/');
      if (!this.datasets.has(name)) {
        this.create(name);
        this.changed(`create ${name}`);
      }
    }
  }

  async setProperty(dataset: string, property: string, value: string): Promise<void> {
    this.dataset(dataset).properties.set(property, value);
    this.changed(`set ${property}=${value} ${dataset}`);
  }

  /** Local values only: the orchestration never relies on inheritance of user properties. */
  async propertyOf(dataset: string, property: string): Promise<string | undefined> {
    this.check('propertyOf');
    const state = this.datasets.get(dataset);
    if (property === 'written') return state && (state.modified ? '4096' : '0');
    return property === 'guid' ? state?.guid : state?.properties.get(property);
  }

  async userProperty(property: string, root?: string): Promise<Map<string, string>> {
    const values = new Map<string, string>();
    const under = (name: string) => root === undefined || name === root || name.startsWith(`${root}/`);
    for (const [name, dataset] of this.datasets) {
      if (!under(name)) continue;
      const value = dataset.properties.get(property);
      if (value !== undefined) values.set(name, value);
      if (property !== 'origin') continue;
      for (const snapshot of dataset.snapshots) {
        for (const clone of snapshot.clones ?? []) if (under(clone)) values.set(clone, `${name}@${snapshot.name}`);
      }
    }
    return values;
  }

  async rollback(dataset: string, snapshot: string, destroyLater: boolean): Promise<void> {
    const state = this.dataset(dataset);
    const index = state.snapshots.findIndex((candidate) => candidate.name === snapshot);
    const later = state.snapshots.slice(index + 1);
    if (later.length > 0 && !destroyLater) throw new Error('fake: more recent snapshots exist');
    if (later.some((candidate) => candidate.holds.length > 0)) throw new Error('fake: a later snapshot is held');
    if (later.some((candidate) => (candidate.clones ?? []).length > 0))
      throw new Error('fake: clones of previous snapshots exist');
    state.snapshots = state.snapshots.slice(0, index + 1);
    state.modified = false;
    this.changed(`rollback ${dataset}@${snapshot}`);
  }

  async abortReceive(dataset: string): Promise<void> {
    delete this.dataset(dataset).resumeToken;
    this.changed(`abort-receive ${dataset}`);
  }

  async bookmark(dataset: string, snapshot: string, bookmark: string): Promise<void> {
    const { holds: _, ...source } = this.require(dataset, snapshot);
    this.dataset(dataset).bookmarks.push({ ...source, name: bookmark });
    this.changed(`bookmark ${dataset}@${snapshot} #${bookmark}`);
  }

  async destroyBookmark(dataset: string, bookmark: string): Promise<void> {
    const state = this.dataset(dataset);
    state.bookmarks = state.bookmarks.filter((candidate) => candidate.name !== bookmark);
    this.changed(`destroy ${dataset}#${bookmark}`);
  }

  async estimateSendBytes(): Promise<number | undefined> {
    return this.features.openzfs ? 1000 : undefined;
  }

  async destroySnapshots(
    dataset: string,
    snapshots: readonly string[],
    stop?: AbortSignal,
  ): Promise<Map<string, DestroyResult>> {
    const results = new Map<string, DestroyResult>();
    for (const name of snapshots) {
      if (stop?.aborted) return results;
      const state = this.dataset(dataset);
      const found = this.find(dataset, name);
      if (found !== undefined && found.holds.length > 0) {
        results.set(name, { outcome: 'held' });
        continue;
      }
      if (found?.clones?.length) {
        results.set(name, { outcome: 'cloned', clones: found.clones });
        continue;
      }
      state.snapshots = state.snapshots.filter((candidate) => candidate.name !== name);
      results.set(name, { outcome: 'destroyed' });
      this.changed(`destroy ${dataset}@${name}`);
    }
    return results;
  }

  // Used by FakeStreams.

  receive(dataset: string, snapshots: readonly FakeSnapshot[], type: FakeDataset['type']): void {
    if (!this.datasets.has(dataset)) this.create(dataset, type);
    for (const snapshot of snapshots) {
      this.dataset(dataset).snapshots.push({ ...snapshot, createtxg: this.txg++, holds: [] });
      this.changed(`receive ${dataset}@${snapshot.name}`);
    }
  }

  dataset(name: string): FakeDataset {
    const found = this.datasets.get(name);
    if (found === undefined) throw new Error(`fake ${this.label}: cannot open '${name}': dataset does not exist`);
    return found;
  }

  private async eachOf(snapshots: readonly string[], work: (dataset: string, snapshot: string) => Promise<void>) {
    const failed = (await Promise.allSettled(snapshots.map((name) => work(...split(name, '@'))))).filter(
      (end) => end.status === 'rejected',
    );
    if (failed.length > 0) throw new FailureError('ECOMMAND', `fake ${this.label}: ${failed.length} failed`);
  }

  private find(dataset: string, snapshot: string): FakeSnapshot | undefined {
    return this.datasets.get(dataset)?.snapshots.find((candidate) => candidate.name === snapshot);
  }

  private require(dataset: string, snapshot: string): FakeSnapshot {
    const found = this.find(dataset, snapshot);
    if (found === undefined)
      throw new Error(`fake ${this.label}: cannot open '${dataset}@${snapshot}': dataset does not exist`);
    return found;
  }

  private stateOf(dataset: string): DatasetState {
    const found = this.datasets.get(dataset);
    if (found === undefined) return { dataset, exists: false, snapshots: [], bookmarks: [] };
    return {
      dataset,
      exists: true,
      guid: found.guid,
      type: found.type,
      snapshots: found.snapshots.map(toSnapshot),
      bookmarks: this.features.openzfs ? found.bookmarks.map((bookmark) => ({ ...bookmark, userrefs: 0 })) : [],
      ...(found.resumeToken === undefined ? {} : { resumeToken: found.resumeToken }),
      ...(found.encrypted === undefined ? {} : { encrypted: found.encrypted }),
    };
  }

  private check(operation: string): void {
    if (this.failing.has(operation)) {
      throw new FailureError('ECOMMAND', `fake ${this.label}: ${operation} failed (ssh: connection lost)`);
    }
  }

  private changed(event: string): void {
    this.events.push(`${this.label}: ${event}`);
    this.journal.push(`${this.label}: ${event}`);
    this.onChange?.();
  }
}

function toSnapshot(snapshot: FakeSnapshot): Snapshot {
  const { holds, ...rest } = snapshot;
  return { ...rest, userrefs: holds.length };
}

/**
 * `zfs send ... | zfs recv ... DATASET` between two fake hosts, with zfs's checks. `failAfterSnapshots` cuts
 * the next stream after that many snapshots have landed (a link cut mid-stream).
 */
export class FakeStreams implements StreamRunner {
  readonly summary = 'fake stream';
  readonly sent: string[][] = [];
  failAfterSnapshots: number | undefined;

  constructor(
    private readonly source: FakeZfsHost,
    private readonly sink: FakeZfsHost,
  ) {}

  async run(sendArgv: readonly string[], recvArgv: readonly string[], _options: StreamOptions): Promise<string> {
    this.sent.push([...sendArgv]);
    const target = recvArgv.at(-1) ?? '';
    const words = sendArgv.slice(2).filter((word) => !['-L', '-e', '-c', '-w'].includes(word));
    const { dataset, snapshots } = this.selection(words, target);
    const type = this.source.dataset(dataset).type;
    const limit = this.failAfterSnapshots;
    this.failAfterSnapshots = undefined;
    this.sink.receive(target, limit === undefined ? snapshots : snapshots.slice(0, limit), type);
    if (limit !== undefined) throw streamError('send', 'Timeout, server not responding.');
    return `received ${snapshots.length}K stream in 0.01 seconds (1M/sec)`;
  }

  private selection(words: readonly string[], target: string): { dataset: string; snapshots: FakeSnapshot[] } {
    const [first, from, to] = words;
    if (first === '-I' || first === '-i') {
      const [dataset, toName] = split(to ?? '', '@');
      const [, fromName] = split(from ?? '', from?.includes('#') ? '#' : '@');
      const source = this.source.dataset(dataset);
      const fromEntry = from?.includes('#')
        ? source.bookmarks.find((bookmark) => bookmark.name === fromName)
        : source.snapshots.find((snapshot) => snapshot.name === fromName);
      const toIndex = source.snapshots.findIndex((snapshot) => snapshot.name === toName);
      if (fromEntry === undefined || toIndex < 0)
        throw streamError('send', `cannot open '${from}': dataset does not exist`);
      const replica = this.sink.dataset(target);
      if (replica.modified) throw streamError('recv', `cannot receive: destination ${target} has been modified`);
      if (replica.snapshots.at(-1)?.guid !== fromEntry.guid) {
        throw streamError(
          'recv',
          `cannot receive: most recent snapshot of ${target} does not match incremental source`,
        );
      }
      const after = source.snapshots.filter((snapshot) => snapshot.createtxg > fromEntry.createtxg);
      const upTo = after.filter((snapshot) => snapshot.createtxg <= (source.snapshots[toIndex]?.createtxg ?? 0));
      return { dataset, snapshots: first === '-I' ? upTo : upTo.slice(-1) };
    }
    const [dataset, name] = split(first ?? '', '@');
    if (this.sink.datasets.has(target))
      throw streamError('recv', `cannot receive new filesystem stream: destination '${target}' exists`);
    const snapshot = this.source.dataset(dataset).snapshots.find((candidate) => candidate.name === name);
    if (snapshot === undefined) throw streamError('send', `cannot open '${first}': dataset does not exist`);
    return { dataset, snapshots: [snapshot] };
  }
}

function split(name: string, separator: string): [string, string] {
  const at = name.indexOf(separator);
  return [name.slice(0, at), name.slice(at + 1)];
}

export function streamError(stage: 'send' | 'recv', stderr: string): PipelineError {
  const outcome = (name: string, failed: boolean): StageOutcome => ({
    name,
    command: `zfs ${name}`,
    where: name === 'send' ? 'remote' : 'local',
    overSsh: name === 'send',
    exitStatus: failed ? 1 : 0,
    signal: undefined,
    spawnError: undefined,
    stderr: failed ? stderr : '',
    exitedAfterMs: 1,
  });
  const stages = [outcome('send', stage === 'send'), outcome('recv', stage === 'recv')];
  const failed = stages.find((candidate) => candidate.exitStatus !== 0) ?? stages[0]!;
  return new PipelineError(failed, stages, false);
}

/** A logger that keeps its lines for assertions. */
export function recordingLogger(): Logger & { lines: string[] } {
  const lines: string[] = [];
  const at = (level: string) => (message: unknown) => {
    // As winston takes it: a string, or one object whose `message` is the line.
    const line = typeof message === 'object' && message !== null && 'message' in message ? message.message : message;
    lines.push(`${level}: ${String(line)}`);
    return logger;
  };
  const logger = {
    lines,
    error: at('error'),
    warn: at('warn'),
    info: at('info'),
    debug: at('debug'),
    close: async () => {},
  };
  return logger as unknown as Logger & { lines: string[] };
}
