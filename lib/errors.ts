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
  | 'ERR_RAFT_STATE_MACHINE';

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
