// What Store and SqlStore share as wrappers of one RaftNode: its role, leader and status,
// its events passed on as the store's own, the catch-up `open` waits for, and the checks of
// named transaction functions.
import { EventEmitter } from 'node:events';
import { RaftError } from './errors.js';
import type { LogEvent, MetricFamily } from './observability.js';
import type { Configuration, RaftNode, RaftStatus, Role } from './raft-node.js';

/** The events every store passes on from its RaftNode. */
export interface ReplicaEvents {
  role: [role: Role, term: number];
  leader: [leaderId: string | null, term: number];
  /** The group's configuration no longer includes this replica (RaftNode's `removed`). */
  removed: [conf: Configuration];
  error: [err: RaftError];
}

export abstract class ReplicaFacade<E extends ReplicaEvents & Record<keyof E, unknown[]>, R> extends EventEmitter<E> {
  abstract readonly node: RaftNode<R>;

  // Called once the subclass has made its node.
  protected passOnEvents(node: RaftNode<R>): void {
    const self = this as unknown as EventEmitter<ReplicaEvents>;
    node.on('role', (role, term) => self.emit('role', role, term));
    node.on('leader', (id, term) => self.emit('leader', id, term));
    node.on('removed', (conf) => self.emit('removed', conf));
    // An unhandled 'error' event would crash the process; the failure also rejects calls.
    node.on('error', (err) => {
      if (self.listenerCount('error') > 0) self.emit('error', err);
    });
  }

  get isLeader(): boolean {
    return this.node.isLeader;
  }
  get leaderId(): string | null {
    return this.node.leaderId;
  }
  get role(): Role {
    return this.node.role;
  }
  status(): RaftStatus {
    return this.node.status();
  }
  /** The engine's metric families for this replica and its port (RaftNode.metrics). */
  metrics(): MetricFamily[] {
    return this.node.metrics();
  }
  /** The recent info-and-above engine log records (RaftNode.events). */
  events(): LogEvent[] {
    return this.node.events();
  }
}

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

/**
 * Named transactions must be synchronous functions: an await would let other transactions
 * interleave with this one's changes, and the outcome would depend on timing (not
 * replayable). `asyncError` makes the store's own error for an async one.
 */
export function checkTransactions(transactions: unknown, signature: string, asyncError: (message: string) => Error): void {
  if (typeof transactions !== 'object' || transactions === null)
    throw new RaftError('ERR_RAFT_BAD_CONFIG', 'transactions must be an object of named functions');
  for (const [name, fn] of Object.entries(transactions)) {
    if (typeof fn !== 'function') throw new RaftError('ERR_RAFT_BAD_CONFIG', `transactions.${name} must be a function ${signature}`);
    if (fn.constructor.name === 'AsyncFunction' || fn.constructor.name === 'AsyncGeneratorFunction')
      throw asyncError(`transactions.${name} is async; transactions must be synchronous`);
  }
}
