import { createHash } from 'node:crypto';
import type { Logger } from '../log/logger.js';
import type { ZfsOperations } from '../zfs/host.js';
import type { Snapshot } from '../zfs/types.js';

/**
 * Our bookmarks on the remote are named per tag, so several backup hosts (fan-out) keep their own. Tags may
 * hold any character, bookmark names only [A-Za-z0-9_.:-]: a readable slug plus a hash keeps them distinct.
 */
export function bookmarkPrefix(tag: string): string {
  const slug = tag.replace(/[^A-Za-z0-9_.:-]/g, '_').slice(0, 64);
  return `zfs_replicate-${slug}-${createHash('sha256').update(tag).digest('hex').slice(0, 6)}-`;
}

/**
 * Keeps a bookmark of the base on the remote (where the host has bookmarks): if an admin destroys the base
 * snapshot there despite our hold, the next run sends incrementally from the bookmark instead of in full.
 * The new bookmark is made before the old one goes.
 */
export async function keepBookmark(
  remote: ZfsOperations,
  dataset: string,
  tag: string,
  base: Snapshot,
  existing: readonly Snapshot[],
  log: Logger,
): Promise<void> {
  if (!remote.features.openzfs) return;
  const prefix = bookmarkPrefix(tag);
  const name = `${prefix}${base.createtxg}`;
  if (!existing.some((bookmark) => bookmark.name === name)) {
    await remote.bookmark(dataset, base.name, name);
    log.debug(`bookmarked ${remote.label}:${dataset}@${base.name} as #${name}`);
  }
  for (const old of existing.filter((bookmark) => bookmark.name.startsWith(prefix) && bookmark.name !== name)) {
    await remote.destroyBookmark(dataset, old.name);
  }
}
