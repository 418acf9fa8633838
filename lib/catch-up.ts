import { RaftError } from './errors.js';
import type { RaftNode } from './raft-node.js';

/**
 * What Store.open and SqlStore.open wait for: a cluster replica that is a member has
 * applied what its group had committed when it opened (a read barrier through the leader),
 * so a restarted replica never shows an empty or stale state.
 */
export async function catchUpOnOpen(node: RaftNode<unknown>, timeoutMs: number): Promise<void> {
  if (!node.status().member) return;
  try {
    await node.readBarrier({ timeoutMs });
  } catch (e) {
    throw e instanceof RaftError && e.code === 'ERR_RAFT_TIMEOUT'
      ? new RaftError('ERR_RAFT_TIMEOUT', `replica ${node.id} could not catch up with its group within ${timeoutMs} ms ` +
        '(is a majority of it running?); catchUpOnOpen: false opens it without waiting', { cause: e })
      : e;
  }
}
