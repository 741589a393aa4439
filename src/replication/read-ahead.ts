import type { ZfsHost } from '../zfs/host.js';
import { CLAIM_PROPERTY, startReadingSourceClaims } from './claim.js';

/**
 * A run's first reads are its listings and the claims (runOnce, runTree). Each waits only for its side's probe,
 * which tells the form of listing the host takes; so they are started early (CommandRunner.startEarly) and are
 * under way while the rest of the run gets ready.
 */

/**
 * The source's reads, in this host's form, while the remote's probe is under way: they share its round trip
 * instead of following it. Where the remote lists in another form, the guess goes unread and the run lists
 * again.
 */
export function readSourceAhead(guess: ZfsHost, remoteDataset: string, recursive: boolean): void {
  const scope = recursive ? 'tree' : 'dataset';
  guess.startListing(remoteDataset, scope);
  startReadingSourceClaims(guess, remoteDataset, scope);
}

/**
 * This host's reads, while the ssh connection is set up. Not a tree's: its replicas are each locked before
 * they are listed (runTree).
 */
export function readReplicaAhead(local: ZfsHost, localDataset: string, recursive: boolean): void {
  if (recursive) return;
  local.startListing(localDataset, 'dataset');
  local.startUserPropertyRead(CLAIM_PROPERTY);
}
