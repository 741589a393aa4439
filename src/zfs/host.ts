import { FailureError } from '../errors/errors.js';
import type { Endpoint } from '../exec/endpoint.js';
import { type CommandRunner, commandError, succeeded } from '../exec/runner.js';
import {
  type Listing,
  ListingParseError,
  type ListingScope,
  datasetState,
  getArgv,
  listArgv,
  parseGetOutput,
  parseListOutput,
} from './listing.js';
import { snapshotName } from './names.js';
import type { DatasetState, HostFeatures } from './types.js';

const MISSING = /dataset does not exist/;
/**
 * A listing past this size is not a real dataset's (planning is tested to 20,000 snapshots a side; this is
 * twenty times that): a broken or hostile remote, whose output is not read to the end, nor acted on.
 */
const MAX_LISTING_BYTES = 64 * 1024 * 1024;
const LISTING_OPTIONS = { maxOutputBytes: MAX_LISTING_BYTES };

function userPropertyArgv(property: string, root: string | undefined): string[] {
  return ['zfs', 'list', '-H', '-o', `name,${property}`, '-t', 'filesystem,volume', ...(root ? ['-r', root] : [])];
}

function propertyArgv(dataset: string, property: string): string[] {
  return ['zfs', 'get', '-Hp', '-o', 'value', property, dataset];
}

export type HoldResult = 'added' | 'present';
export type ReleaseResult = 'released' | 'absent';

/** Why a snapshot was not destroyed is part of the answer: a hold and a clone are states, not failures. */
export type DestroyResult = { outcome: 'destroyed' } | { outcome: 'held' } | { outcome: 'cloned'; clones: string[] };

/**
 * What the replication layer asks of a host's zfs. Narrow on purpose: the command-backed ZfsHost is the real
 * one, and a test double of it lets the orchestration (runs, trees, holds, expiry) be tested without root.
 */
export interface ZfsOperations {
  /** Short name for messages: "local" or the remote host name. */
  readonly label: string;
  readonly features: HostFeatures;
  state(dataset: string): Promise<DatasetState>;
  tree(root: string): Promise<Listing>;
  exists(dataset: string): Promise<boolean>;
  hold(tag: string, dataset: string, snapshot: string): Promise<HoldResult>;
  release(tag: string, dataset: string, snapshot: string): Promise<ReleaseResult>;
  holds(dataset: string, snapshots: readonly string[]): Promise<Map<string, string[]>>;
  /** The tags on each of `snapshots` (full names, any datasets), where the host has `zfs holds`. */
  tagsOn(snapshots: readonly string[]): Promise<Map<string, string[]>>;
  /**
   * One `tag` on many snapshots (full names, any datasets), a command per few thousand: zfs tries each one and
   * fails if any failed, so on failure some may be held and the caller asks snapshot by snapshot.
   */
  holdAll(tag: string, snapshots: readonly string[]): Promise<void>;
  /** The same for releasing. */
  releaseAll(tag: string, snapshots: readonly string[]): Promise<void>;
  createParents(dataset: string): Promise<void>;
  setProperty(dataset: string, property: string, value: string): Promise<void>;
  rollback(dataset: string, snapshot: string, destroyLater: boolean): Promise<void>;
  abortReceive(dataset: string): Promise<void>;
  bookmark(dataset: string, snapshot: string, bookmark: string): Promise<void>;
  destroyBookmark(dataset: string, bookmark: string): Promise<void>;
  estimateSendBytes(sendArguments: readonly string[]): Promise<number | undefined>;
  /** Those not destroyed because `stop` came first have no answer in the map. */
  destroySnapshots(
    dataset: string,
    snapshots: readonly string[],
    stop?: AbortSignal,
  ): Promise<Map<string, DestroyResult>>;
  /**
   * Every filesystem and volume (under `root` if given) with its value of the user property `property`
   * (unset ones left out; a missing root has none).
   */
  userProperty(property: string, root?: string): Promise<Map<string, string>>;
  /** One dataset's value of `property` (a user property set or inherited, or a native one); undefined if unset or no dataset. */
  propertyOf(dataset: string, property: string): Promise<string | undefined>;
  /** The filesystems and volumes under `root`, itself included, by name only; empty if root is missing. */
  datasetNames(root: string): Promise<string[]>;
  /** Where each of `properties` of `dataset` comes from: "local", "default", "inherited from …", "-" (unset). */
  propertySources(dataset: string, properties: readonly string[]): Promise<Map<string, string>>;
}

/** Typed zfs operations on one host, run as commands; picks the best command form the host's features allow. */
export class ZfsHost implements ZfsOperations {
  constructor(
    readonly runner: CommandRunner,
    readonly endpoint: Endpoint,
    readonly features: HostFeatures,
  ) {}

  get label(): string {
    return this.endpoint.label;
  }

  private run(argv: string[]) {
    return this.runner.run(this.endpoint, argv);
  }

  /** The dataset and its snapshots in one command, whatever their number. */
  async state(dataset: string): Promise<DatasetState> {
    return datasetState(await this.list(dataset, 'dataset'), dataset);
  }

  /** Every filesystem and volume under `root` (itself included) with its snapshots, in one command; empty if root is missing. */
  async tree(root: string): Promise<Listing> {
    return this.list(root, 'tree');
  }

  /** Starts the command of state() (scope 'dataset') or tree() (scope 'tree') early: see CommandRunner.startEarly. */
  startListing(dataset: string, scope: ListingScope): void {
    this.runner.startEarly(this.endpoint, this.listingArgv(dataset, scope), LISTING_OPTIONS);
  }

  /** The same for userProperty(). */
  startUserPropertyRead(property: string, root?: string): void {
    this.runner.startEarly(this.endpoint, userPropertyArgv(property, root));
  }

  /** The same for propertyOf(). */
  startPropertyRead(dataset: string, property: string): void {
    this.runner.startEarly(this.endpoint, propertyArgv(dataset, property));
  }

  private listingArgv(dataset: string, scope: ListingScope): string[] {
    return this.features.parsableList ? listArgv(dataset, scope) : getArgv(dataset, scope);
  }

  private async list(dataset: string, scope: ListingScope): Promise<Listing> {
    const argv = this.listingArgv(dataset, scope);
    const result = await this.runner.attempt(this.endpoint, argv, LISTING_OPTIONS);
    if (result.outputTooLarge) {
      throw new FailureError(
        'EPARSE',
        `${this.label}: cannot parse the zfs listing of ${dataset}: it is larger than ${MAX_LISTING_BYTES / 1024 / 1024} MiB (some 400,000 snapshots), so it is not acted on`,
      );
    }
    if (!succeeded(result)) {
      if (MISSING.test(result.stderr) && result.stdout.trim() === '') return new Map();
      throw commandError(this.endpoint, argv, result);
    }
    try {
      return this.features.parsableList
        ? parseListOutput(result.stdout, dataset)
        : parseGetOutput(result.stdout, dataset);
    } catch (error) {
      if (error instanceof ListingParseError)
        throw new FailureError('EPARSE', `${this.label}: ${error.message}`, { cause: error });
      throw error;
    }
  }

  /** Names only: no snapshot is listed, so this is quick however many there are. */
  async datasetNames(root: string): Promise<string[]> {
    const argv = ['zfs', 'list', '-H', '-o', 'name', '-r', '-t', 'filesystem,volume', root];
    const result = await this.runner.attempt(this.endpoint, argv);
    // A root that is missing lists nothing; a child destroyed meanwhile leaves the others listed.
    if (!succeeded(result) && !MISSING.test(result.stderr)) throw commandError(this.endpoint, argv, result);
    return result.stdout.split('\n').filter(Boolean);
  }

  async exists(dataset: string): Promise<boolean> {
    return this.succeedsUnless(['zfs', 'get', '-H', '-o', 'value', 'type', dataset], MISSING);
  }

  /** Idempotent: an existing hold of the same tag is success. */
  async hold(tag: string, dataset: string, snapshot: string): Promise<HoldResult> {
    return (await this.succeedsUnless(
      ['zfs', 'hold', '--', tag, snapshotName(dataset, snapshot)],
      /tag already exists/,
    ))
      ? 'added'
      : 'present';
  }

  /** Idempotent: releasing a tag that is absent (or from a snapshot that is gone) is success. */
  async release(tag: string, dataset: string, snapshot: string): Promise<ReleaseResult> {
    return (await this.succeedsUnless(
      ['zfs', 'release', '--', tag, snapshotName(dataset, snapshot)],
      /no such tag|dataset does not exist/,
    ))
      ? 'released'
      : 'absent';
  }

  /** Tags held on each snapshot of `dataset`, where the host has `zfs holds`. */
  async holds(dataset: string, snapshots: readonly string[]): Promise<Map<string, string[]>> {
    const tags = await this.tagsOn(snapshots.map((snapshot) => snapshotName(dataset, snapshot)));
    return new Map(snapshots.map((snapshot) => [snapshot, tags.get(snapshotName(dataset, snapshot)) ?? []]));
  }

  async tagsOn(snapshots: readonly string[]): Promise<Map<string, string[]>> {
    const tags = new Map<string, string[]>(snapshots.map((snapshot) => [snapshot, []]));
    // In batches: sshd, and zfs_replicate-serve's 64 KiB cap, refuse one command naming thousands of snapshots.
    for (const batch of batches(snapshots, COMMAND_CHARACTERS)) await this.readTags(batch, tags);
    return tags;
  }

  /**
   * The names come from a listing that may be hours old (taken before a long transfer): a snapshot destroyed
   * since (the source's own pruning) makes OpenZFS's `zfs holds` fail whole. It carries no tag; the rest are
   * asked again. Any other failure stays one.
   */
  private async readTags(batch: readonly string[], tags: Map<string, string[]>): Promise<void> {
    const argv = ['zfs', 'holds', '-H', ...batch];
    const result = await this.runner.attempt(this.endpoint, argv);
    if (!succeeded(result)) {
      const goneLines = new Map(batch.map((name) => [`cannot open '${name}': dataset does not exist`, name]));
      const lines = result.stderr.split('\n').filter((line) => line.trim() !== '');
      const gone = new Set(lines.map((line) => goneLines.get(line)));
      if (lines.length === 0 || gone.has(undefined)) throw commandError(this.endpoint, argv, result);
      const rest = batch.filter((name) => !gone.has(name));
      if (rest.length > 0) await this.readTags(rest, tags);
      return;
    }
    for (const line of result.stdout.split('\n')) {
      const [name, tag] = line.split('\t');
      if (name !== undefined && tag !== undefined) tags.get(name)?.push(tag);
    }
  }

  async holdAll(tag: string, snapshots: readonly string[]): Promise<void> {
    for (const batch of batches(snapshots, COMMAND_CHARACTERS)) await this.run(['zfs', 'hold', '--', tag, ...batch]);
  }

  async releaseAll(tag: string, snapshots: readonly string[]): Promise<void> {
    for (const batch of batches(snapshots, COMMAND_CHARACTERS)) await this.run(['zfs', 'release', '--', tag, ...batch]);
  }

  async userProperty(property: string, root?: string): Promise<Map<string, string>> {
    const argv = userPropertyArgv(property, root);
    const result = await this.runner.attempt(this.endpoint, argv);
    if (!succeeded(result) && !(root && MISSING.test(result.stderr))) throw commandError(this.endpoint, argv, result);
    const values = new Map<string, string>();
    for (const line of result.stdout.split('\n')) {
      const tab = line.lastIndexOf('\t');
      if (tab > 0 && line.slice(tab + 1) !== '-') values.set(line.slice(0, tab), line.slice(tab + 1));
    }
    return values;
  }

  async propertyOf(dataset: string, property: string): Promise<string | undefined> {
    const argv = propertyArgv(dataset, property);
    const result = await this.runner.attempt(this.endpoint, argv);
    if (!succeeded(result)) {
      if (MISSING.test(result.stderr)) return undefined;
      throw commandError(this.endpoint, argv, result);
    }
    const value = result.stdout.replace(/\n$/, '');
    return value === '-' ? undefined : value;
  }

  async propertySources(dataset: string, properties: readonly string[]): Promise<Map<string, string>> {
    const { stdout } = await this.run(['zfs', 'get', '-H', '-o', 'property,source', properties.join(','), dataset]);
    return new Map(
      stdout
        .split('\n')
        .filter(Boolean)
        .map((line) => line.split('\t') as [string, string]),
    );
  }

  /**
   * A user with `zfs allow` rights is not root, and on Linux only root mounts: zfs then creates the dataset and
   * fails with this message. The parent is only a container for the replica, so it need not be mounted.
   */
  async createParents(dataset: string): Promise<void> {
    await this.succeedsUnless(
      ['zfs', 'create', '-p', dataset],
      /successfully created, but it may only be mounted by root/,
    );
  }

  async setProperty(dataset: string, property: string, value: string): Promise<void> {
    await this.run(['zfs', 'set', `${property}=${value}`, dataset]);
  }

  /** Rolls back to `snapshot`; `destroyLater` allows destroying the snapshots after it (`-r`). */
  async rollback(dataset: string, snapshot: string, destroyLater: boolean): Promise<void> {
    await this.run(['zfs', 'rollback', ...(destroyLater ? ['-r'] : []), snapshotName(dataset, snapshot)]);
  }

  /** Ends a partial resumable receive (`zfs recv -A`), which otherwise blocks every later receive. */
  async abortReceive(dataset: string): Promise<void> {
    await this.run(['zfs', 'recv', '-A', dataset]);
  }

  async bookmark(dataset: string, snapshot: string, bookmark: string): Promise<void> {
    await this.run(['zfs', 'bookmark', snapshotName(dataset, snapshot), `${dataset}#${bookmark}`]);
  }

  async destroyBookmark(dataset: string, bookmark: string): Promise<void> {
    await this.run(['zfs', 'destroy', `${dataset}#${bookmark}`]);
  }

  /**
   * The bytes a `zfs send` with these arguments would produce (`send -nvP`); undefined where unknown. Only
   * informational: a failing estimate never fails a run (the send itself reports the real problem).
   */
  async estimateSendBytes(sendArguments: readonly string[]): Promise<number | undefined> {
    if (!this.features.openzfs) return undefined;
    const result = await this.runner.attempt(this.endpoint, ['zfs', 'send', '-nvP', ...sendArguments]);
    const size = /^size\s+(\d+)$/m.exec(`${result.stdout}\n${result.stderr}`);
    return succeeded(result) && size ? Number(size[1]) : undefined;
  }

  /**
   * Destroys snapshots: on OpenZFS in one `zfs destroy fs@a,b,c` (atomic: all or none), falling back to one
   * by one when that fails, so one busy snapshot never stops the others; zfs-fuse takes one per call.
   */
  async destroySnapshots(
    dataset: string,
    snapshots: readonly string[],
    stop?: AbortSignal,
  ): Promise<Map<string, DestroyResult>> {
    const results = new Map<string, DestroyResult>();
    for (const batch of this.features.openzfs ? batches(snapshots, COMMAND_CHARACTERS) : []) {
      if (stop?.aborted) return results;
      if (
        batch.length > 1 &&
        succeeded(await this.runner.attempt(this.endpoint, ['zfs', 'destroy', `${dataset}@${batch.join(',')}`]))
      ) {
        for (const snapshot of batch) results.set(snapshot, { outcome: 'destroyed' });
      }
    }
    for (const snapshot of snapshots) {
      if (stop?.aborted) return results;
      if (results.has(snapshot)) continue;
      try {
        results.set(snapshot, await this.destroySnapshot(dataset, snapshot));
      } catch (error) {
        // The stop stopped this destroy too: whether it went, the next run's listing tells.
        if (stop?.aborted) return results;
        throw error;
      }
    }
    return results;
  }

  /** Destroys one snapshot; a held one, or one a clone depends on, is reported, not thrown. */
  private async destroySnapshot(dataset: string, snapshot: string): Promise<DestroyResult> {
    const argv = ['zfs', 'destroy', snapshotName(dataset, snapshot)];
    const result = await this.runner.attempt(this.endpoint, argv);
    if (succeeded(result)) return { outcome: 'destroyed' };
    if (/dataset is busy|being held/.test(result.stderr)) return { outcome: 'held' };
    if (/dependent clones/.test(result.stderr)) return { outcome: 'cloned', clones: dependentClones(result.stderr) };
    throw commandError(this.endpoint, argv, result);
  }

  /**
   * Runs argv: true when it succeeded, false when it failed with the known answer `expected` in stderr (an
   * existing tag, a missing dataset); any other failure is thrown.
   */
  private async succeedsUnless(argv: string[], expected: RegExp): Promise<boolean> {
    const result = await this.runner.attempt(this.endpoint, argv);
    if (succeeded(result)) return true;
    if (expected.test(result.stderr)) return false;
    throw commandError(this.endpoint, argv, result);
  }
}

/** zfs names the clones on the lines after "use '-R' to destroy the following datasets:". */
function dependentClones(stderr: string): string[] {
  const lines = stderr.split('\n');
  const listed = lines.findIndex((line) => /following datasets:/.test(line));
  return listed < 0
    ? []
    : lines
        .slice(listed + 1)
        .map((line) => line.trim())
        .filter((line) => line !== '');
}

/** Keeps one command (a `fs@a,b,c` argument, a `zfs holds` list) well below what sshd and the serve wrapper take. */
const COMMAND_CHARACTERS = 32 * 1024;

function batches(snapshots: readonly string[], characters: number): string[][] {
  const result: string[][] = [];
  let current: string[] = [];
  let length = 0;
  for (const snapshot of snapshots) {
    if (current.length > 0 && length + snapshot.length + 1 > characters) {
      result.push(current);
      current = [];
      length = 0;
    }
    current.push(snapshot);
    length += snapshot.length + 1;
  }
  if (current.length > 0) result.push(current);
  return result;
}
