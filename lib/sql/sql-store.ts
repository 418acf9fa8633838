// SqlStore: every replica its own SQLite database (better-sqlite3), written only by
// applying the log in order, as orchestrator/raft and rqlite do. "The database is the
// state": the last applied index is written in the same SQLite transaction as the entries,
// so a restart resumes from the database, and a snapshot is a copy of the database.
// docs/sql-store.md gives the durability argument and the rules on non-deterministic SQL.
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, rmSync, statSync } from 'node:fs';
import { copyDurably, renameDurably } from '../durable-files.js';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { deserialize, serialize } from 'node:v8';
import { Worker } from 'node:worker_threads';
import type BetterSqlite3 from 'better-sqlite3';
import { ReplicaFacade, catchUpOnOpen, checkTransactions, type ReplicaEvents } from '../replica-facade.js';
import { RaftError, SqlError, type SqlErrorCode } from '../errors.js';
import {
  RaftNode, type Entry, type RaftNodeOptions, type SnapshotReader,
  type SnapshotWriter, type StateMachine,
} from '../raft-node.js';
import { seededBytes, seededRandom, splitmix64 } from '../seeded-random.js';
import type { TxContext } from '../store/store.js';
import { checkStatement } from './statement.js';

/** A value SQLite stores: NULL, INTEGER/REAL (number, bigint), TEXT, BLOB. */
export type SqlValue = null | number | bigint | string | Uint8Array;
/** Positional (`?`) or named (`:name`, `@name`, `$name`) parameters. */
export type SqlParams = readonly SqlValue[] | Readonly<Record<string, SqlValue>>;
export type Row = Record<string, SqlValue>;
export interface RunResult {
  /** Rows inserted, updated or deleted by the statement. */
  changes: number;
  /** The rowid of the last row inserted within this entry (0 if none). */
  lastInsertRowid: number | bigint;
}
export interface SqlStatement {
  sql: string;
  params?: SqlParams;
}

/** The database inside one entry's transaction, as a transaction function sees it. */
export interface SqlTx {
  run(sql: string, params?: SqlParams): RunResult;
  get<R extends Row = Row>(sql: string, params?: SqlParams): R | undefined;
  all<R extends Row = Row>(sql: string, params?: SqlParams): R[];
}

/** A named transaction: synchronous and deterministic, as Store's (`ctx` is the same). */
export type SqlTransactionFn<A = never, R = unknown> = (sql: SqlTx, args: A, ctx: TxContext) => R;
type AnyTransactions = Record<string, SqlTransactionFn<never, unknown>>;

export interface SqlStoreOptions<T extends AnyTransactions> extends Omit<RaftNodeOptions, 'stateMachine'> {
  /** Schema changes, in order; each runs once per cluster, through the log. Only ever append. */
  migrations?: readonly string[];
  transactions?: T;
  /** As Store's: `open` resolves once this replica applied what its group had committed. */
  catchUpOnOpen?: boolean;
  openTimeoutMs?: number;
  /** Prepared statements kept per connection use (writes and reads each), default 1000. */
  statementCacheSize?: number;
}

export interface SqlQueryOptions {
  consistency: 'linearizable' | 'lease';
  signal?: AbortSignal;
  timeoutMs?: number;
}
export interface SqlWriteOptions {
  signal?: AbortSignal;
  timeoutMs?: number;
}

export interface SqlSnapshotEvent {
  /** The last entry the copy holds (at or after the index the engine asked for). */
  index: number;
  durationMs: number;
  bytes: number;
}

/** What this replica did since this process opened it (`open` itself may install a snapshot). */
export interface SqlStoreStats {
  /** Entries run against the database. */
  entriesApplied: number;
  /** Entries the database already held when they came (a restart, a snapshot's copy): not run. */
  entriesSkipped: number;
  snapshotsTaken: number;
  snapshotsInstalled: number;
  lastSnapshot: SqlSnapshotEvent | null;
  lastInstall: SqlSnapshotEvent | null;
}

export interface SqlStoreEvents extends ReplicaEvents {
  applied: [index: number];
  snapshot: [info: SqlSnapshotEvent];
  /** This replica's database was replaced by a snapshot's copy (it was behind the log). */
  installed: [info: SqlSnapshotEvent];
}

type ArgsOf<F> = F extends (sql: SqlTx, args: infer A, ctx: TxContext) => unknown ? A : never;
type ResultOf<F> = F extends (sql: SqlTx, args: never, ctx: TxContext) => infer R ? R : never;
type TransactRest<F> = F extends (sql: SqlTx) => unknown
  ? [args?: ArgsOf<F>, options?: SqlWriteOptions]
  : [args: ArgsOf<F>, options?: SqlWriteOptions];

type Outcome = { ok: true; value: unknown } | { ok: false; error: unknown };

const ENTRY_FORMAT = 1;
const KIND_EXEC = 1;
const KIND_BATCH = 2;
const KIND_TRANSACT = 3;
const KIND_MIGRATE = 4;
const DB_FILE = 'state.db';
const SNAPSHOT_FILE = 'state.db';
const DB_FORMAT = 1;
// SQLite's default SQLITE_MAX_LENGTH: randomblob() asks for no more than SQLite would store.
const MAX_BLOB = 1_000_000_000;
// The time functions SQLite evaluates against the clock when given 'now' (or no time): the
// position of their time-value arguments.
const TIME_FUNCTIONS: Record<string, readonly number[]> = {
  date: [0], time: [0], datetime: [0], julianday: [0], unixepoch: [0], strftime: [1], timediff: [0, 1],
};

// SQLite result codes that say something about this machine (disk, memory, locks, a damaged
// file), not about the statement: another replica would not fail the same way, so the replica
// stops (and resumes from its database) rather than record a failure the others lack.
const MACHINE_CODES = /^SQLITE_(FULL|IOERR|BUSY|LOCKED|NOMEM|CORRUPT|CANTOPEN|READONLY|INTERRUPT|PROTOCOL|NOTADB|NOLFS|PERM|ABORT|INTERNAL)/;

function isSqliteError(e: unknown): e is Error & { code: string } {
  return e instanceof Error && e.name === 'SqliteError' && typeof (e as { code?: unknown }).code === 'string';
}

function isMachineError(e: unknown): boolean {
  return isSqliteError(e) && MACHINE_CODES.test(e.code);
}

function sqlCode(sqliteCode: string): SqlErrorCode {
  if (sqliteCode.startsWith('SQLITE_CONSTRAINT')) return 'ERR_SQL_CONSTRAINT';
  if (sqliteCode === 'SQLITE_MISMATCH') return 'ERR_SQL_MISMATCH';
  if (sqliteCode === 'SQLITE_TOOBIG') return 'ERR_SQL_TOO_BIG';
  if (sqliteCode === 'SQLITE_RANGE') return 'ERR_SQL_PARAMETERS';
  return 'ERR_SQL_ERROR';
}

// better-sqlite3's own errors (SqliteError, or TypeError/RangeError about parameters) as a
// coded SqlError; anything else (an app's own throw inside a transaction) is left as it is.
function asSqlError(e: unknown, sql: string): unknown {
  if (e instanceof SqlError) return e;
  if (isSqliteError(e))
    return new SqlError(sqlCode(e.code), `${e.message} (in ${JSON.stringify(sql)})`, { sqliteCode: e.code, cause: e });
  if (e instanceof TypeError || e instanceof RangeError)
    return new SqlError(/parameter|bind|named/i.test(e.message) ? 'ERR_SQL_PARAMETERS' : 'ERR_SQL_ERROR',
      `${e.message} (in ${JSON.stringify(sql)})`, { cause: e });
  return e;
}

function checkParams(params: unknown, where: string): void {
  if (params === undefined) return;
  const values = Array.isArray(params) ? params : typeof params === 'object' && params !== null ? Object.values(params) : null;
  if (values === null) throw new SqlError('ERR_SQL_PARAMETERS', `${where}: params must be an array or an object of named values`);
  for (const v of values as unknown[]) {
    if (v === null || typeof v === 'number' || typeof v === 'bigint' || typeof v === 'string' || v instanceof Uint8Array) continue;
    throw new SqlError('ERR_SQL_PARAMETERS',
      `${where}: a parameter is ${typeof v === 'object' ? Object.prototype.toString.call(v) : typeof v}; ` +
      'SQLite stores null, numbers, bigints, strings and Uint8Arrays (booleans as 0/1)');
  }
}

let betterSqlite3: { ctor: typeof BetterSqlite3; path: string } | undefined;
function loadBetterSqlite3(): { ctor: typeof BetterSqlite3; path: string } {
  if (betterSqlite3) return betterSqlite3;
  const require = createRequire(import.meta.url);
  try {
    const path = require.resolve('better-sqlite3');
    betterSqlite3 = { ctor: require(path) as typeof BetterSqlite3, path };
    return betterSqlite3;
  } catch (cause) {
    throw new SqlError('ERR_SQL_DEPENDENCY',
      `SqlStore needs better-sqlite3 version 12 (npm install better-sqlite3@12): ${String(cause)}`, { cause });
  }
}

// The copy for a snapshot, in a worker thread so that neither it nor its disk writes hold
// the event loop. First the database is made durable as far as it was committed (fsync of
// the WAL, where synchronous=NORMAL leaves commits, and of the file): the engine drops the
// log up to the snapshot's index once it is published, so the database must not be able to
// fall back below it. Then VACUUM INTO on a connection of its own: one read transaction, a
// consistent cut (WAL) while applies go on.
const COPY_WORKER = `
const fs = require('node:fs');
const { workerData } = require('node:worker_threads');
for (const f of [workerData.source + '-wal', workerData.source]) {
  let fd;
  try { fd = fs.openSync(f, 'r'); } catch (e) { if (e.code === 'ENOENT') continue; throw e; }
  try { fs.fsyncSync(fd); } finally { fs.closeSync(fd); }
}
const Database = require(workerData.module);
const db = new Database(workerData.source, { readonly: true, fileMustExist: true, timeout: 60000 });
try { db.prepare('VACUUM INTO ?').run(workerData.target); } finally { db.close(); }
`;
function copyDatabase(module: string, source: string, target: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const worker = new Worker(COPY_WORKER, { eval: true, workerData: { module, source, target } });
    let failure: unknown;
    worker.on('error', (e) => { failure = e; });
    worker.on('exit', (code) => (failure !== undefined || code !== 0 ? reject(failure ?? new Error(`copy worker exited with ${code}`)) : resolve()));
  });
}


interface ApplyContext {
  index: number;
  now: number;
  random: () => bigint;
  blobs: bigint;
  // A machine-level SQLite error seen during the entry, even if the app's code caught it.
  machineError: unknown;
}

class StatementCache {
  readonly #map = new Map<string, BetterSqlite3.Statement>();
  constructor(readonly limit: number) {}
  get(db: BetterSqlite3.Database, sql: string): BetterSqlite3.Statement {
    let stmt = this.#map.get(sql);
    if (stmt) {
      this.#map.delete(sql); // most recently used last
    } else {
      stmt = db.prepare(sql);
      if (this.#map.size >= this.limit) this.#map.delete(this.#map.keys().next().value!);
    }
    this.#map.set(sql, stmt);
    return stmt;
  }
}

export class SqlStore<T extends AnyTransactions = AnyTransactions> extends ReplicaFacade<SqlStoreEvents, Outcome> {
  readonly node: RaftNode<Outcome>;
  readonly #transactions: T;
  readonly #migrations: readonly string[];
  readonly #module: { ctor: typeof BetterSqlite3; path: string };
  readonly #path: string;
  #db!: BetterSqlite3.Database;
  readonly #clock: BetterSqlite3.Database; // SQLite's own time functions, given an explicit time
  #writes!: StatementCache;
  #internals = new Map<string, BetterSqlite3.Statement>(); // raftstore's own statements
  #reads!: StatementCache;
  readonly #cacheSize: number;
  #applied = 0;
  #lastNow = 0;
  #ctx: ApplyContext | null = null;
  #copying: Promise<unknown> = Promise.resolve();
  #installing: Promise<unknown> = Promise.resolve();
  #closing = false;
  #closed = false;
  readonly #stats: SqlStoreStats = {
    entriesApplied: 0, entriesSkipped: 0, snapshotsTaken: 0, snapshotsInstalled: 0, lastSnapshot: null, lastInstall: null,
  };

  private constructor(options: SqlStoreOptions<T>) {
    super();
    if (typeof options !== 'object' || options === null) throw new RaftError('ERR_RAFT_BAD_CONFIG', 'options must be an object');
    const {
      migrations = [], transactions = {} as T, catchUpOnOpen: _c, openTimeoutMs: _o, statementCacheSize = 1000, ...rest
    } = options;
    if (!Array.isArray(migrations) || migrations.some((m) => typeof m !== 'string'))
      throw new RaftError('ERR_RAFT_BAD_CONFIG', 'migrations must be an array of SQL strings');
    migrations.forEach((m, i) => checkStatement(m, `migrations[${i}]`, { multiple: true }));
    checkTransactions(transactions, '(sql, args, ctx) => result', (m) => new SqlError('ERR_SQL_BAD_TRANSACTION', m));
    if (!Number.isInteger(statementCacheSize) || statementCacheSize < 1)
      throw new RaftError('ERR_RAFT_BAD_CONFIG', `statementCacheSize must be a positive integer, got ${String(statementCacheSize)}`);
    if (typeof rest.dir !== 'string' || rest.dir === '') throw new RaftError('ERR_RAFT_BAD_CONFIG', 'dir is required');
    this.#transactions = transactions;
    this.#migrations = migrations;
    this.#cacheSize = statementCacheSize;
    this.#module = loadBetterSqlite3();
    this.node = new RaftNode<Outcome>({ ...rest, stateMachine: this.#stateMachine() });
    this.#path = join(rest.dir, 'sqlite', DB_FILE);
    this.#clock = new this.#module.ctor(':memory:');
    this.passOnEvents(this.node);
  }

  /**
   * Opens this replica's database (resuming from the index it holds), joins the group,
   * catches up, and proposes the migrations the cluster has not run yet.
   */
  static async open<T extends AnyTransactions = Record<never, never>>(options: SqlStoreOptions<T>): Promise<SqlStore<T>> {
    const store = new SqlStore(options);
    try {
      store.#openDatabase();
      await store.node.start();
      if (options.catchUpOnOpen ?? true) await catchUpOnOpen(store.node, options.openTimeoutMs ?? 30_000);
      await store.#migrate(options.openTimeoutMs ?? 30_000);
    } catch (e) {
      await store.close();
      throw e;
    }
    return store;
  }

  /** Runs one statement on every replica, in log order; resolves once applied here. */
  async exec(sql: string, params?: SqlParams, options: SqlWriteOptions = {}): Promise<RunResult> {
    checkStatement(sql, 'exec');
    checkParams(params, 'exec');
    return (await this.#propose([KIND_EXEC, sql, params], options)) as RunResult;
  }

  /** Runs the statements in order in one transaction on every replica: all or none. */
  async batch(statements: readonly SqlStatement[], options: SqlWriteOptions = {}): Promise<RunResult[]> {
    if (!Array.isArray(statements)) throw new SqlError('ERR_SQL_ERROR', 'batch takes an array of { sql, params }');
    statements.forEach((s, i) => {
      checkStatement(s?.sql, `batch[${i}]`);
      checkParams(s.params, `batch[${i}]`);
    });
    return (await this.#propose([KIND_BATCH, statements.map((s) => [s.sql, s.params])], options)) as RunResult[];
  }

  /** Runs the named transaction on every replica, in log order (from any replica). */
  async transact<K extends keyof T & string>(name: K, ...rest: TransactRest<T[K]>): Promise<ResultOf<T[K]>> {
    const [args, options = {}] = rest;
    if (!Object.hasOwn(this.#transactions, name))
      throw new SqlError('ERR_SQL_UNKNOWN_TRANSACTION', `no transaction named ${JSON.stringify(name)}`);
    return (await this.#propose([KIND_TRANSACT, name, args], options)) as ResultOf<T[K]>;
  }

  /**
   * Reads this replica's database (what it applied so far), synchronously; with a
   * consistency, after a read barrier. Only statements that do not write.
   */
  query<R extends Row = Row>(sql: string, params?: SqlParams): R[];
  query<R extends Row = Row>(sql: string, params: SqlParams | undefined, options: SqlQueryOptions): Promise<R[]>;
  query<R extends Row = Row>(sql: string, params?: SqlParams, options?: SqlQueryOptions): R[] | Promise<R[]> {
    if (!options) return this.#read<R>(sql, params);
    return this.node.readBarrier(options).then(() => this.#read<R>(sql, params));
  }

  #read<R>(sql: string, params: SqlParams | undefined): R[] {
    if (this.#closed) throw new RaftError('ERR_RAFT_SHUTDOWN', 'the store is closed');
    checkStatement(sql, 'query');
    checkParams(params, 'query');
    let stmt: BetterSqlite3.Statement;
    try {
      stmt = this.#reads.get(this.#db, sql);
    } catch (e) {
      throw asSqlError(e, sql);
    }
    if (!stmt.readonly || !stmt.reader)
      throw new SqlError('ERR_SQL_READONLY', `query runs statements that read; this one writes (use exec): ${JSON.stringify(sql)}`);
    try {
      return (params === undefined ? stmt.all() : Array.isArray(params) ? stmt.all(...params) : stmt.all(params)) as R[];
    } catch (e) {
      throw asSqlError(e, sql);
    }
  }

  /**
   * A SHA-256 of every table's rows (raftstore's bookkeeping aside) and the schema, in a
   * fixed order: replicas that applied the same entries give the same value.
   */
  checksum(): string {
    const hash = createHash('sha256');
    const schema = this.#db.prepare(
      "SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite_%' AND name <> '_raftstore_state' ORDER BY type, name",
    ).all() as { type: string; name: string; sql: string | null }[];
    for (const o of schema) {
      hash.update(JSON.stringify([o.type, o.name, o.sql]));
      if (o.type !== 'table') continue;
      const cols = (this.#db.prepare(`SELECT name FROM pragma_table_info(?)`).all(o.name) as { name: string }[])
        .map((c) => `"${c.name.replace(/"/g, '""')}"`);
      const table = `"${o.name.replace(/"/g, '""')}"`;
      const rows = this.#db.prepare(`SELECT ${cols.join(', ')} FROM ${table} ORDER BY ${cols.join(', ')}`).raw().iterate();
      for (const row of rows) {
        // A typed, length-prefixed encoding: 1 and 1.0 (SQLite INTEGER and REAL) hash alike,
        // as they compare alike.
        for (const v of row as unknown[]) {
          if (v === null) hash.update('n');
          else if (typeof v === 'bigint' || (typeof v === 'number' && Number.isInteger(v))) hash.update(`i${String(v)};`);
          else if (typeof v === 'number') hash.update(`f${String(v)};`);
          else if (typeof v === 'string') hash.update(`s${Buffer.byteLength(v)}:`).update(v);
          else if (v instanceof Uint8Array) hash.update(`b${v.byteLength}:`).update(v);
        }
        hash.update('\n');
      }
    }
    return hash.digest('hex');
  }

  /** The last entry this replica's database holds. */
  get appliedIndex(): number {
    return this.#applied;
  }
  get stats(): SqlStoreStats {
    return { ...this.#stats };
  }
  /** Takes a snapshot now (a copy of the database; the `snapshot` event reports it). */
  snapshot(): Promise<void> {
    return this.node.snapshot();
  }
  async close(): Promise<void> {
    if (this.#closing) return;
    this.#closing = true;
    await this.node.close();
    // A snapshot copy or install under way finishes first (an install stops before its swap).
    await this.#copying.catch(() => undefined);
    await this.#installing.catch(() => undefined);
    this.#closed = true;
    this.#db?.close();
    this.#clock.close();
  }
  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  async #propose(entry: unknown[], options: SqlWriteOptions): Promise<unknown> {
    let data: Buffer;
    try {
      data = serialize([ENTRY_FORMAT, ...entry]);
    } catch (cause) {
      throw new RaftError('ERR_RAFT_BAD_ARGUMENT', `the arguments cannot be serialized: ${String(cause)}`, { cause });
    }
    const outcome = await this.node.propose(data, options);
    if (!outcome.ok) throw outcome.error;
    return outcome.value;
  }

  // --- the database ------------------------------------------------------------------

  #openDatabase(): void {
    mkdirSync(dirname(this.#path), { recursive: true });
    rmSync(`${this.#path}.install`, { force: true }); // an install cut short by a crash
    const db = new this.#module.ctor(this.#path);
    // WAL with synchronous=NORMAL: a commit is atomic and survives kill -9 (it is in the
    // page cache) but is fsynced only at checkpoints and snapshots. The log, fsynced on a
    // majority before anything is applied, is what vouches for an acknowledged write; after a
    // power loss the database falls back to a consistent earlier index, never below the
    // last snapshot's, and the replica applies the rest again (docs/sql-store.md).
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = NORMAL');
    db.pragma('foreign_keys = ON');
    db.exec(`CREATE TABLE IF NOT EXISTS _raftstore_state (
               id INTEGER PRIMARY KEY CHECK (id = 0), format INTEGER NOT NULL, applied INTEGER NOT NULL, now INTEGER NOT NULL);
             INSERT OR IGNORE INTO _raftstore_state VALUES (0, ${DB_FORMAT}, 0, 0);
             CREATE TABLE IF NOT EXISTS _raftstore_migrations (version INTEGER PRIMARY KEY, sql TEXT NOT NULL);
             CREATE TEMP TABLE IF NOT EXISTS _raftstore_rowid (x);`);
    const state = db.prepare('SELECT format, applied, now FROM _raftstore_state').get() as { format: number; applied: number; now: number };
    if (state.format !== DB_FORMAT) {
      db.close();
      throw new SqlError('ERR_SQL_BAD_SNAPSHOT', `${this.#path} has format ${state.format}; this version reads ${DB_FORMAT}`);
    }
    this.#applied = state.applied;
    this.#lastNow = state.now;
    this.#defineFunctions(db);
    this.#db = db;
    this.#writes = new StatementCache(this.#cacheSize);
    this.#internals = new Map();
    this.#reads = new StatementCache(this.#cacheSize);
  }

  // Non-deterministic built-ins give the same result on every replica while an entry is
  // applied: the leader's time stamped in the entry, and generators seeded by its index.
  // Queries (ctx null) get the real clock and real randomness.
  #defineFunctions(db: BetterSqlite3.Database): void {
    db.function('random', { deterministic: false }, () =>
      this.#ctx ? BigInt.asIntN(64, this.#ctx.random()) : randomBytes(8).readBigInt64LE());
    db.function('randomblob', { deterministic: false }, (n: unknown) => {
      const length = Math.max(1, Math.floor(Number(n) || 0));
      if (length > MAX_BLOB) throw new SqlError('ERR_SQL_TOO_BIG', `randomblob(${length}) is over SQLite's length limit`);
      if (!this.#ctx) return randomBytes(length);
      return seededBytes(BigInt(this.#ctx.index), this.#ctx.blobs++, length);
    });
    const clock = new Map<string, BetterSqlite3.Statement>();
    const call = (name: string, args: unknown[]): unknown => {
      const now = this.#ctx ? this.#ctx.now : Date.now();
      const text = new Date(now).toISOString().replace('T', ' ').replace('Z', '');
      const positions = TIME_FUNCTIONS[name] ?? [];
      const given = [...args];
      if (given.length <= positions[positions.length - 1]!) given.push('now'); // no time value: now
      const mapped = given.map((a, i) =>
        positions.includes(i) && typeof a === 'string' && a.trim().toLowerCase() === 'now' ? text : a);
      if (this.#ctx && mapped.some((a, i) => !positions.includes(i) && typeof a === 'string' && /^\s*(localtime|utc)\s*$/i.test(a)))
        throw new SqlError('ERR_SQL_NONDETERMINISTIC',
          `${name}() with 'localtime' or 'utc' depends on each replica's time zone; convert in the application`);
      const key = `${name}/${mapped.length}`;
      let stmt = clock.get(key);
      if (!stmt) {
        stmt = this.#clock.prepare(`SELECT ${name}(${mapped.map(() => '?').join(', ')})`).pluck();
        clock.set(key, stmt);
      }
      return stmt.get(...mapped);
    };
    for (const name of Object.keys(TIME_FUNCTIONS))
      db.function(name, { varargs: true, deterministic: true }, (...args: unknown[]) => call(name, args));
    // CURRENT_TIMESTAMP, CURRENT_DATE and CURRENT_TIME are these functions to SQLite.
    db.function('current_timestamp', () => call('datetime', []));
    db.function('current_date', () => call('date', []));
    db.function('current_time', () => call('time', []));
  }

  // --- applying ----------------------------------------------------------------------

  #stateMachine(): StateMachine<Outcome> {
    return {
      apply: (entries) => this.#applyBatch(entries),
      snapshot: (writer) => this.#save(writer),
      restore: (reader) => this.#restore(reader),
    };
  }

  // One SQLite transaction per batch of entries, each entry in a savepoint of its own (its
  // failure undoes only it), the applied index written last: all of it or none is durable.
  #applyBatch(entries: readonly Entry[]): Outcome[] {
    // A restart hands over the log the database already holds: no transaction for that.
    if (entries.length > 0 && entries[entries.length - 1]!.index <= this.#applied) {
      this.#stats.entriesSkipped += entries.length;
      return entries.map((e) => this.#skipped(e));
    }
    const out: Outcome[] = [];
    const db = this.#db;
    let applied = this.#applied;
    let lastNow = this.#lastNow;
    let skipped = 0;
    this.#internal('BEGIN IMMEDIATE').run();
    try {
      for (const e of entries) {
        if (e.index <= applied) {
          out.push(this.#skipped(e));
          skipped++;
          continue;
        }
        lastNow = Math.max(lastNow, e.time); // leaders' clocks differ: time never goes back
        out.push(this.#applyEntry(e, lastNow));
        applied = e.index;
      }
      this.#internal('UPDATE _raftstore_state SET applied = ?, now = ?').run(applied, lastNow);
      this.#internal('COMMIT').run();
    } catch (e) {
      if (db.inTransaction) this.#internal('ROLLBACK').run();
      throw e;
    }
    this.#applied = applied;
    this.#lastNow = lastNow;
    this.#stats.entriesSkipped += skipped;
    this.#stats.entriesApplied += entries.length - skipped;
    if (entries.length > skipped) this.emit('applied', applied);
    return out;
  }

  // An entry the database holds already (a restart, or a snapshot copied after its index):
  // not run again, so its result here is unknown.
  #skipped(e: Entry): Outcome {
    return { ok: false, error: new RaftError('ERR_RAFT_RESULT_UNKNOWN', `entry ${e.index} reached this replica inside a snapshot`) };
  }

  #internal(sql: string): BetterSqlite3.Statement {
    let stmt = this.#internals.get(sql);
    if (!stmt) {
      stmt = this.#db.prepare(sql);
      this.#internals.set(sql, stmt);
    }
    return stmt;
  }

  #applyEntry(e: Entry, now: number): Outcome {
    let decoded: unknown;
    try {
      decoded = deserialize(e.data);
    } catch (cause) {
      throw new SqlError('ERR_SQL_BAD_TRANSACTION', `entry ${e.index} is not an SqlStore entry: ${String(cause)}`);
    }
    if (!Array.isArray(decoded) || decoded[0] !== ENTRY_FORMAT)
      throw new SqlError('ERR_SQL_BAD_TRANSACTION', `entry ${e.index} is not an SqlStore entry of format ${ENTRY_FORMAT}`);
    const kind = decoded[1] as number;
    if (kind === KIND_TRANSACT && !Object.hasOwn(this.#transactions, decoded[2] as string))
      // Never skipped: the replicas that know it would diverge from this one.
      throw new SqlError('ERR_SQL_UNKNOWN_TRANSACTION',
        `entry ${e.index} runs transaction ${JSON.stringify(decoded[2])}, which this version does not define; ` +
        'deploy a version that defines it (transactions may be added, never removed while in the log)');
    const ctx: ApplyContext = { index: e.index, now, random: splitmix64(e.index), blobs: 0n, machineError: undefined };
    this.#ctx = ctx;
    // last_insert_rowid() and changes() read the connection, so each entry starts them from
    // the same values everywhere (a restarted replica's connection has no history).
    this.#internal('INSERT OR REPLACE INTO temp._raftstore_rowid (rowid) VALUES (0)').run();
    this.#internal('SAVEPOINT entry').run();
    try {
      const value = this.#runEntry(kind, decoded, e, ctx);
      if (ctx.machineError !== undefined) throw ctx.machineError;
      this.#internal('RELEASE entry').run();
      return { ok: true, value };
    } catch (error) {
      if (ctx.machineError !== undefined) throw ctx.machineError;
      if (isMachineError(error)) throw error;
      this.#internal('ROLLBACK TO entry').run();
      this.#internal('RELEASE entry').run();
      return { ok: false, error };
    } finally {
      this.#ctx = null;
    }
  }

  #runEntry(kind: number, decoded: unknown[], e: Entry, ctx: ApplyContext): unknown {
    if (kind === KIND_EXEC) return this.#run(decoded[2] as string, decoded[3] as SqlParams | undefined, 'run', ctx);
    if (kind === KIND_BATCH) {
      const list = decoded[2] as [string, SqlParams | undefined][];
      return list.map(([sql, params], i) => {
        try {
          return this.#run(sql, params, 'run', ctx);
        } catch (err) {
          if (err instanceof SqlError)
            throw new SqlError(err.code, `batch[${i}]: ${err.message}`, {
              ...(err.sqliteCode === undefined ? {} : { sqliteCode: err.sqliteCode }), statementIndex: i, cause: err,
            });
          throw err;
        }
      });
    }
    if (kind === KIND_TRANSACT) {
      const fn = this.#transactions[decoded[2] as string] as SqlTransactionFn<unknown, unknown>;
      const live = (): void => {
        if (this.#ctx !== ctx)
          throw new SqlError('ERR_SQL_BAD_TRANSACTION', 'this transaction has ended; its sql handle works only inside the function');
      };
      const tx: SqlTx = {
        run: (sql, params) => (live(), this.#run(sql, params, 'run', ctx) as RunResult),
        get: (sql, params) => (live(), this.#run(sql, params, 'get', ctx) as never),
        all: (sql, params) => (live(), this.#run(sql, params, 'all', ctx) as never[]),
      };
      const txCtx: TxContext = { now: ctx.now, random: seededRandom(e.index), index: e.index };
      const value = fn(tx, decoded[3], txCtx);
      if (typeof (value as { then?: unknown } | null)?.then === 'function')
        throw new SqlError('ERR_SQL_BAD_TRANSACTION', `transaction ${String(decoded[2])} returned a promise; transactions must be synchronous`);
      return value;
    }
    if (kind === KIND_MIGRATE) return this.#applyMigrations(decoded[2] as number, decoded[3] as string[]);
    throw new SqlError('ERR_SQL_BAD_TRANSACTION', `entry ${e.index} has unknown kind ${String(kind)}`);
  }

  #run(sql: string, params: SqlParams | undefined, mode: 'run' | 'get' | 'all', ctx: ApplyContext): unknown {
    try {
      checkStatement(sql, 'transaction');
      checkParams(params, 'transaction');
      const stmt = this.#writes.get(this.#db, sql);
      const args: unknown[] = params === undefined ? [] : Array.isArray(params) ? params : [params];
      if (mode === 'run') {
        const r = stmt.run(...args);
        return { changes: r.changes, lastInsertRowid: r.lastInsertRowid };
      }
      return mode === 'get' ? stmt.get(...args) : stmt.all(...args);
    } catch (e) {
      if (isMachineError(e)) ctx.machineError ??= e;
      throw asSqlError(e, sql);
    }
  }

  #migrationsDone(): { version: number; sql: string }[] {
    return this.#db.prepare('SELECT version, sql FROM _raftstore_migrations ORDER BY version').all() as { version: number; sql: string }[];
  }

  // Every replica decides the same from its database: migrations it ran are checked against
  // the text given (never run twice), the next ones run in order, a gap is refused.
  #applyMigrations(from: number, list: string[]): number {
    const done = this.#migrationsDone();
    let ran = 0;
    list.forEach((sql, j) => {
      const version = from + j;
      if (version < done.length) {
        if (done[version]!.sql !== sql)
          throw new SqlError('ERR_SQL_MIGRATION', `migration ${version} differs from the one this cluster ran: ${JSON.stringify(done[version]!.sql)}`);
        return;
      }
      if (version > done.length + ran) throw new SqlError('ERR_SQL_MIGRATION', `migration ${version} comes before ${done.length + ran}`);
      checkStatement(sql, `migrations[${version}]`, { multiple: true });
      try {
        this.#db.exec(sql);
      } catch (err) {
        if (isMachineError(err)) this.#ctx!.machineError ??= err;
        throw asSqlError(err, sql);
      }
      this.#db.prepare('INSERT INTO _raftstore_migrations (version, sql) VALUES (?, ?)').run(version, sql);
      ran++;
    });
    return ran;
  }

  async #migrate(timeoutMs: number): Promise<void> {
    const done = this.#migrationsDone();
    for (let i = 0; i < Math.min(done.length, this.#migrations.length); i++)
      if (done[i]!.sql !== this.#migrations[i])
        throw new SqlError('ERR_SQL_MIGRATION',
          `migrations[${i}] differs from the migration this cluster ran as number ${i} (${JSON.stringify(done[i]!.sql)}); ` +
          'migrations may only be appended');
    if (this.#migrations.length <= done.length || !this.node.status().member) return;
    await this.#propose([KIND_MIGRATE, done.length, this.#migrations.slice(done.length)], { timeoutMs });
  }

  // --- snapshots ---------------------------------------------------------------------

  #save(writer: SnapshotWriter): Promise<void> {
    const started = performance.now();
    const target = writer.path(SNAPSHOT_FILE);
    const copy = copyDatabase(this.#module.path, this.#path, target).then(() => {
      const info = { index: this.#indexOf(target), durationMs: performance.now() - started, bytes: statSync(target).size };
      this.#stats.snapshotsTaken++;
      this.#stats.lastSnapshot = info;
      this.emit('snapshot', info);
    });
    this.#copying = copy.catch(() => undefined);
    return copy;
  }

  #indexOf(file: string): number {
    const db = new this.#module.ctor(file, { readonly: true, fileMustExist: true });
    try {
      const row = db.prepare('SELECT format, applied FROM _raftstore_state').get() as { format: number; applied: number } | undefined;
      if (!row || row.format !== DB_FORMAT) throw new SqlError('ERR_SQL_BAD_SNAPSHOT', `${file} is not a database of format ${DB_FORMAT}`);
      return row.applied;
    } catch (e) {
      throw e instanceof SqlError ? e : new SqlError('ERR_SQL_BAD_SNAPSHOT', `${file}: ${String(e)}`, { cause: e });
    } finally {
      db.close();
    }
  }

  // Replaces the database with the snapshot's copy: the copy is made and fsynced beside it
  // while queries go on, then swapped in by one rename (a crash leaves the old or the new).
  #restore(reader: SnapshotReader): Promise<void> {
    if (reader.index <= this.#applied) return Promise.resolve(); // the database holds all of it (a restart)
    const install = this.#install(reader);
    this.#installing = install.catch(() => undefined);
    return install;
  }

  async #install(reader: SnapshotReader): Promise<void> {
    const started = performance.now();
    await this.#copying;
    const install = `${this.#path}.install`;
    await copyDurably(reader.path(SNAPSHOT_FILE), install);
    const index = this.#indexOf(install);
    if (index < reader.index)
      throw new SqlError('ERR_SQL_BAD_SNAPSHOT', `snapshot ${reader.dir} holds index ${index}, less than its ${reader.index}`);
    if (this.#closing) {
      // Closed meanwhile: keep the old database; the next start installs the snapshot again.
      rmSync(install, { force: true });
      return;
    }
    this.#db.close();
    rmSync(`${this.#path}-wal`, { force: true });
    rmSync(`${this.#path}-shm`, { force: true });
    renameDurably(install, this.#path);
    this.#openDatabase();
    const info = { index, durationMs: performance.now() - started, bytes: statSync(this.#path).size };
    this.#stats.snapshotsInstalled++;
    this.#stats.lastInstall = info;
    this.emit('installed', info);
  }
}
