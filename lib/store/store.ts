// Store: bknr.datastore's model on RaftNode. The app declares classes (with indices) and
// named, deterministic transaction functions; the log records a transaction's name and
// arguments, and every replica re-executes it in log order against its in-memory objects.
import { randomUUID } from 'node:crypto';
import { open as openFile, readdir, readFile } from 'node:fs/promises';
import { deserialize, serialize } from 'node:v8';
import { RaftError, StoreError } from '../errors.js';
import { parsePeerId } from '../peer.js';
import {
  RaftNode, type Entry, type RaftNodeOptions, type SnapshotReader,
  type SnapshotWriter, type StateMachine,
} from '../raft-node.js';
import { ReplicaFacade, catchUpOnOpen, checkTransactions, type ReplicaEvents } from '../replica-facade.js';
import { seededRandom } from '../seeded-random.js';
import { Objects, Transaction, View, type AnyStoreClass, type StoreClass, type Stored } from './objects.js';

/** What a transaction may use instead of the clock and Math.random (same on every replica). */
export interface TxContext {
  /** Milliseconds since the epoch: the leader's clock when it appended the entry (so the
   *  same on every replica), never earlier than the previous transaction's. */
  readonly now: number;
  /** A uniform number in [0, 1), from a generator seeded by the entry's log index. */
  random(): number;
  /** The entry's log index. */
  readonly index: number;
}

/** A transaction: synchronous and deterministic (its outcome depends only on its inputs). */
export type TransactionFn<A = never, R = unknown> = (tx: Transaction, args: A, ctx: TxContext) => R;

export interface StoreOptions<T extends Record<string, TransactionFn<never, unknown>>>
  extends Omit<RaftNodeOptions, 'stateMachine' | 'config' | 'port'> {
  /** The initial configuration (braft's text form; '' to join a running group and wait to be added); default, standalone: this replica only. */
  config?: string;
  port?: number;
  transactions: T;
  classes?: readonly AnyStoreClass[];
  /**
   * One replica, same API, its own data directory (port 0 by default: it listens on any
   * free port, nobody needs to reach it); may later seed a cluster (`importFrom`).
   */
  standalone?: boolean;
  /**
   * The directory of a closed standalone store (default port) whose data seeds this new
   * cluster: `open` resolves once it is in. Done once per cluster; a replica that finds the
   * cluster already seeded skips it; a cluster that already has data refuses it.
   */
  importFrom?: string;
  /**
   * A cluster replica's `open` resolves once it has applied what the group had committed
   * when it opened (a read barrier through the leader), so its local reads see at least
   * that: a restarted replica does not show an empty or stale state. Default true; false
   * resolves once the directory is replayed. A replica started with config '' (waiting to be
   * added) or outside its configuration never waits.
   */
  catchUpOnOpen?: boolean;
  /** How long `open` waits for that catch-up: ERR_RAFT_TIMEOUT after (default 30,000 ms). */
  openTimeoutMs?: number;
}

export interface StoreSnapshotEvent {
  index: number;
  durationMs: number;
  objects: number;
  bytes: number;
}

export interface StoreEvents extends ReplicaEvents {
  applied: [index: number];
  snapshot: [info: StoreSnapshotEvent];
}

type ArgsOf<F> = F extends (tx: Transaction, args: infer A, ctx: TxContext) => unknown ? A : never;
/** `transact`'s options. */
export interface TransactOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}
// A transaction that takes no arguments (or only optional ones) is called as transact(name).
type TransactRest<F> = F extends (tx: Transaction) => unknown
  ? [args?: ArgsOf<F>, options?: TransactOptions]
  : [args: ArgsOf<F>, options?: TransactOptions];
type ResultOf<F> = F extends (tx: Transaction, args: never, ctx: TxContext) => infer R ? R : never;

const ENTRY_FORMAT = 1;
const IMPORT_FORMAT = 2; // a part of a seed from a standalone store
const SNAPSHOT_FORMAT = 1;
const SNAPSHOT_FILE = 'store.v8';
const SNAPSHOT_CHUNK = 10_000;

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

interface ImportPart {
  source: string;
  part: number;
  parts: number;
  objects: [className: string, fields: Record<string, unknown>[]][];
  nextId: number;
  lastNow: number;
}

export class Store<T extends Record<string, TransactionFn<never, unknown>> = Record<string, TransactionFn<never, unknown>>>
  extends ReplicaFacade<StoreEvents, Outcome> {
  readonly node: RaftNode<Outcome>;
  readonly #transactions: T;
  readonly #objects: Objects;
  #lastNow = 0;
  #applied = 0;
  // Seeding from a standalone store (replicated state, in snapshots too): the source whose
  // parts are arriving, and whether a seed completed.
  #importing: { source: string; next: number } | null = null;
  #imported = false;
  readonly #importFrom: string | undefined;
  readonly #classes: readonly AnyStoreClass[];

  private constructor(options: StoreOptions<T>) {
    super();
    if (typeof options !== 'object' || options === null) throw new RaftError('ERR_RAFT_BAD_CONFIG', 'options must be an object');
    const {
      transactions, classes = [], standalone = false, importFrom, config, port: givenPort,
      catchUpOnOpen: _catchUp, openTimeoutMs: _openTimeout, ...rest
    } = options;
    if (importFrom !== undefined && (typeof importFrom !== 'string' || importFrom === '' || standalone))
      throw new RaftError('ERR_RAFT_BAD_CONFIG', 'importFrom must be the directory of a standalone store, for a cluster (not standalone)');
    this.#importFrom = importFrom;
    this.#classes = classes;
    const port = givenPort ?? (standalone ? 0 : undefined);
    checkTransactions(transactions, '(tx, args, ctx) => result', (m) => new StoreError('ERR_STORE_BAD_TRANSACTION', m));
    if (!Array.isArray(classes)) throw new RaftError('ERR_RAFT_BAD_CONFIG', 'classes must be an array of classes');
    if (typeof standalone !== 'boolean') throw new RaftError('ERR_RAFT_BAD_CONFIG', 'standalone must be a boolean');
    this.#transactions = transactions;
    this.#objects = new Objects(classes);
    const ip = rest.ip ?? '127.0.0.1';
    if (port === undefined) throw new RaftError('ERR_RAFT_BAD_CONFIG', 'port is required');
    const self = `${ip}:${port}:${rest.idx ?? 0}`;
    if (standalone && config !== undefined && config !== self)
      throw new RaftError('ERR_RAFT_BAD_CONFIG', `a standalone store is its own configuration (${self}); leave config out`);
    if (!standalone && config === undefined) throw new RaftError('ERR_RAFT_BAD_CONFIG', 'config is required (or standalone: true)');
    this.node = new RaftNode<Outcome>({
      ...rest,
      config: config ?? self,
      port,
      stateMachine: this.#stateMachine(),
    });
    this.passOnEvents(this.node);
  }

  /** Validates the options, opens the data directory (replaying it) and joins the group. */
  static async open<T extends Record<string, TransactionFn<never, unknown>>>(options: StoreOptions<T>): Promise<Store<T>> {
    const store = new Store(options);
    await store.node.start();
    // Standalone, the replica is its own quorum: open resolves with its log replayed. (A
    // cluster replica catches up once it hears from a leader; `read` with a consistency waits.)
    if (options.standalone === true) await store.node.readBarrier({ timeoutMs: 60_000 });
    else if (options.catchUpOnOpen ?? true) {
      try {
        await catchUpOnOpen(store.node, options.openTimeoutMs ?? 30_000);
      } catch (e) {
        await store.close();
        throw e;
      }
    }
    if (store.#importFrom !== undefined) {
      try {
        await store.#seed(store.#importFrom, options);
      } catch (e) {
        await store.close();
        throw e;
      }
    }
    return store;
  }

  // Reads the standalone store (replaying it in a temporary replica of its own), then,
  // unless the cluster was seeded already, proposes its objects in parts.
  async #seed(dir: string, options: StoreOptions<T>): Promise<void> {
    await this.node.readBarrier({ timeoutMs: 30_000 });
    if (this.#imported) return;
    // A typo must not seed the cluster with nothing, for good: the source must be a store's
    // data directory, and a standalone one (its configuration this replica alone).
    const refuse = (why: string): StoreError =>
      new StoreError('ERR_STORE_IMPORT', `importFrom ${JSON.stringify(dir)}: ${why}; the cluster was not seeded`);
    let names: string[];
    try {
      names = await readdir(dir);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw refuse(code === 'ENOENT' ? 'no such directory' : code === 'ENOTDIR' ? 'not a directory' : String(e));
    }
    if (names.length === 0) throw refuse('the directory is empty');
    if (!names.includes('raft_meta')) throw refuse('not the data directory of a store (it has no raft_meta)');
    const source = new Store({
      group: options.group, dir, standalone: true, transactions: this.#transactions, classes: this.#classes,
    });
    try {
      await source.node.start();
      const { peers, learners } = source.node.status().configuration;
      if (peers.length !== 1 || learners.length > 0 || parsePeerId(peers[0]!).toString() !== parsePeerId(source.node.id).toString())
        throw refuse(`a replica of a cluster (configuration ${[...peers, ...learners].join(',')}), not a standalone store`);
      await source.node.readBarrier({ timeoutMs: 60_000 });
    } catch (e) {
      await source.close();
      throw e;
    }
    let parts: ImportPart[];
    try {
      const id = randomUUID();
      const chunks: ImportPart['objects'][] = [];
      for (const c of source.#objects.classes.values()) {
        const list = [...c.objects.values()];
        for (let i = 0; i < list.length; i += SNAPSHOT_CHUNK)
          chunks.push([[c.name, list.slice(i, i + SNAPSHOT_CHUNK).map((o) => ({ ...o }))]]);
      }
      if (chunks.length === 0) chunks.push([]);
      const { nextId } = source.#objects;
      parts = chunks.map((objects, part) => ({ source: id, part, parts: chunks.length, objects, nextId, lastNow: source.#lastNow }));
    } finally {
      await source.close();
    }
    for (const part of parts) {
      const outcome = await this.node.propose(serialize([IMPORT_FORMAT, part]), { timeoutMs: 60_000 });
      if (!outcome.ok) throw outcome.error;
    }
  }

  /**
   * Runs transaction `name` with `args` on every replica, in log order, and resolves with
   * its result here (after this replica applied it), or rejects with what it threw.
   */
  async transact<K extends keyof T & string>(name: K, ...rest: TransactRest<T[K]>): Promise<ResultOf<T[K]>> {
    const [args, options = {}] = rest;
    if (!Object.hasOwn(this.#transactions, name))
      throw new StoreError('ERR_STORE_UNKNOWN_TRANSACTION', `no transaction named ${JSON.stringify(name)}`);
    let entry: Buffer;
    try {
      entry = serialize([ENTRY_FORMAT, name, args]);
    } catch (cause) {
      throw new RaftError('ERR_RAFT_BAD_ARGUMENT', `the arguments of ${name} cannot be serialized: ${String(cause)}`, { cause });
    }
    const outcome = await this.node.propose(entry, options);
    if (!outcome.ok) throw outcome.error;
    return outcome.value as ResultOf<T[K]>;
  }

  /** Reads local state (synchronously), or after a read barrier when a consistency is given. */
  read<R>(fn: (view: View) => R): R;
  read<R>(fn: (view: View) => R, options: { consistency: 'linearizable' | 'lease'; signal?: AbortSignal; timeoutMs?: number }): Promise<R>;
  read<R>(fn: (view: View) => R, options?: { consistency: 'linearizable' | 'lease'; signal?: AbortSignal; timeoutMs?: number }): R | Promise<R> {
    const view = new View(this.#objects);
    if (!options) return fn(view);
    return this.node.readBarrier(options).then(() => fn(view));
  }

  get<C extends object>(cls: StoreClass<C>, id: number): Stored<C> | undefined {
    return this.read((v) => v.get(cls, id));
  }
  all<C extends object>(cls: StoreClass<C>): Stored<C>[] {
    return this.read((v) => v.all(cls));
  }

  get appliedIndex(): number {
    return this.#applied;
  }
  /** Takes a snapshot now (the `snapshot` event reports it). */
  snapshot(): Promise<void> {
    return this.node.snapshot();
  }
  close(): Promise<void> {
    return this.node.close();
  }
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  #stateMachine(): StateMachine<Outcome> {
    return {
      apply: (entries) => {
        const out = entries.map((e) => this.#execute(e));
        const last = entries[entries.length - 1];
        if (last) {
          this.#applied = last.index;
          this.emit('applied', last.index);
        }
        return out;
      },
      snapshot: (writer) => this.#save(writer),
      restore: (reader) => this.#restore(reader),
    };
  }

  #execute(e: Entry): Outcome {
    let decoded: unknown;
    try {
      decoded = deserialize(e.data);
    } catch (cause) {
      // Not ours or damaged: stop this replica (RaftNode: ERR_RAFT_STATE_MACHINE).
      throw new StoreError('ERR_STORE_BAD_TRANSACTION', `entry ${e.index} is not a store transaction: ${String(cause)}`);
    }
    if (Array.isArray(decoded) && decoded[0] === IMPORT_FORMAT) return this.#importPart(decoded[1] as ImportPart);
    if (!Array.isArray(decoded) || decoded[0] !== ENTRY_FORMAT || typeof decoded[1] !== 'string')
      throw new StoreError('ERR_STORE_BAD_TRANSACTION', `entry ${e.index} is not a store transaction of format ${ENTRY_FORMAT}`);
    const [, name, args] = decoded as [number, string, unknown];
    if (!Object.hasOwn(this.#transactions, name))
      // Never skipped: the replicas that know it would diverge from this one.
      throw new StoreError('ERR_STORE_UNKNOWN_TRANSACTION',
        `entry ${e.index} runs transaction ${JSON.stringify(name)}, which this version does not define; ` +
        'deploy a version that defines it (transactions may be added, never removed while in the log)');
    if (this.#importing)
      return { ok: false, error: new StoreError('ERR_STORE_IMPORT', 'the store is being seeded from a standalone store; try again when it is done') };
    const fn = this.#transactions[name] as TransactionFn<unknown, unknown>;
    // Leaders' clocks differ, so a failover could move it back: clamped.
    this.#lastNow = Math.max(this.#lastNow, e.time);
    const ctx: TxContext = { now: this.#lastNow, random: seededRandom(e.index), index: e.index };
    const tx = new Transaction(this.#objects);
    const nextId = this.#objects.nextId;
    try {
      const value = fn(tx, args, ctx);
      if (typeof (value as { then?: unknown } | null)?.then === 'function')
        throw new StoreError('ERR_STORE_BAD_TRANSACTION', `transaction ${name} returned a promise; transactions must be synchronous`);
      tx.end(false, nextId);
      return { ok: true, value };
    } catch (error) {
      tx.end(true, nextId);
      return { ok: false, error };
    }
  }

  // Every replica decides the same: a first part starts a seed (replacing an unfinished
  // one whose importer died) if no seed completed and no transaction ran; later parts must
  // come from that source, in order; the last one completes it.
  #importPart(p: ImportPart): Outcome {
    const refuse = (why: string): Outcome => ({ ok: false, error: new StoreError('ERR_STORE_IMPORT', why) });
    if (this.#imported) return refuse('this cluster was already seeded from a standalone store');
    if (p.part === 0) {
      const empty = [...this.#objects.classes.values()].every((c) => c.objects.size === 0);
      if (!this.#importing && (!empty || this.#objects.nextId !== 1))
        return refuse('this cluster already has data; only a new cluster can be seeded');
      for (const c of this.#objects.classes.values()) c.objects.clear();
      this.#importing = { source: p.source, next: 0 };
    }
    if (!this.#importing || this.#importing.source !== p.source || this.#importing.next !== p.part)
      return refuse('another seed replaced this one');
    for (const [name, list] of p.objects) {
      const state = this.#objects.classes.get(name);
      if (!state) throw new StoreError('ERR_STORE_UNKNOWN_CLASS', `the seed holds class ${JSON.stringify(name)}, which this version does not register`);
      for (const fields of list) state.objects.set(fields['id'] as number, this.#objects.make(state, fields['id'] as number, fields));
    }
    this.#importing.next++;
    if (p.part === p.parts - 1) {
      this.#objects.reindex();
      this.#objects.nextId = p.nextId;
      this.#lastNow = Math.max(this.#lastNow, p.lastNow);
      this.#importing = null;
      this.#imported = true;
    }
    return { ok: true, value: p.part };
  }

  // Captures every class's objects now (they are immutable, so the arrays are a consistent
  // cut), then writes them in chunks, yielding to the event loop between chunks.
  #save(writer: SnapshotWriter): Promise<void> {
    const started = performance.now();
    const index = this.#applied;
    const header = {
      format: SNAPSHOT_FORMAT, index, nextId: this.#objects.nextId, lastNow: this.#lastNow,
      importing: this.#importing && { ...this.#importing }, imported: this.#imported,
    };
    const cut = [...this.#objects.classes.values()].map((c) => [c.name, [...c.objects.values()]] as const);
    const write = async (): Promise<void> => {
      const file = await openFile(writer.path(SNAPSHOT_FILE), 'w');
      let bytes = 0;
      let objects = 0;
      try {
        const frame = async (value: unknown): Promise<void> => {
          const body = serialize(value);
          const len = Buffer.alloc(4);
          len.writeUInt32LE(body.length);
          await file.write(len);
          await file.write(body);
          bytes += 4 + body.length;
        };
        await frame(header);
        for (const [name, list] of cut) {
          for (let i = 0; i < list.length; i += SNAPSHOT_CHUNK) {
            const chunk = list.slice(i, i + SNAPSHOT_CHUNK).map((o) => ({ ...o }));
            objects += chunk.length;
            await frame([name, chunk]);
            await new Promise((r) => setImmediate(r));
          }
        }
        await frame(null); // the end: a file cut short is refused
      } finally {
        await file.close();
      }
      this.emit('snapshot', { index, durationMs: performance.now() - started, objects, bytes });
    };
    return write();
  }

  // Decodes a frame at a time, yielding between them (applies wait for the restore anyway),
  // so a large snapshot does not hold the event loop for its whole length.
  async #restore(reader: SnapshotReader): Promise<void> {
    const data = await readFile(reader.path(SNAPSHOT_FILE));
    const frames: unknown[] = [];
    for (let at = 0; at < data.length;) {
      if (at + 4 > data.length) throw new StoreError('ERR_STORE_BAD_SNAPSHOT', `snapshot ${reader.dir} is cut short`);
      const len = data.readUInt32LE(at);
      if (at + 4 + len > data.length) throw new StoreError('ERR_STORE_BAD_SNAPSHOT', `snapshot ${reader.dir} is cut short`);
      frames.push(deserialize(data.subarray(at + 4, at + 4 + len)));
      at += 4 + len;
      await new Promise((r) => setImmediate(r));
    }
    const header = frames[0] as {
      format?: unknown; nextId?: unknown; lastNow?: unknown; importing?: { source: string; next: number } | null; imported?: boolean;
    } | undefined;
    if (header?.format !== SNAPSHOT_FORMAT)
      throw new StoreError('ERR_STORE_BAD_SNAPSHOT', `snapshot ${reader.dir} has format ${String(header?.format)}; this version reads ${SNAPSHOT_FORMAT}`);
    if (frames[frames.length - 1] !== null) throw new StoreError('ERR_STORE_BAD_SNAPSHOT', `snapshot ${reader.dir} is cut short`);
    for (const c of this.#objects.classes.values()) c.objects.clear();
    for (const f of frames.slice(1, -1)) {
      const [name, list] = f as [string, Record<string, unknown>[]];
      const state = this.#objects.classes.get(name);
      if (!state) throw new StoreError('ERR_STORE_UNKNOWN_CLASS', `snapshot ${reader.dir} holds class ${JSON.stringify(name)}, which this version does not register`);
      for (const fields of list) {
        const id = fields['id'] as number;
        state.objects.set(id, this.#objects.make(state, id, fields));
      }
    }
    this.#objects.reindex();
    this.#objects.nextId = header.nextId as number;
    this.#lastNow = header.lastNow as number;
    this.#importing = header.importing ?? null;
    this.#imported = header.imported === true;
    this.#applied = reader.index;
  }
}
