// The todo app's data and transactions: everything the replicas agree on.
//
// A Store keeps objects of the classes it is given, in memory, on every replica. They change
// only through the named transactions below: the log records a transaction's name and
// arguments, and every replica runs the same function on the same objects in the same
// order. So a transaction must be synchronous and deterministic: use ctx.now and
// ctx.random() rather than Date.now() and Math.random(), and read nothing outside `tx`.
//
// In your own app, import from 'raftstore' instead of '../../lib/index.js'.
import { type Transaction, type TxContext } from '../../lib/index.js';

export class Todo {
  // The store makes objects from their fields (the constructor is not called) and freezes
  // them, so fields are declared, not initialised.
  declare readonly id: number;
  declare readonly title: string;
  /** A reference the client chose (a UUID, say), so a retried add cannot add twice. */
  declare readonly ref: string | null;
  declare readonly done: boolean;
  declare readonly createdAt: number;
  declare readonly doneAt: number | null;

  // Indices are kept in step by every transaction and rebuilt from snapshots.
  static indices = {
    // At most one todo per ref; todos without one are not in this index.
    ref: { kind: 'unique', key: (t: Todo) => t.ref ?? undefined },
    // Todos in creation order (then by id): view.range(Todo, 'created', { gte, limit }).
    created: { kind: 'ordered', key: (t: Todo) => t.createdAt },
    // Open or done: view.find(Todo, 'done', false).
    done: { kind: 'multi', key: (t: Todo) => t.done },
  } as const;
}

/** What a replica process hands to Store.open: the classes it keeps. */
export const classes = [Todo];

/** The transactions: `store.transact('addTodo', { title: 'buy milk' })` on any replica. */
export const transactions = {
  addTodo(tx: Transaction, args: { title: string; ref?: string }, ctx: TxContext): Todo {
    const title = args.title.trim();
    // A throw rolls back everything the transaction did, on every replica, and the
    // caller's transact() rejects with this error.
    if (title === '') throw new Error('a todo needs a title');
    // A write whose outcome is unknown (ERR_RAFT_LEADER_CHANGED, ERR_RAFT_TIMEOUT during a
    // failover) may be retried with the same ref: if the first attempt did happen, the
    // retry returns that todo instead of adding a second one.
    if (args.ref !== undefined) {
      const existing = tx.findOne(Todo, 'ref', args.ref);
      if (existing) return existing;
    }
    return tx.create(Todo, { title, ref: args.ref ?? null, done: false, createdAt: ctx.now, doneAt: null });
  },

  complete(tx: Transaction, id: number, ctx: TxContext): Todo {
    // update throws ERR_STORE_NO_OBJECT if there is no such todo.
    return tx.update(Todo, id, (t) => (t.done ? {} : { done: true, doneAt: ctx.now }));
  },

  remove(tx: Transaction, id: number): void {
    tx.delete(Todo, id);
  },

  /** Removes every completed todo; returns how many. */
  clearCompleted(tx: Transaction): number {
    const done = tx.find(Todo, 'done', true);
    for (const t of done) tx.delete(Todo, t.id);
    return done.length;
  },
};

export type TodoTransactions = typeof transactions;
