export interface Snapshot {
  /** The part after `@`. */
  name: string;
  /** Decimal text of the u64 guid: exact, and compared as text. */
  guid: string;
  createtxg: number;
  /** Seconds since the epoch; a received snapshot keeps the sender's creation time. */
  creation: number;
  /** Number of holds of any tag (zfs-fuse has no `zfs holds`, only this count). */
  userrefs: number;
}

export interface DatasetState {
  dataset: string;
  exists: boolean;
  /** The dataset's own guid (new for every dataset, a received one too): tells one dataset from another. */
  guid?: string;
  type?: string;
  /** Ordered by createtxg, oldest first. */
  snapshots: Snapshot[];
  /** Bookmarks (`#name`), ordered by createtxg; only where the host has them. userrefs is always 0. */
  bookmarks: Snapshot[];
  /** Token of an interrupted `zfs recv -s` into this dataset (OpenZFS). */
  resumeToken?: string;
  /** Whether the dataset is encrypted (OpenZFS native encryption). */
  encrypted?: boolean;
}

/** What a host's zfs can do, detected at run time; every optional code path hangs off one of these. */
export interface HostFeatures {
  /** `zfs version` output when it exists (OpenZFS >= 0.8); undefined on zfs-fuse and older ports. */
  zfsVersion: string | undefined;
  /** `zfs list -p` (parsable numbers). */
  parsableList: boolean;
  /** `zfs holds` works (zfs-fuse lacks it: its python helper is missing). */
  holdsCommand: boolean;
  /**
   * The OpenZFS feature set (every OpenZFS with `zfs version`, >= 0.8): resumable receive (`recv -s`,
   * `send -t`, `recv -A`), bookmarks, `destroy fs@a,b`, `send -L -e -c -w`, `send -nvP`, `recv -o`.
   */
  openzfs: boolean;
  /** Stream helpers installed on the host. */
  tools: ReadonlySet<string>;
}
