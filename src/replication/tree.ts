import { type Listing, datasetState } from '../zfs/listing.js';
import { isUnder } from '../zfs/names.js';
import type { DatasetState } from '../zfs/types.js';

/** One dataset of a recursive run: a remote dataset and the replica it maps to, each as listed. */
export interface TreeMember {
  remoteDataset: string;
  localDataset: string;
  remote: DatasetState;
  local: DatasetState;
}

export interface TreePlan {
  /** The root first, then parents before their children: a child's replica is received into its parent's. */
  members: TreeMember[];
  /** Local datasets under the local root with no remote counterpart (the top of each such subtree): left alone. */
  localOnly: string[];
}

export interface TreeInput {
  remoteRoot: string;
  localRoot: string;
  remote: Listing;
  local: Listing;
  /** Remote datasets left out of the run, each with everything under it. */
  exclude: readonly string[];
}

/** The dataset at the same relative path under `toRoot` as `dataset` is under `fromRoot`. */
export function counterpart(dataset: string, fromRoot: string, toRoot: string): string {
  return toRoot + dataset.slice(fromRoot.length);
}

/** Whether `--exclude` leaves the remote dataset out: an exclusion covers the dataset and everything under it. */
export function isExcluded(remoteDataset: string, exclude: readonly string[]): boolean {
  return exclude.some((exclusion) => remoteDataset === exclusion || isUnder(remoteDataset, exclusion));
}

/**
 * Maps every filesystem and volume under the remote root to its replica under the local root, the same
 * relative path. Each member is then replicated on its own, from its own base: children need not share
 * snapshots with their parent (unlike `zfs send -R`). The root is always a member, so a missing or empty
 * remote root is reported by the same planner as in a single-dataset run.
 */
export function planTree(input: TreeInput): TreePlan {
  const { remoteRoot, localRoot } = input;
  const excluded = (name: string) => isExcluded(name, input.exclude);
  const toLocal = (remoteDataset: string) => counterpart(remoteDataset, remoteRoot, localRoot);
  const toRemote = (localDataset: string) => counterpart(localDataset, localRoot, remoteRoot);

  const remoteNames = [
    remoteRoot,
    ...[...input.remote.keys()].filter((name) => isUnder(name, remoteRoot) && !excluded(name)),
  ];
  const members = remoteNames.sort(byDepthThenName).map((remoteDataset) => {
    const localDataset = toLocal(remoteDataset);
    return {
      remoteDataset,
      localDataset,
      remote: datasetState(input.remote, remoteDataset),
      local: datasetState(input.local, localDataset),
    };
  });

  const localOnly: string[] = [];
  for (const localDataset of [...input.local.keys()].filter((name) => isUnder(name, localRoot)).sort(byDepthThenName)) {
    const remoteDataset = toRemote(localDataset);
    if (input.remote.has(remoteDataset) || excluded(remoteDataset)) continue;
    if (!localOnly.some((top) => isUnder(localDataset, top))) localOnly.push(localDataset);
  }
  return { members, localOnly };
}

function byDepthThenName(a: string, b: string): number {
  return a.split('/').length - b.split('/').length || (a < b ? -1 : a > b ? 1 : 0);
}
