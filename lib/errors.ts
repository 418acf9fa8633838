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
