// Every error raftstore raises on purpose is a RaftError with a stable `code`, so callers
// branch on the code rather than on message text (which may change).

export type RaftErrorCode =
  | 'ERR_RAFT_NOT_LEADER'
  | 'ERR_RAFT_TIMEOUT'
  | 'ERR_RAFT_BAD_CONFIG'
  | 'ERR_RAFT_SHUTDOWN'
  | 'ERR_RAFT_CORRUPT_LOG'
  | 'ERR_RAFT_LOCKED'
  | 'ERR_RAFT_BUSY'
  | 'ERR_RAFT_STATE_MACHINE'
  | 'ERR_RAFT_BAD_ENTRY'
  | 'ERR_RAFT_LEADER_CHANGED'
  | 'ERR_RAFT_RESULT_UNKNOWN'
  | 'ERR_RAFT_CATCHUP_FAILED'
  | 'ERR_RAFT_BAD_ARGUMENT'
  | 'ERR_RAFT_LISTEN'
  | 'ERR_RAFT_IO'
  | 'ERR_RAFT_DISK_FULL'
  | 'ERR_RAFT_ADDON_LOAD'
  | 'ERR_RAFT_INTERNAL';

const CODES: ReadonlySet<string> = new Set<RaftErrorCode>([
  'ERR_RAFT_NOT_LEADER', 'ERR_RAFT_TIMEOUT', 'ERR_RAFT_BAD_CONFIG', 'ERR_RAFT_SHUTDOWN',
  'ERR_RAFT_CORRUPT_LOG', 'ERR_RAFT_LOCKED', 'ERR_RAFT_BUSY', 'ERR_RAFT_STATE_MACHINE',
  'ERR_RAFT_BAD_ENTRY', 'ERR_RAFT_LEADER_CHANGED', 'ERR_RAFT_RESULT_UNKNOWN', 'ERR_RAFT_CATCHUP_FAILED', 'ERR_RAFT_BAD_ARGUMENT',
  'ERR_RAFT_LISTEN', 'ERR_RAFT_IO', 'ERR_RAFT_DISK_FULL', 'ERR_RAFT_ADDON_LOAD', 'ERR_RAFT_INTERNAL',
]);

export interface RaftErrorOptions {
  /** With ERR_RAFT_NOT_LEADER: the leader this node knows of, as `ip:port:idx:role`. */
  leaderId?: string;
  cause?: unknown;
}

export class RaftError extends Error {
  readonly code: RaftErrorCode;
  readonly leaderId?: string;

  constructor(code: RaftErrorCode, message: string, options: RaftErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'RaftError';
    this.code = code;
    if (options.leaderId !== undefined) this.leaderId = options.leaderId;
  }
}

/** An error from the addon (an Error with `code` and maybe `leader`) as a RaftError. */
export function fromNative(err: unknown): RaftError {
  if (err instanceof RaftError) return err;
  const e = err as { code?: unknown; message?: unknown; leader?: unknown };
  const code = typeof e?.code === 'string' && CODES.has(e.code) ? (e.code as RaftErrorCode) : 'ERR_RAFT_INTERNAL';
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const options: RaftErrorOptions = { cause: err };
  if (typeof e?.leader === 'string' && e.leader !== '') options.leaderId = e.leader;
  return new RaftError(code, message, options);
}

export type StoreErrorCode =
  | 'ERR_STORE_UNIQUE'
  | 'ERR_STORE_NO_OBJECT'
  | 'ERR_STORE_UNKNOWN_CLASS'
  | 'ERR_STORE_UNKNOWN_INDEX'
  | 'ERR_STORE_UNKNOWN_TRANSACTION'
  | 'ERR_STORE_BAD_TRANSACTION'
  | 'ERR_STORE_TX_CLOSED'
  | 'ERR_STORE_BAD_SNAPSHOT'
  | 'ERR_STORE_IMPORT';

/** An error of the object store's own rules (thrown inside transactions or by its API). */
export class StoreError extends Error {
  readonly code: StoreErrorCode;
  constructor(code: StoreErrorCode, message: string) {
    super(message);
    this.name = 'StoreError';
    this.code = code;
  }
}

export type SqlErrorCode =
  /** A constraint failed (UNIQUE, NOT NULL, CHECK, FOREIGN KEY, …): `sqliteCode` says which. */
  | 'ERR_SQL_CONSTRAINT'
  /** SQLite refused the statement (a syntax error, no such table or column, …). */
  | 'ERR_SQL_ERROR'
  /** A value of the wrong type (SQLITE_MISMATCH), e.g. text into an INTEGER PRIMARY KEY. */
  | 'ERR_SQL_MISMATCH'
  /** Wrong parameters: too few, too many, a name that is not in the statement, a bad type. */
  | 'ERR_SQL_PARAMETERS'
  /** A string or blob over SQLite's length limit (SQLITE_TOOBIG). */
  | 'ERR_SQL_TOO_BIG'
  /** Would give different results on different replicas (see docs/sql-store.md). */
  | 'ERR_SQL_NONDETERMINISTIC'
  /** A statement kind the replicated log does not carry (PRAGMA, ATTACH, BEGIN, …). */
  | 'ERR_SQL_FORBIDDEN'
  /** `query` was given a statement that writes. */
  | 'ERR_SQL_READONLY'
  | 'ERR_SQL_UNKNOWN_TRANSACTION'
  | 'ERR_SQL_BAD_TRANSACTION'
  /** The migrations given differ from those the cluster ran. */
  | 'ERR_SQL_MIGRATION'
  | 'ERR_SQL_BAD_SNAPSHOT'
  /** better-sqlite3 is not installed (or does not load on this Node). */
  | 'ERR_SQL_DEPENDENCY';

export interface SqlErrorOptions {
  /** SQLite's own extended code (`SQLITE_CONSTRAINT_UNIQUE`, …) when SQLite raised it. */
  sqliteCode?: string;
  /** In a batch: which statement (0-based) failed. */
  statementIndex?: number;
  cause?: unknown;
}

/** An SQL statement failed: the same way on every replica, and rolled back everywhere. */
export class SqlError extends Error {
  readonly code: SqlErrorCode;
  readonly sqliteCode?: string;
  readonly statementIndex?: number;
  constructor(code: SqlErrorCode, message: string, options: SqlErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SqlError';
    this.code = code;
    if (options.sqliteCode !== undefined) this.sqliteCode = options.sqliteCode;
    if (options.statementIndex !== undefined) this.statementIndex = options.statementIndex;
  }
}

export type KvErrorCode =
  /** A key, value, transaction or request over its limit (`limit` says which). */
  | 'ERR_KV_TOO_LARGE'
  | 'ERR_KV_BAD_ARGUMENT'
  /** The revision asked for was compacted (`compactRevision` is the oldest readable). */
  | 'ERR_KV_COMPACTED'
  /** A revision ahead of this replica's. */
  | 'ERR_KV_FUTURE_REVISION'
  /** The lease expired or was revoked (or never existed). */
  | 'ERR_KV_LEASE_NOT_FOUND'
  /** The watch ended because its store closed. */
  | 'ERR_KV_WATCH_CANCELLED'
  | 'ERR_KV_BAD_ENTRY'
  | 'ERR_KV_BAD_SNAPSHOT'
  /** lmdb is not installed (or does not load on this machine). */
  | 'ERR_KV_DEPENDENCY';

export interface KvErrorOptions {
  limit?: number;
  compactRevision?: number;
  cause?: unknown;
}

/** A KvStore request was refused or failed: by its rules, the same way on every replica. */
export class KvError extends Error {
  readonly code: KvErrorCode;
  readonly limit?: number;
  readonly compactRevision?: number;
  constructor(code: KvErrorCode, message: string, options: KvErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'KvError';
    this.code = code;
    if (options.limit !== undefined) this.limit = options.limit;
    if (options.compactRevision !== undefined) this.compactRevision = options.compactRevision;
  }
}
