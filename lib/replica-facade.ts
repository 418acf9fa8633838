// What Store and SqlStore share as wrappers of one RaftNode: its role, leader and status,
// and its events passed on as the store's own.
import { EventEmitter } from 'node:events';
import type { RaftError } from './errors.js';
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
}
